"""ATAC space: TF-IDF, LSI by truncated SVD (dropping a depth-tracking first component), kNN on LSI."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from omics_cl.core.neighbors import knn


def inverse_document_frequency(counts) -> np.ndarray:
    """IDF of each peak: n_cells / peak total (0 for a peak with no counts)."""
    x = sp.csr_matrix(counts)
    peak_total = np.asarray(x.sum(0, dtype=np.float64)).ravel()
    return np.divide(x.shape[0], peak_total, out=np.zeros_like(peak_total), where=peak_total > 0)


TYPICAL_TFIDF = 10.0  # where the adaptive scale puts the median stored TF * IDF (benchmarks/label_transfer.md)
SIGNAC_SCALE = 1e4  # Signac's and muon's fixed scale factor; this package's before 2026-12-06
SCALE_SAMPLE = 1 << 20  # stored values the adaptive scale's median is taken over, at most


def canonical_rows(counts) -> sp.csr_matrix:
    """``counts`` as CSR with sorted, summed (duplicate-free) entries; a copy only when they were not."""
    x = sp.csr_matrix(counts)
    if not x.has_canonical_format:
        x = x.copy()
        x.sum_duplicates()
    return x


def adaptive_scale(counts, idf: np.ndarray | None = None) -> float:
    """The adaptive scale of :func:`tfidf`: ``TYPICAL_TFIDF`` over the median of the stored TF * IDF values
    (an evenly strided sample of at most ``SCALE_SAMPLE``); 1 when nothing is stored."""
    x = canonical_rows(counts)
    if x.nnz == 0:
        return 1.0
    idf = inverse_document_frequency(x) if idf is None else np.asarray(idf, dtype=np.float64)
    cell_total = np.asarray(x.sum(1, dtype=np.float64)).ravel()
    picked = np.arange(0, x.nnz, max(1, x.nnz // SCALE_SAMPLE))
    rows = np.searchsorted(x.indptr, picked, side="right") - 1
    values = x.data[picked].astype(np.float64) / cell_total[rows] * idf[x.indices[picked]]
    median = float(np.median(values[values > 0])) if (values > 0).any() else 0.0
    return TYPICAL_TFIDF / median if median > 0 else 1.0


def tfidf(counts, scale: float | None = None, chunk_values: int = 1 << 24,
          idf: np.ndarray | None = None) -> sp.csr_matrix:
    """``log1p(TF * IDF * scale)`` with TF = counts / cell total and IDF = n_cells / peak total (Signac method 1;
    ``idf``: given, e.g. another data set's, to project these cells into its LSI). ``scale=None`` is
    :func:`adaptive_scale`: the log then acts where the values lie, whatever the depth; Signac's fixed 1e4
    (``SIGNAC_SCALE``) saturates it on sparse cells (83 counts per MOp cell), where its LSI keeps less of the
    cell type (benchmarks/label_transfer.md).

    Cells with no counts give zero rows; peaks with no counts give zero columns; stored zeros are dropped. Computed
    in float64 on the stored values, ``chunk_values`` at a time, then kept as float32, so the memory it needs
    beyond its input is about the result's (a 10^6-cell atlas fits).
    """
    x = canonical_rows(counts)
    cell_total = np.asarray(x.sum(1, dtype=np.float64)).ravel()
    idf = inverse_document_frequency(x) if idf is None else np.asarray(idf, dtype=np.float64)
    inv_total = np.divide(1.0, cell_total, out=np.zeros_like(cell_total), where=cell_total > 0)
    column_factor = idf * (adaptive_scale(x, idf) if scale is None else scale)
    data = np.empty(x.nnz, dtype=np.float32)
    rows_per_chunk = max(1, int(chunk_values * x.shape[0] / max(x.nnz, 1)))
    for start in range(0, x.shape[0], rows_per_chunk):
        stop = min(start + rows_per_chunk, x.shape[0])
        lo, hi = x.indptr[start], x.indptr[stop]
        values = x.data[lo:hi].astype(np.float64)
        values *= np.repeat(inv_total[start:stop], np.diff(x.indptr[start:stop + 1]))
        values *= column_factor[x.indices[lo:hi]]
        data[lo:hi] = np.log1p(values, out=values)
    keep = x.data != 0
    if keep.all():
        return sp.csr_matrix((data, x.indices.copy(), x.indptr.copy()), shape=x.shape)
    rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[keep], minlength=x.shape[0]))]).astype(x.indptr.dtype)
    return sp.csr_matrix((data[keep], x.indices[keep], indptr), shape=x.shape)


def lsi(counts, n_components: int = 50, depth_correlation: float = 0.5, seed: int = 0,
        tfidf_scale: float | None = None, standardize: bool = True) -> tuple[np.ndarray, dict]:
    """LSI embedding (cells x components, centred) of TF-IDF peak counts (:func:`tfidf` at ``tfidf_scale``; None:
    :func:`adaptive_scale`). ``standardize``: each component scaled to unit variance (as Signac's
    ``scale.embeddings``); otherwise all divided by their mean standard deviation, so that they keep their
    singular values' weights.

    The first component is dropped when its absolute Pearson correlation with log sequencing depth
    exceeds ``depth_correlation``. Returns the embedding and ``{"depth_r", "dropped_first", "tfidf_scale",
    "standardized"}``.
    """
    embedding, info, _, _ = _fit(counts, n_components, depth_correlation, seed, tfidf_scale, standardize)
    return embedding, info


def lsi_with_tfidf(counts, n_components: int = 50, depth_correlation: float = 0.5, seed: int = 0,
                   tfidf_scale: float | None = None,
                   standardize: bool = True) -> tuple[np.ndarray, dict, sp.csr_matrix]:
    """:func:`lsi`, and the TF-IDF matrix it was computed from (for callers that read both)."""
    embedding, info, _, x = _fit(counts, n_components, depth_correlation, seed, tfidf_scale, standardize)
    return embedding, info, x


def fit_lsi(counts, n_components: int = 50, depth_correlation: float = 0.5, seed: int = 0,
            tfidf_scale: float | None = None,
            standardize: bool = True) -> tuple[np.ndarray, dict, dict[str, np.ndarray]]:
    """:func:`lsi`, and the projection that :func:`project_lsi` applies to other cells: the IDF, the TF-IDF
    scale, the kept SVD components and the standardisation (arrays ``idf``, ``scale``, ``components``, ``mean``,
    ``std``)."""
    embedding, info, projection, _ = _fit(counts, n_components, depth_correlation, seed, tfidf_scale, standardize)
    return embedding, info, projection


def _fit(counts, n_components: int, depth_correlation: float, seed: int, tfidf_scale: float | None,
         standardize: bool) -> tuple[np.ndarray, dict, dict[str, np.ndarray], sp.csr_matrix]:
    from sklearn.decomposition import TruncatedSVD

    if min(counts.shape) < 2:
        raise ValueError(f"LSI needs at least 2 cells and 2 peaks, got {counts.shape[0]} x {counts.shape[1]}")
    idf = inverse_document_frequency(counts)
    scale = adaptive_scale(counts, idf) if tfidf_scale is None else float(tfidf_scale)
    x = tfidf(counts, scale=scale, idf=idf)
    n_components = min(n_components + 1, min(x.shape) - 1)
    svd = TruncatedSVD(n_components=n_components, algorithm="randomized", n_iter=7, random_state=seed)
    z = svd.fit_transform(x)
    depth = np.log1p(np.asarray(sp.csr_matrix(counts).sum(1)).ravel())
    r = float(np.corrcoef(z[:, 0], depth)[0, 1]) if z[:, 0].std() > 0 and depth.std() > 0 else 0.0
    drop = abs(r) > depth_correlation
    kept = slice(1, None) if drop else slice(None, -1)
    z = z[:, kept]
    mean, std = z.mean(0), np.where(z.std(0) > 0, z.std(0), 1.0)
    if not standardize:
        std = np.full_like(std, std.mean())
    projection = {"idf": idf, "scale": np.asarray(scale), "components": svd.components_[kept], "mean": mean,
                  "std": std}
    info = {"depth_r": r, "dropped_first": bool(drop), "tfidf_scale": scale, "standardized": bool(standardize)}
    return ((z - mean) / std).astype(np.float32), info, projection, x


def project_lsi(counts, projection: dict[str, np.ndarray]) -> np.ndarray:
    """Cells (same peaks, same order) in the LSI space of a :func:`fit_lsi` projection."""
    x = tfidf(counts, scale=float(projection["scale"]), idf=projection["idf"])
    z = x @ projection["components"].T
    return ((z - projection["mean"]) / projection["std"]).astype(np.float32)


def neighbors(embedding: np.ndarray, k: int = 10, seed: int = 0) -> np.ndarray:
    """Indices of each cell's ``k`` nearest other cells (cosine), self excluded: cells x k."""
    idx, _ = knn(embedding, k + 1, "cosine", seed)
    out = np.empty((idx.shape[0], k), dtype=np.int64)
    for i, row in enumerate(idx):
        row = row[row != i]
        out[i] = row[:k]
    return out
