"""Classical embeddings of mop_snare_paired for the integration benchmark (``integration.py``): RNA PCA in its
variants, ATAC LSI, their concatenation and WNN-like fusion; and the thinned designs' counts."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from omics_cl import tl
from omics_cl.core import fusion
from omics_cl.data import lsi
from omics_cl.data.components import principal_components
from omics_cl.data.counts import counts_matrix
from omics_cl.data.preprocess import fit_lognormalizer
from omics_cl.models.common import pca_view


def pca_rna(rna, seed):
    work = rna.copy()
    rec = tl.cluster(work, method="pca_unscaled", seed=seed, progress=False)
    return {"joint": work.obsm["X_pca_unscaled"][:, :rec["graph_dims"]]}


def pca_scaled(rna, seed, regress_depth: bool = False):
    """50 components of the standardised log-normalised HVGs (with ``regress_depth``, log library size regressed
    out of each gene: the default sci2cl's PCA view alone; without: its view before 2026-12-03)."""
    normalizer = fit_lognormalizer(counts_matrix(rna), 2000)
    x = normalizer.sparse(counts_matrix(rna))
    covariate = np.log1p(normalizer.library_size) if regress_depth else None
    return {"joint": principal_components(x, 50, seed, standardize=True, covariate=covariate)}


def pca_pearson(rna, seed):
    """50 components of the 2,000 HVGs' analytic Pearson residuals (the same for every seed)."""
    counts = counts_matrix(rna)
    normalizer = fit_lognormalizer(counts, 2000)
    return {"joint": pca_view(counts, normalizer, 50, "pearson", seed)}


def lsi_atac(atac, seed):
    return {"joint": lsi.lsi(atac.X, n_components=50, seed=seed)[0]}


def concat(rna, atac, seed):
    blocks = [pca_rna(rna, seed)["joint"], lsi_atac(atac, seed)["joint"]]
    return {"joint": np.concatenate([b / np.sqrt((b.var(0)).sum()) for b in blocks], 1)}


def wnn_like(rna, atac, seed):
    return {"joint": fusion.wnn_fuse([pca_rna(rna, seed)["joint"], lsi_atac(atac, seed)["joint"]], seed=seed)[0]}


def thinned(adata, fraction: float = 0.5, seed: int = 0):
    """A copy with every count binomially thinned to ``fraction`` (one fixed draw); cells left empty keep one
    count of their first feature so the counts stay valid input."""
    out = adata.copy()
    x = sp.csr_matrix(out.X, dtype=np.float32, copy=True)
    x.data = np.random.default_rng(seed).binomial(x.data.astype(np.int64), fraction).astype(np.float32)
    empty = np.flatnonzero(np.asarray(x.sum(1)).ravel() == 0)
    x = x.tolil()
    for cell in empty:
        x[cell, adata.X[cell].nonzero()[1][0]] = 1.0
    out.X = x.tocsr()
    out.X.eliminate_zeros()
    return out
