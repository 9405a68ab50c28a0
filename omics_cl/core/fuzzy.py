"""UMAP's fuzzy simplicial set of a kNN graph in numpy (the connectivities scanpy's ``neighbors`` computes).

A port of ``umap.umap_.smooth_knn_dist`` and ``compute_membership_strengths`` (local connectivity 1, fuzzy union),
vectorised over cells and keeping umap's float32 arithmetic step for step, so that the weights match umap's; umap's
numba versions cost some 20 s of import and compilation in every new process.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

SMOOTH_K_TOLERANCE = 1e-5
MIN_K_DIST_SCALE = 1e-3
FLOAT32_MAX = np.float32(np.finfo(np.float32).max)


def exp32(x: np.ndarray) -> np.ndarray:
    """float32 ``exp`` rounded from float64 (numpy's own float32 ``exp`` is less accurate than the libm ``expf`` umap's
    numba code calls; this one matches it on all but about 1 in 2,000 values, by one unit in the last place)."""
    return np.exp(x.astype(np.float64)).astype(np.float32)


def smooth_knn_dist(dist: np.ndarray, k: float, n_iter: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell ``(sigma, rho)``: rho is the distance to the nearest other cell (the first positive distance), sigma
    the scale at which the cell's memberships sum to ``log2(k)`` (binary search, as umap's)."""
    dist = np.asarray(dist, dtype=np.float32)
    n = dist.shape[0]
    positive = dist > 0
    has_positive = positive.any(axis=1)
    rho = np.where(has_positive, dist[np.arange(n), positive.argmax(axis=1)], np.float32(0)).astype(np.float32)
    target = np.log2(k)
    lo = np.zeros(n, np.float32)
    hi = np.full(n, FLOAT32_MAX, np.float32)
    mid = np.ones(n, np.float32)
    active = np.ones(n, bool)
    shifted = dist[:, 1:] - rho[:, None]
    for _ in range(n_iter):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        d = shifted[rows]
        with np.errstate(over="ignore"):
            terms = np.where(d > 0, exp32(-(d / mid[rows, None])), np.float32(1.0)).astype(np.float32)
        psum = np.zeros(rows.size, np.float32)
        for j in range(terms.shape[1]):  # sequential float32 sums, as umap's loop
            psum += terms[:, j]
        done = np.abs(psum.astype(np.float64) - target) < SMOOTH_K_TOLERANCE
        active[rows[done]] = False
        rows, psum = rows[~done], psum[~done]
        above = psum > target
        down, up = rows[above], rows[~above]
        hi[down] = mid[down]
        mid[down] = (lo[down] + hi[down]) / np.float32(2)
        lo[up] = mid[up]
        unbounded = hi[up] >= FLOAT32_MAX
        mid[up[unbounded]] *= np.float32(2)
        bounded = up[~unbounded]
        mid[bounded] = (lo[bounded] + hi[bounded]) / np.float32(2)
    floor = MIN_K_DIST_SCALE * np.where(rho > 0, dist.mean(axis=1, dtype=np.float64), dist.mean(dtype=np.float64))
    sigma = np.where(mid < floor, floor, mid).astype(np.float32)
    return sigma, rho


def connectivities(idx: np.ndarray, dist: np.ndarray) -> sp.csr_matrix:
    """Symmetric fuzzy-union connectivities of a kNN graph (``idx`` / ``dist``: cells x k, each row's own cell
    first), umap's ``fuzzy_simplicial_set`` with ``set_op_mix_ratio=1`` and ``local_connectivity=1``."""
    idx = np.asarray(idx)
    dist = np.asarray(dist, dtype=np.float32)
    n, k = idx.shape
    sigma, rho = smooth_knn_dist(dist, float(k))
    excess = dist - rho[:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        vals = exp32(-(excess / sigma[:, None]))
    vals = np.where((excess <= 0) | (sigma[:, None] == 0), np.float32(1.0), vals)
    vals = np.where(idx == np.arange(n)[:, None], np.float32(0.0), vals).astype(np.float32)
    keep = idx.ravel() != -1
    result = sp.coo_matrix((vals.ravel()[keep], (np.repeat(np.arange(n), k)[keep], idx.ravel()[keep])), shape=(n, n))
    result.eliminate_zeros()
    transpose = result.transpose()
    result = result + transpose - result.multiply(transpose)  # fuzzy union (umap's mix ratio 1)
    result.eliminate_zeros()
    return sp.csr_matrix(result)
