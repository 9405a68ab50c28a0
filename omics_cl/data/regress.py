"""Principal components with one per-cell covariate (e.g. log library size) regressed out of every column.

As ``sc.pp.regress_out`` (a least-squares fit of each column on the covariate, residuals kept) followed by a PCA,
but the residual matrix ``X - 1 mean^T - c coef^T`` (``c``: the centred covariate) is never formed: ARPACK reads it
through a linear operator, so a sparse ``X`` stays sparse.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, svds


def regressed_components(x: sp.csr_matrix, covariate: np.ndarray, n_comps: int,
                         seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """The first ``n_comps`` principal components of ``x`` with ``covariate`` regressed out of each column.
    Returns the components (cells x n_comps, float32), the loadings (n_comps x columns), the column means, the
    per-column slopes (float32; the operator uses them as rounded, as new cells do) and the covariate's mean;
    signs make each loading's largest entry positive. Deterministic for a given ``seed``."""
    if len(covariate) != x.shape[0]:
        raise ValueError(f"the covariate has {len(covariate)} values for {x.shape[0]} cells")
    x = sp.csr_matrix(x, dtype=np.float64)
    mean = np.asarray(x.mean(0)).ravel()
    center = float(np.mean(covariate))
    centred = np.asarray(covariate, dtype=np.float64) - center
    denominator = float(centred @ centred)
    if denominator <= 0:
        raise ValueError("the covariate to regress out is constant over the cells")
    coef = (np.asarray(x.T @ centred).ravel() / denominator).astype(np.float32)
    coef64 = coef.astype(np.float64)

    def matvec(v):
        v = np.ravel(v)
        return x @ v - mean @ v - centred * (coef64 @ v)

    def rmatvec(u):
        u = np.ravel(u)
        return x.T @ u - mean * u.sum() - coef64 * (centred @ u)

    operator = LinearOperator(x.shape, matvec=matvec, rmatvec=rmatvec, dtype=np.float64)
    start = np.random.default_rng(seed).uniform(-1, 1, min(x.shape))
    u, s, vt = svds(operator, k=n_comps, solver="arpack", v0=start)
    order = np.argsort(-s)
    u, s, vt = u[:, order], s[order], vt[order]
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])
    return ((u * s) * signs).astype(np.float32), (vt * signs[:, None]).astype(np.float32), mean, coef, center
