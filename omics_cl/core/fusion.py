"""Per-cell weighted fusion of several views of the same cells (weighted nearest neighbours).

After Hao et al. 2021 (Seurat v4 WNN), simplified: each view is L2-normalised; for each view m, a cell's
embedding is predicted from its ``k`` neighbours found in m (within) and from its neighbours found in each
other view (cross, averaged over the other views). A prediction's affinity is
``exp(-max(d - d_1, 0) / max(mean_k(d) - d_1, eps))`` (``d_1``: distance to the nearest neighbour in m,
``mean_k(d)``: mean distance to the ``k`` neighbours). A view's score is ``within / (cross + 1e-4)``: high where
the view's own neighbourhood explains the cell better than the other views do. Weights: softmax of the scores
over views. The fused embedding concatenates ``sqrt(w_m) * unit(view_m)``, so its cosine similarity between two
cells is ``sum_m sqrt(w_im w_jm) cos_m(i, j)`` (WNN builds a graph from such a weighted similarity; here it stays
an embedding any graph or clustering can read). No labels are read.

``shrinkage`` pulls the weights toward equal: ``(1 - s) * w + s / n_views``, or toward fixed ``target`` weights
(``(1 - s) * w + s * target``; ``s = 1`` gives the target weights for every cell). Learned or graph-smoothed views
often get weights near 0 or 1, and two cells of one type with opposite weights then lose the similarity they have
in every view (``sqrt(w_im w_jm)`` near 0), which splits clusters; shrinking keeps every pair's similarity at least
``s / n_views`` of each view's (benchmarks/clustering.md, "Fusion weights and read-offs").
"""
from __future__ import annotations

import numpy as np

from omics_cl.core.neighbors import knn


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def check_views(views: list[np.ndarray]) -> None:
    """Refuse fewer than 2 views, or views with different numbers of cells."""
    if len(views) < 2:
        raise ValueError(f"weighting needs at least 2 views, got {len(views)}")
    if len({len(v) for v in views}) != 1:
        raise ValueError(f"views must have the same cells, got {[len(v) for v in views]} rows")


def _affinity(view: np.ndarray, neighbors: np.ndarray, nearest: np.ndarray, bandwidth: np.ndarray) -> np.ndarray:
    distance = np.linalg.norm(view - view[neighbors].mean(1), axis=1)
    return np.exp(-np.maximum(distance - nearest, 0.0) / bandwidth)


def wnn_weights(views: list[np.ndarray], n_neighbors: int = 20, seed: int = 0) -> np.ndarray:
    """Per-cell view weights, ``(n_cells, n_views)``, rows summing to 1 (see the module docstring)."""
    check_views(views)
    views = [unit_rows(v) for v in views]
    neighbors, nearest, bandwidth = [], [], []
    for view in views:
        idx, dist = knn(view, n_neighbors + 1, "euclidean", seed)
        neighbors.append(idx[:, 1:])
        nearest.append(dist[:, 1])
        bandwidth.append(np.maximum(dist[:, 1:].mean(1) - dist[:, 1], 1e-6))
    scores = []
    for m, view in enumerate(views):
        within = _affinity(view, neighbors[m], nearest[m], bandwidth[m])
        cross = np.mean([_affinity(view, neighbors[o], nearest[m], bandwidth[m])
                         for o in range(len(views)) if o != m], axis=0)
        scores.append(within / (cross + 1e-4))
    scores = np.stack(scores, 1)
    weights = np.exp(scores - scores.max(1, keepdims=True))
    return (weights / weights.sum(1, keepdims=True)).astype(np.float32)


def weighted_concat(views: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """``concat_m sqrt(w_m) * unit(view_m)``: cosine similarity = per-cell weighted sum of view similarities."""
    return np.concatenate([np.sqrt(weights[:, [m]]) * unit_rows(v) for m, v in enumerate(views)], 1)


def check_shrinkage(shrinkage: float) -> None:
    """Refuse a ``shrinkage`` outside [0, 1]."""
    if not 0.0 <= shrinkage <= 1.0:
        raise ValueError("fusion shrinkage must be between 0 (WNN weights) and 1 (the fixed weights, equal by "
                         f"default), got {shrinkage}")


def target_weights(target, n_views: int, what: str = "target weights") -> np.ndarray:
    """``target`` (one non-negative weight per view) scaled to sum 1; equal weights when ``target`` is None. ``what``
    names the weights in the error."""
    if target is None:
        return np.full(n_views, 1.0 / n_views, dtype=np.float32)
    target = np.asarray(target, dtype=np.float64)
    if target.shape != (n_views,) or not np.all(np.isfinite(target)) or np.any(target < 0) or target.sum() <= 0:
        raise ValueError(f"{what} must be {n_views} finite non-negative numbers, not all 0; got "
                         f"{target.tolist()}")
    return (target / target.sum()).astype(np.float32)


def wnn_fuse(views: list[np.ndarray], n_neighbors: int = 20, seed: int = 0, shrinkage: float = 0.0,
             target=None) -> tuple[np.ndarray, np.ndarray]:
    """``(fused embedding, per-cell weights)`` of ``views`` (arrays with the same cells in the same order), the
    weights shrunk by ``shrinkage`` toward ``target`` (one weight per view; None: equal). ``shrinkage=1`` gives the
    target weights for every cell, with no neighbour search."""
    check_shrinkage(shrinkage)
    check_views(views)
    fixed = target_weights(target, len(views))
    if shrinkage == 1.0:
        weights = np.tile(fixed, (len(views[0]), 1))
    else:
        weights = ((1.0 - shrinkage) * wnn_weights(views, n_neighbors, seed) + shrinkage * fixed).astype(np.float32)
    return weighted_concat(views, weights), weights
