"""Helpers shared by model files: routing keyword parameters to config dataclasses, inference context cells."""
from __future__ import annotations

from dataclasses import fields, replace
import warnings
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


def leiden_centres(z: np.ndarray, n_clusters: int | None, n_neighbors: int, resolution: float,
                   seed: int) -> np.ndarray:
    """Initial cluster centres from Leiden on a cosine kNN graph of ``z``: the mean L2-normalised row of
    each cluster. Leiden gives ``n_clusters`` clusters (resolution by bisection) or, when ``n_clusters``
    is None, as many as it finds at ``resolution`` (the label-free K estimate)."""
    from omics_cl.core import graph

    adjacency = graph.neighbor_graph(z, n_neighbors, "cosine", seed)
    if n_clusters is None:
        labels = graph.leiden(adjacency, resolution, seed)
    else:
        labels, _ = graph.leiden_n_clusters(adjacency, n_clusters, seed)
        if labels.max() + 1 != n_clusters:
            warnings.warn(f"no Leiden resolution gives {n_clusters} clusters on the pretrained latent; "
                          f"training {labels.max() + 1} centres (the closest count)", stacklevel=2)
    unit = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    return np.stack([unit[labels == k].mean(0) for k in range(labels.max() + 1)]).astype(np.float32)
