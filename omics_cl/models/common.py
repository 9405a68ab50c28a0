"""Helpers shared by model files: routing keyword parameters to config dataclasses, inference context cells."""
from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import numpy as np


def configure(*defaults: Any, **params: Any) -> tuple[Any, ...]:
    """Return copies of the ``defaults`` dataclasses with ``params`` applied to whichever has the field."""
    out = list(defaults)
    for name, value in params.items():
        owners = [i for i, d in enumerate(out) if name in {f.name for f in fields(d)}]
        if not owners:
            valid = sorted({f.name for d in defaults for f in fields(d)})
            raise TypeError(f"unknown parameter {name!r}; valid parameters: {valid}")
        for i in owners:
            out[i] = replace(out[i], **{name: value})
    return tuple(out)


def context_cells(n_obs: int, size: int, seed: int) -> np.ndarray:
    """The fixed, seeded cells every cell attends to at inference (all cells when ``n_obs <= size``)."""
    if n_obs <= size:
        return np.arange(n_obs)
    return np.sort(np.random.default_rng([seed, 104729]).choice(n_obs, size, replace=False))


def estimate_n_clusters(z: np.ndarray, n_neighbors: int, resolution: float, seed: int) -> int:
    """Label-free K: the number of Leiden clusters (``resolution``) on a cosine kNN graph of ``z``."""
    from omics_cl.core import graph

    return int(graph.leiden(graph.neighbor_graph(z, n_neighbors, "cosine", seed), resolution, seed).max()) + 1
