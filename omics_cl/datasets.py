"""Registered real datasets (``omics_cl.datasets.load(name)``) and the bundled demo data."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from omics_cl.data.registry import (
    CACHE_DIR_VAR,
    DATA_DIR_VAR,
    MANIFEST_DIR_VAR,
    OFFLINE_VAR,
    annotation_path,
    cache_dir,
    data_dir,
    file_status,
    get_manifest,
    load,
    manifests,
    offline,
    path,
)

__all__ = ["CACHE_DIR_VAR", "DATA_DIR_VAR", "MANIFEST_DIR_VAR", "OFFLINE_VAR", "annotation_path", "cache_dir",
           "data_dir", "file_status", "get_manifest", "load", "manifests", "offline", "path", "pbmc68k_reduced_counts"]


def pbmc68k_reduced_counts():
    """scanpy's bundled 700-cell PBMC set (no network) with integer counts recovered from ``.raw``.

    ``.raw`` holds log1p of per-cell normalised counts; in each cell the smallest nonzero value
    of ``expm1`` is one count, so dividing by it and rounding gives the counts back.

    Returns
    -------
    AnnData
        700 cells of integer counts (sparse), obs ``bulk_labels`` and ``louvain``.
    """
    import anndata as ad
    import scanpy as sc

    src = sc.datasets.pbmc68k_reduced()
    norm = np.expm1(src.raw.X.toarray() if sp.issparse(src.raw.X) else np.asarray(src.raw.X, dtype=np.float64))
    one_count = np.where(norm > 0, norm, np.inf).min(axis=1, keepdims=True)
    counts = np.round(norm / one_count).astype(np.int32)
    return ad.AnnData(sp.csr_matrix(counts), obs=src.obs[["bulk_labels", "louvain"]].copy(),
                      var=src.raw.var[[]].copy())
