"""Paired RNA + ATAC input: cell matching, feature selection and aligned minibatches.

RNA keeps ``n_top_genes`` seurat_v3 HVGs, ATAC the ``n_top_peaks`` peaks accessible in the most
cells. Each modality's network input is ``log1p(counts / library * 1e4)`` over the kept features;
the ZINB target is the raw counts of those features with size factor ``library / median library``
(library = the cell's total over all features of the modality). Count matrices stay sparse; a
batch is densified when it is drawn. New cells for a saved model keep the model's features, matched by name
(:meth:`Modality.aligned`).
"""
from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from omics_cl.data.counts import row_chunks
from omics_cl.data.preprocess import LogNormalizer, fit_lognormalizer


def paired_modalities(data=None, rna: ad.AnnData | None = None, atac: ad.AnnData | None = None,
                      ) -> tuple[ad.AnnData, ad.AnnData]:
    """``(rna, atac)`` views with the same cells in the same (RNA's) order.

    ``data`` is a MuData with modalities ``rna`` and ``atac``; otherwise pass ``rna`` and ``atac``.
    Cells are matched by name; ATAC is reordered when needed. Raises ``ValueError`` when the cell
    names differ, repeat, or a modality is empty.
    """
    if data is not None:
        mods = getattr(data, "mod", None)
        if mods is None or "rna" not in mods or "atac" not in mods:
            found = list(mods.keys()) if mods is not None else type(data).__name__
            raise ValueError(f"expected a MuData with modalities 'rna' and 'atac', got {found}")
        rna, atac = mods["rna"], mods["atac"]
    if rna is None or atac is None:
        raise ValueError("pass a MuData, or both rna= and atac= AnnData objects")
    for name, a in (("rna", rna), ("atac", atac)):
        if a.n_obs == 0 or a.n_vars == 0:
            raise ValueError(f"the {name} modality is empty ({a.n_obs} cells x {a.n_vars} features)")
        if not a.obs_names.is_unique:
            raise ValueError(f"{name} cell names repeat ({int(a.obs_names.duplicated().sum())} duplicates); "
                             "paired cells are matched by name")
    if rna.obs_names.equals(atac.obs_names):
        return rna, atac
    shared = rna.obs_names.intersection(atac.obs_names)
    if len(shared) != rna.n_obs or len(shared) != atac.n_obs:
        only_rna = rna.obs_names.difference(atac.obs_names)
        only_atac = atac.obs_names.difference(rna.obs_names)
        raise ValueError(
            f"RNA and ATAC cells do not match: {rna.n_obs} RNA cells, {atac.n_obs} ATAC cells, {len(shared)} in both; "
            f"{len(only_rna)} only in RNA (e.g. {list(only_rna[:3])}), {len(only_atac)} only in ATAC "
            f"(e.g. {list(only_atac[:3])}). Subset both to the shared cells first")
    return rna, atac[rna.obs_names]


def top_accessible(x, n_top: int | None) -> np.ndarray:
    """Indices (sorted) of the ``n_top`` features nonzero in the most cells; all when ``n_top`` is None."""
    n_cells_with = np.zeros(x.shape[1])
    for _, _, rows in row_chunks(x):
        n_cells_with += np.asarray((rows != 0).sum(0)).ravel()
    if n_top is None or n_top >= x.shape[1]:
        return np.arange(x.shape[1])
    return np.sort(np.argsort(-n_cells_with, kind="stable")[:n_top])


def _subset_counts(x, features: np.ndarray) -> sp.csr_matrix:
    return sp.vstack([sp.csr_matrix(rows[:, features], dtype=np.float32) for _, _, rows in row_chunks(x)]).tocsr()


@dataclass
class Modality:
    """Kept raw counts (cells x kept features, sparse), their input transform and size factors; ``columns``:
    the kept features' column indices in the input."""

    counts: sp.csr_matrix
    normalizer: LogNormalizer
    size_factor: np.ndarray
    selected_by: str | None = None  # the HVG flavour used (``select_hvg``), or "accessible"
    columns: np.ndarray | None = None

    @classmethod
    def fit(cls, x, n_top: int | None, selection: str) -> Modality:
        normalizer = fit_lognormalizer(x, n_top if selection == "hvg" else None)  # validates counts
        if selection == "accessible":
            normalizer.genes = top_accessible(x, n_top)
        return cls.kept(x, normalizer.genes, normalizer.library_size,
                        "accessible" if selection == "accessible" else normalizer.hvg_flavor)

    @classmethod
    def kept(cls, x, columns: np.ndarray, library_size: np.ndarray, selected_by: str | None) -> Modality:
        """The modality of ``x`` keeping ``columns`` (-1: a feature ``x`` lacks, all zero)."""
        present = np.flatnonzero(columns >= 0)
        counts = _subset_counts(x, columns[present])
        if len(present) < len(columns):
            counts = sp.csr_matrix((counts.data, present[counts.indices], counts.indptr),
                                   shape=(counts.shape[0], len(columns)))
        size_factor = (library_size / np.median(library_size)).astype(np.float32)
        return cls(counts, LogNormalizer(np.arange(len(columns)), library_size), size_factor, selected_by, columns)

    @classmethod
    def aligned(cls, x, var_names, features, what: str = "features") -> tuple[Modality, list[str]]:
        """New cells ``x`` (raw counts, columns named ``var_names``) in a saved model's ``features``, matched by
        name: features ``x`` lacks are zero. The library size is the cell's total over all of ``x``'s columns, as
        in :meth:`fit`. Returns ``(modality, missing feature names)``; ``ValueError`` when no feature is shared
        or a model feature's name repeats in ``var_names``."""
        features = np.asarray(features, dtype=str)
        names = pd.Index(np.asarray(var_names, dtype=str))
        repeated = sorted(set(names[names.duplicated()]) & set(features))
        if repeated:
            raise ValueError(f"{len(repeated)} of the model's {what} have repeated names in the data (e.g. "
                             f"{repeated[:3]}); make the names unique as they were for training")
        columns = names.get_indexer(features) if names.is_unique else np.array(
            [names.get_loc(f) if f in names else -1 for f in features])
        if (columns < 0).all():
            raise ValueError(f"no shared {what}: the model's {len(features)} (e.g. {list(features[:3])}) and the "
                             f"data's {len(names)} (e.g. {list(names[:3])}) are matched by exact name")
        normalizer = fit_lognormalizer(x, None)  # validates counts, library sizes
        return cls.kept(x, columns, normalizer.library_size, None), features[columns < 0].tolist()

    @property
    def n_features(self) -> int:
        return self.counts.shape[1]


@dataclass(frozen=True)
class PairedQuery:
    """New paired cells for a trained integration method's ``map_query``: both modalities in the model's
    features, the arrays saved with the model (``query_state``) and whether to refit the RNA PCA on these
    cells instead of projecting them onto the saved loadings."""

    rna: Modality
    atac: Modality
    state: dict
    refit_pca: bool = False
