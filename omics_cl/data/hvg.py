"""Highly variable genes that never fail on valid counts: ``select_hvg``.

Seurat v3 (scanpy's ``flavor="seurat_v3"``, one batch, loess span 0.3) is tried first. skmisc's
loess can fail on valid integer counts when many genes share the same low mean and variance
(``ValueError: b'reciprocal condition number ...'``, scanpy issues #1504 and #2669); the trend is
then refitted with spans 0.5 and 0.8, and when those fail too genes are ranked by analytic Pearson
residual variance (Lause et al. 2021; theta 100, residuals clipped at sqrt(n_cells), as scanpy's
``experimental.pp.highly_variable_genes(flavor="pearson_residuals")``), computed here in row chunks
so backed and sparse matrices are never densified whole. Any fallback gives one ``UserWarning``;
the flavour used is returned (and recorded as ``hvg_flavor`` in the run record).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from omics_cl.data.components import column_sums
from omics_cl.data.counts import CHUNK_ROWS, check_finite_counts, row_chunks
from omics_cl.fallbacks import warn_fallback

SPANS = (0.3, 0.5, 0.8)
THETA = 100.0
PEARSON = "pearson_residuals"
ALL_GENES = "all_genes"
DENSE_BUDGET = 1 << 22  # values per dense row block in the Pearson pass (32 MiB of float64)
MIN_LOESS_POINTS = 4


class LoessError(ValueError):
    """The Seurat v3 mean-variance loess could not be fitted."""


def seurat_v3_flavor(span: float) -> str:
    """The recorded name: ``"seurat_v3"`` at the default span, else ``"seurat_v3_span<span>"``."""
    return "seurat_v3" if span == SPANS[0] else f"seurat_v3_span{span:g}"


def gene_stats(x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated counts' per-gene sums and sums of squares and per-cell totals, in one chunked pass."""
    gene_sum, gene_sumsq, library = np.zeros(x.shape[1]), np.zeros(x.shape[1]), np.zeros(x.shape[0])
    for start, stop, rows in row_chunks(x):
        check_finite_counts(rows)
        s, sq = column_sums(rows)
        gene_sum += s
        gene_sumsq += sq
        library[start:stop] = np.asarray(rows.sum(1)).ravel()
    return gene_sum, gene_sumsq, library


def loess_log_fit(log_mean: np.ndarray, log_var: np.ndarray, span: float) -> np.ndarray:
    """skmisc loess (degree 2) of log10 variance on log10 mean; fitted values."""
    from skmisc.loess import loess

    if len(log_mean) < MIN_LOESS_POINTS:  # skmisc's loess kills the process (segfault) on 0-3 points
        raise ValueError(f"{len(log_mean)} genes with nonzero variance; loess needs at least {MIN_LOESS_POINTS}")
    model = loess(log_mean, log_var, span=span, degree=2)
    model.fit()
    fitted = model.outputs.fitted_values
    if not np.isfinite(fitted).all():
        raise ValueError("loess returned non-finite fitted values")
    return fitted


def seurat_v3_genes(x, n_top_genes: int, gene_sum: np.ndarray, gene_sumsq: np.ndarray, span: float = 0.3,
                    ) -> np.ndarray:
    """Indices of the top genes by Seurat v3 normalised variance (scanpy's ``flavor="seurat_v3"``, one batch).

    Raises ``LoessError`` when the loess cannot be fitted.
    """
    n = x.shape[0]
    mean = gene_sum / n
    var = (gene_sumsq - n * mean**2) / (n - 1)
    not_const = var > 0
    log_fit = np.zeros_like(mean)
    try:
        log_fit[not_const] = loess_log_fit(np.log10(mean[not_const]), np.log10(var[not_const]), span)
    except ValueError as err:
        raise LoessError(f"span {span:g}: {err}") from err
    reg_std = np.sqrt(10**log_fit)
    clip = reg_std * np.sqrt(n) + mean
    clipped_sum = np.zeros_like(mean)
    clipped_sumsq = np.zeros_like(mean)
    for _, _, rows in row_chunks(x):
        if sp.issparse(rows):
            rows = sp.csr_matrix(rows, dtype=np.float64)
            rows.data = np.minimum(rows.data, clip[rows.indices])
        else:
            rows = np.minimum(np.asarray(rows, dtype=np.float64), clip)
        s, sq = column_sums(rows)
        clipped_sum += s
        clipped_sumsq += sq
    norm_var = (n * mean**2 + clipped_sumsq - 2 * clipped_sum * mean) / ((n - 1) * reg_std**2)
    return np.sort(np.argsort(-norm_var, kind="stable")[:n_top_genes])


def pearson_residual_variance(x, gene_sum: np.ndarray, library: np.ndarray, theta: float = THETA) -> np.ndarray:
    """Per-gene variance of analytic Pearson residuals ``(x - mu) / sqrt(mu + mu^2 / theta)``,
    ``mu = library * gene_sum / total``, clipped at +-sqrt(n_cells); 0 for genes without counts."""
    n = x.shape[0]
    keep = gene_sum > 0
    p = gene_sum[keep] / gene_sum.sum()
    r_sum, r_sumsq = np.zeros(len(p)), np.zeros(len(p))
    clip = np.sqrt(n)
    for start, stop, rows in row_chunks(x, max(1, min(CHUNK_ROWS, DENSE_BUDGET // max(len(p), 1)))):
        rows = rows[:, keep]
        rows = rows.toarray() if sp.issparse(rows) else np.asarray(rows)
        mu = library[start:stop, None] * p
        r = np.clip((rows.astype(np.float64) - mu) / np.sqrt(mu + mu**2 / theta), -clip, clip)
        r_sum += r.sum(0)
        r_sumsq += (r**2).sum(0)
    out = np.zeros(len(gene_sum))
    out[keep] = r_sumsq / n - (r_sum / n) ** 2
    return out


def select_hvg(x, n_top_genes: int | None, gene_sum: np.ndarray | None = None, gene_sumsq: np.ndarray | None = None,
               library: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """Sorted indices of ``n_top_genes`` highly variable genes of the raw counts ``x``, and the flavour used.

    Flavours, tried in order: ``"seurat_v3"`` (loess span 0.3, identical to the former recipe),
    ``"seurat_v3_span0.5"``, ``"seurat_v3_span0.8"`` (on a loess failure), ``"pearson_residuals"``
    (theta 100). ``"all_genes"`` when ``n_top_genes`` is None or not smaller than the gene count.
    A fallback warns once (``UserWarning``) with the loess errors and is listed in the run record
    (``omics_cl.fallbacks``). ``gene_sum``, ``gene_sumsq`` and
    ``library`` (see ``gene_stats``) are computed, validating the counts, when not all given.
    """
    if n_top_genes is None or n_top_genes >= x.shape[1]:
        return np.arange(x.shape[1]), ALL_GENES
    if gene_sum is None or gene_sumsq is None or library is None:
        gene_sum, gene_sumsq, library = gene_stats(x)
    failures = []
    for span in SPANS:
        try:
            genes, flavor = seurat_v3_genes(x, n_top_genes, gene_sum, gene_sumsq, span), seurat_v3_flavor(span)
            break
        except LoessError as err:
            failures.append(str(err))
    else:
        var = pearson_residual_variance(x, gene_sum, library)
        genes, flavor = np.sort(np.argsort(-var, kind="stable")[:n_top_genes]), PEARSON
    if failures:
        warn_fallback(f"seurat_v3 HVG selection failed in skmisc's loess ({'; '.join(failures)}); "
                      f"selected {n_top_genes} genes with flavor {flavor!r} instead")
    return genes, flavor
