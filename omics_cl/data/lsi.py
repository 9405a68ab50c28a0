"""ATAC space: TF-IDF, LSI by truncated SVD (dropping a depth-tracking first component), kNN on LSI."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from omics_cl.core import graph


def tfidf(counts, scale: float = 1e4) -> sp.csr_matrix:
    """``log1p(TF * IDF * scale)`` with TF = counts / cell total and IDF = n_cells / peak total (Signac method 1).

    Cells with no counts give zero rows; peaks with no counts give zero columns.
    """
    x = sp.csr_matrix(counts, dtype=np.float64)
    cell_total = np.asarray(x.sum(1)).ravel()
    peak_total = np.asarray(x.sum(0)).ravel()
    idf = np.divide(x.shape[0], peak_total, out=np.zeros_like(peak_total), where=peak_total > 0)
    inv_total = np.divide(1.0, cell_total, out=np.zeros_like(cell_total), where=cell_total > 0)
    out = sp.diags(inv_total) @ x @ sp.diags(idf * scale)
    out = sp.csr_matrix(out)
    out.data = np.log1p(out.data)
    return out.astype(np.float32)


def lsi(counts, n_components: int = 50, depth_correlation: float = 0.5, seed: int = 0) -> tuple[np.ndarray, dict]:
    """LSI embedding (cells x components, each standardised) of TF-IDF peak counts.

    The first component is dropped when its absolute Pearson correlation with log sequencing depth
    exceeds ``depth_correlation``. Returns the embedding and ``{"depth_r", "dropped_first"}``.
    """
    from sklearn.decomposition import TruncatedSVD

    x = tfidf(counts)
    n_components = min(n_components + 1, min(x.shape) - 1)
    svd = TruncatedSVD(n_components=n_components, algorithm="randomized", n_iter=7, random_state=seed)
    z = svd.fit_transform(x)
    depth = np.log1p(np.asarray(sp.csr_matrix(counts).sum(1)).ravel())
    r = float(np.corrcoef(z[:, 0], depth)[0, 1]) if z[:, 0].std() > 0 and depth.std() > 0 else 0.0
    drop = abs(r) > depth_correlation
    z = z[:, 1:] if drop else z[:, :-1]
    z = (z - z.mean(0)) / np.where(z.std(0) > 0, z.std(0), 1.0)
    return z.astype(np.float32), {"depth_r": r, "dropped_first": bool(drop)}


def neighbors(embedding: np.ndarray, k: int = 10, seed: int = 0) -> np.ndarray:
    """Indices of each cell's ``k`` nearest other cells (cosine), self excluded: cells x k."""
    idx, _ = graph.knn(embedding, k + 1, "cosine", seed)
    out = np.empty((idx.shape[0], k), dtype=np.int64)
    for i, row in enumerate(idx):
        row = row[row != i]
        out[i] = row[:k]
    return out
