"""Shared benchmark plumbing: machine description, median tables, atomic JSON output."""
from __future__ import annotations

import json
import os
import platform

import numpy as np

from omics_cl.core.files import atomic_write


def machine() -> str:
    import jax

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, jax {jax.__version__} on {jax.default_backend()}, "
            f"python {platform.python_version()}")


def write_json_atomic(rows: list[dict], path: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            json.dump(rows, fh, indent=1)

    atomic_write(path, write)


def _fmt(x: float) -> str:
    """Three decimals; small nonzero values (e.g. FOSCTTM) in scientific notation so they do not read as 0."""
    return f"{x:.2e}" if 0 < abs(x) < 0.005 else f"{x:.3f}"


def median_table(rows: list[dict], keys: list[str], values: list[str]) -> str:
    """Markdown table of medians of ``values`` over rows grouped by ``keys`` (first-seen order)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    lines = ["| " + " | ".join(keys + values + ["runs"]) + " |", "|" + "---|" * (len(keys) + len(values) + 1)]
    for group, members in groups.items():
        cells = []
        for v in values:
            xs = [m[v] for m in members if m[v] is not None]
            cells.append("n/a" if not xs else _fmt(float(np.median(xs))) if isinstance(xs[0], float) else
                         f"{np.median(xs):g}")
        lines.append("| " + " | ".join([str(g) for g in group] + cells + [str(len(members))]) + " |")
    return "\n".join(lines)
