"""Principal components with one per-cell covariate (e.g. log library size) regressed out of every column.

As ``sc.pp.regress_out`` (a least-squares fit of each column on the covariate, residuals kept) followed by a PCA,
but the residual matrix ``X - 1 mean^T - c coef^T`` (``c``: the centred covariate) is never formed: ARPACK reads it
through a linear operator, so a sparse ``X`` stays sparse.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import ArpackError, LinearOperator, svds

from omics_cl.fallbacks import warn_fallback


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
    try:
        u, s, vt = svds(operator, k=n_comps, solver="arpack", v0=start)
        order = np.argsort(-s)
        scores, vt = (u * s)[:, order], vt[order]
    except ArpackError as error:  # e.g. no variance left: ARPACK's start vector is zero
        warn_fallback(f"ARPACK failed on the PCA with a covariate regressed out ({error}); the components come from "
                      "the eigendecomposition of the covariance matrix instead")
        scores, vt = covariance_components(x, mean, centred, coef64, n_comps)
    signs = np.where(np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)]) < 0, -1.0, 1.0)
    return (scores * signs).astype(np.float32), (vt * signs[:, None]).astype(np.float32), mean, coef, center


def covariance_components(x: sp.csr_matrix, mean: np.ndarray, centred: np.ndarray, coef: np.ndarray,
                          n_comps: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores and loadings (rows) of the residual matrix ``x - 1 mean^T - centred coef^T`` from the
    eigendecomposition of its cross-product, ``x^T x - n mean mean^T - (centred . centred) coef coef^T`` (the
    least-squares slopes make the cross terms cancel); columns x columns, dense."""
    cross = np.asarray((x.T @ x).todense()) - len(centred) * np.outer(mean, mean) - \
        float(centred @ centred) * np.outer(coef, coef)
    values, vectors = np.linalg.eigh((cross + cross.T) / 2)
    loadings = vectors[:, np.argsort(-values, kind="stable")[:n_comps]]
    scores = x @ loadings - mean @ loadings - np.outer(centred, coef @ loadings)
    return np.asarray(scores), loadings.T
