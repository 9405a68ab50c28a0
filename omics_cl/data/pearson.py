"""Analytic Pearson residuals of counts and their principal components (Lause, Berens & Kobak 2021, Genome
Biology 22:258; scanpy's ``sc.experimental.pp.normalize_pearson_residuals`` followed by ``sc.pp.pca``).

Each count is compared with what the cell's depth alone predicts, ``mu = library_size * gene_fraction``, under a
negative binomial with overdispersion ``theta``: ``(x - mu) / sqrt(mu + mu^2 / theta)``, clipped to
``[-clip, clip]`` (``sqrt(n_cells)`` unless given). Sequencing depth is thereby taken out of every gene without
a log. The residuals are dense, so they are made one row chunk at a time: the PCA diagonalises their gene x gene
covariance accumulated over the chunks (exact, deterministic; memory grows with genes squared, which is why it
reads the selected HVGs and not all genes).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from omics_cl.data.counts import row_chunks

DEFAULT_THETA = 100.0
RESIDUALS = ("log", "pearson")  # what a PCA view reads: log-normalised HVGs, or their Pearson residuals
FUSED_RESIDUALS = (*RESIDUALS, "both")  # what a fused embedding's PCA views read: one of RESIDUALS, or both views


def check_residuals(residuals: str, allowed: tuple[str, ...] = RESIDUALS) -> None:
    if residuals not in allowed:
        raise ValueError(f"residuals must be one of {allowed}, got {residuals!r}")


def check_theta(theta: float) -> None:
    if theta <= 0:
        raise ValueError(f"theta must be positive, got {theta}")


def residuals(rows, library_size: np.ndarray, gene_fraction: np.ndarray, theta: float = DEFAULT_THETA,
              clip: float | None = None) -> np.ndarray:
    """Pearson residuals (float64, dense) of a block of counts whose columns are the genes of ``gene_fraction``
    (each gene's share of all counts); ``library_size``: each row's total count over all genes."""
    rows = rows.toarray() if sp.issparse(rows) else np.asarray(rows)
    mu = np.outer(np.asarray(library_size, dtype=np.float64), gene_fraction)
    sd = np.sqrt(mu + mu**2 / theta)
    out = np.divide(rows - mu, sd, out=np.zeros_like(mu), where=sd > 0)
    clip = np.sqrt(len(library_size)) if clip is None else clip
    return np.clip(out, -clip, clip)


def principal_components(counts, genes: np.ndarray, library_size: np.ndarray, n_comps: int,
                         theta: float = DEFAULT_THETA) -> np.ndarray:
    """The first ``n_comps`` principal components (cells x n_comps, float32) of the Pearson residuals of
    ``counts[:, genes]``, clipped at ``sqrt(n_cells)`` as scanpy does; ``library_size``: each cell's total
    count over all genes. Signs make each loading's largest entry positive."""
    check_theta(theta)
    n_cells = counts.shape[0]
    n_comps = min(n_comps, len(genes), n_cells - 1)
    gene_sum = np.zeros(len(genes))
    for _, _, rows in row_chunks(counts):
        gene_sum += np.asarray(rows[:, genes].sum(0), dtype=np.float64).ravel()
    gene_fraction = gene_sum / float(np.sum(library_size))
    clip = np.sqrt(n_cells)

    def chunks():
        for start, stop, rows in row_chunks(counts):
            yield start, stop, residuals(rows[:, genes], library_size[start:stop], gene_fraction, theta, clip)

    total = np.zeros(len(genes))
    cross = np.zeros((len(genes), len(genes)))
    for _, _, r in chunks():
        total += r.sum(0)
        cross += r.T @ r
    mean = total / n_cells
    covariance = cross / n_cells - np.outer(mean, mean)
    values, vectors = np.linalg.eigh(covariance)
    loadings = vectors[:, np.argsort(-values)[:n_comps]]
    loadings *= np.sign(loadings[np.abs(loadings).argmax(0), np.arange(n_comps)])
    out = np.empty((n_cells, n_comps), dtype=np.float32)
    for start, stop, r in chunks():
        out[start:stop] = (r - mean) @ loadings
    return out
