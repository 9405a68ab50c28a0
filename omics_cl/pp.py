"""Preprocessing (scanpy style)."""
from __future__ import annotations

import anndata as ad
import numpy as np

from omics_cl.data.preprocess import mito_fraction


def filter_mito(adata: ad.AnnData, max_fraction: float = 0.2, layer: str | None = None) -> int:
    """Optional QC of METHODS.md section 1: drop cells whose mitochondrial fraction exceeds ``max_fraction``.

    Stores ``obs["mito_fraction"]``, subsets ``adata`` in place and returns the number of cells removed.
    """
    frac = mito_fraction(adata, layer)
    adata.obs["mito_fraction"] = frac
    keep = frac <= max_fraction
    removed = int((~keep).sum())
    if removed == adata.n_obs:
        raise ValueError(f"every cell has mitochondrial fraction above {max_fraction}; nothing would remain")
    if removed:
        adata._inplace_subset_obs(np.flatnonzero(keep))
    return removed
