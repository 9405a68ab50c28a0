"""What a result was computed with: library versions and the machine, stored with every run record.

The same seed gives the same result on one CPU model with the same thread settings; another CPU model (e.g. one
with AVX-512 against one without) or other thread counts can change the last bits, and a clustering on a knife
edge with them. :func:`machine` says which of these a run had, so two records can be compared.
"""
from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version

LIBRARIES = ("omics_cl", "jax", "jaxlib", "flax", "optax", "numpy", "scipy", "scikit-learn", "anndata", "mudata",
             "scanpy", "scikit-misc", "igraph", "leidenalg", "pynndescent", "numba", "umap-learn")


def library_versions() -> dict[str, str]:
    """Installed version of each library a result depends on (``"unknown"`` where it is not installed)."""
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out


def cpu() -> dict[str, str | bool]:
    """The first CPU's model name, family / model / stepping and whether it has AVX-512 (Linux's
    ``/proc/cpuinfo``; elsewhere the platform's processor name). Cloud CPUs often report a bare vendor name, so
    the family and model tell two "AMD EPYC" machines apart."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if not key.strip():
                    break  # first processor only
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return {"name": platform.processor() or platform.machine(), "avx512": False}
    return {"name": fields.get("model name", platform.machine()), "family": fields.get("cpu family", "?"),
            "model": fields.get("model", "?"), "stepping": fields.get("stepping", "?"),
            "avx512": "avx512f" in fields.get("flags", "").split()}


def thread_counts() -> dict[str, int]:
    """Threads of each BLAS / OpenMP library loaded in this process (threadpoolctl)."""
    from threadpoolctl import threadpool_info

    counts = {}
    for pool in threadpool_info():
        counts[pool["internal_api"]] = max(counts.get(pool["internal_api"], 0), int(pool["num_threads"]))
    return counts


def backend() -> str:
    """jax's backend, with its first device's kind when that is not the CPU (``gpu (NVIDIA H200)``)."""
    import jax

    name = jax.default_backend()
    return name if name == "cpu" else f"{name} ({jax.devices()[0].device_kind})"


def machine() -> dict:
    """CPU, cores, jax's backend, BLAS / OpenMP threads and ``$XLA_FLAGS`` of this process."""
    return {"cpu": cpu(), "cores": os.cpu_count() or 0, "backend": backend(), "threads": thread_counts(),
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "python": platform.python_version()}


def provenance() -> dict:
    """``{"versions": library_versions(), "machine": machine()}``, as every tool's run record holds them."""
    return {"versions": library_versions(), "machine": machine()}
