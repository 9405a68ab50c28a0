"""Principal components of sparse count-derived matrices, with optional standardisation and covariate
regression, and the fitted projection that puts new rows on the same axes."""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import ArpackError

from omics_cl.data.regress import regressed_components
from omics_cl.fallbacks import warn_fallback


def column_sums(block) -> tuple[np.ndarray, np.ndarray]:
    """Per-column sums and sums of squares of a dense or sparse block, in float64."""
    if sp.issparse(block):
        block = sp.csr_matrix(block, dtype=np.float64)
        return np.asarray(block.sum(0)).ravel(), np.asarray(block.multiply(block).sum(0)).ravel()
    block = np.asarray(block, dtype=np.float64)
    return block.sum(0), (block**2).sum(0)


def unit_variance(sums: np.ndarray, squares: np.ndarray, n_rows: int,
                  max_value: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-column ``clip`` (mean + ``max_value`` sd, float64) and ``scale`` (1 / sd, 0 for constant columns;
    float32) from the column sums and sums of squares over ``n_rows`` rows."""
    mean = sums / n_rows
    sd = np.sqrt(np.maximum(squares / n_rows - mean**2, 0.0))
    return mean + max_value * sd, np.where(sd > 0, 1 / np.maximum(sd, 1e-30), 0.0).astype(np.float32)


def _standardized(x: sp.csr_matrix, clip: np.ndarray, scale: np.ndarray) -> sp.csr_matrix:
    """Stored values clipped at ``clip`` per column (in place), then columns times ``scale``."""
    x.data = np.minimum(x.data, clip[x.indices]).astype(np.float32)
    return x @ sp.diags(scale)


@dataclass(frozen=True)
class PCAProjection:
    """A PCA fitted by :func:`fit_principal_components`: ``components`` (n_comps x columns), ``center`` (the
    column means it centred on), when standardised ``clip`` (mean + max_value sd per column) and ``scale``
    (1 / sd, 0 for constant columns), and when a covariate was regressed out ``coef`` (its slope per column) and
    ``covariate_center`` (its mean, one value)."""

    components: np.ndarray
    center: np.ndarray
    clip: np.ndarray | None = None
    scale: np.ndarray | None = None
    coef: np.ndarray | None = None
    covariate_center: np.ndarray | None = None

    def transform(self, x, covariate: np.ndarray | None = None) -> np.ndarray:
        """New rows of the fitted columns on the fitted axes: standardised with the fitted statistics, centred,
        the fitted covariate's part removed (``covariate``: its value per new row) and projected onto the
        loadings (float32)."""
        x = sp.csr_matrix(x, dtype=np.float32, copy=True)
        if self.scale is not None:
            x = _standardized(x, self.clip, self.scale)
        out = np.asarray(x @ self.components.T) - self.center @ self.components.T
        if self.coef is not None:
            if covariate is None or len(covariate) != x.shape[0]:
                raise ValueError("this PCA regressed out a covariate: pass its value for each new row")
            out -= (np.asarray(covariate) - self.covariate_center[0])[:, None] * (self.coef @ self.components.T)
        return out.astype(np.float32)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The fitted arrays named ``prefix + field`` (those that are set)."""
        return {prefix + f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_arrays(cls, arrays: dict, prefix: str) -> PCAProjection:
        """The inverse of :meth:`arrays`."""
        return cls(**{f.name: arrays.get(prefix + f.name) for f in fields(cls)})


def fit_principal_components(x: sp.csr_matrix, n_comps: int, seed: int, standardize: bool = False,
                             max_value: float = 10.0,
                             statistics: tuple[np.ndarray, np.ndarray] | None = None,
                             covariate: np.ndarray | None = None) -> tuple[np.ndarray, PCAProjection]:
    """The first ``n_comps`` principal components of a sparse non-negative matrix (implicitly centred, ARPACK; where
    ARPACK fails, with a warning, the eigendecomposition of the covariance matrix) and the fitted
    :class:`PCAProjection` that puts new rows on the same axes.

    With ``standardize``, of its columns scaled to unit variance and clipped at ``max_value`` standard deviations
    above the mean, as ``sc.pp.scale(max_value=...)`` before PCA, but kept sparse (the clip is applied to the
    stored values, so only the below-mean side is not clipped); constant columns stay zero. ``statistics``: the
    columns' ``(clip, scale)`` already fitted on ``x`` (e.g. a standardised :class:`LogNormalizer`'s), used
    instead of computing them again (``max_value`` is then theirs). ``covariate`` (one value per row, e.g. log
    library size): regressed out of every (standardised) column before the PCA, as ``sc.pp.regress_out``
    (``omics_cl.data.regress``; the matrix stays sparse). Deterministic for a given ``seed``."""
    import scanpy as sc

    if statistics is not None and not standardize:
        raise ValueError("statistics are the standardisation's: pass them with standardize=True")
    x = sp.csr_matrix(x, dtype=np.float32, copy=True)
    clip = scale = None
    if standardize:
        if statistics is None:
            clip, scale = unit_variance(*column_sums(x), x.shape[0], max_value)
        else:
            clip, scale = statistics
            if clip.shape != (x.shape[1],) or scale.shape != (x.shape[1],):
                raise ValueError(f"statistics must hold one clip and one scale per column ({x.shape[1]}), "
                                 f"got shapes {clip.shape} and {scale.shape}")
        x = _standardized(x, clip, scale)
    n_comps = min(n_comps, min(x.shape) - 1)
    if covariate is not None:
        pcs, components, center, coef, covariate_center = regressed_components(x, covariate, n_comps, seed)
        return pcs, PCAProjection(components, center, clip, scale, coef, np.array([covariate_center]))
    try:
        pcs, components, _, _ = sc.pp.pca(x, n_comps=n_comps, random_state=seed, svd_solver="arpack",
                                          return_info=True)
    except ArpackError as error:  # e.g. a matrix without variance: ARPACK's start vector is zero
        warn_fallback(f"ARPACK failed on the PCA ({error}); the components come from the eigendecomposition of "
                      "the covariance matrix instead")
        with np.errstate(invalid="ignore", divide="ignore"):  # explained-variance ratios of a matrix without any
            pcs, components, _, _ = sc.pp.pca(x, n_comps=n_comps, random_state=seed, svd_solver="covariance_eigh",
                                              return_info=True)
    center = column_sums(x)[0] / x.shape[0]
    return np.asarray(pcs, dtype=np.float32), PCAProjection(np.asarray(components, np.float32), center, clip, scale)


def principal_components(x: sp.csr_matrix, n_comps: int, seed: int, standardize: bool = False,
                         max_value: float = 10.0,
                         statistics: tuple[np.ndarray, np.ndarray] | None = None,
                         covariate: np.ndarray | None = None) -> np.ndarray:
    """The principal components of :func:`fit_principal_components`, without the fit."""
    return fit_principal_components(x, n_comps, seed, standardize, max_value, statistics, covariate)[0]
