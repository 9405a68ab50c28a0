"""ATAC-only embeddings (``embed_atac``): LSI of the peaks, and the learned latent of a saved transfer model."""
from __future__ import annotations

import os
import warnings

import anndata as ad

from omics_cl.checks import check_positive_int, check_positive_number
from omics_cl.data import lsi
from omics_cl.data.counts import nonempty_counts
from omics_cl.environment import provenance
from omics_cl.fallbacks import recorded
from omics_cl.tl._common import store_record
from omics_cl.tl._map import mapped_query

# MOp ATAC, n_clusters ARI medians at 10 / 20 / 30 / 50 components: .344 / .309 / .244 / .281 with the adaptive
# TF-IDF scale (2026-12-06), .060 / .032 / .047 / .027 with Signac's before
LSI_COMPONENTS = 10


@recorded
def embed_atac(atac: ad.AnnData, layer: str | None = None, n_components: int = LSI_COMPONENTS, model=None,
               gene_activity: ad.AnnData | None = None, annotation=None, seed: int = 0,
               tfidf_scale: float | None = None) -> dict:
    """Embed ATAC cells without labels: ``obsm["X_lsi"]``, and with ``model`` the learned latent.

    ``X_lsi``: TF-IDF + truncated SVD of the peak counts, ``n_components`` standardised components, the
    first dropped when it tracks sequencing depth (|r| > 0.5). ``model``: a transfer model saved by
    ``transfer_labels(..., save_model=DIR)`` (trained on any labelled RNA reference); its encoder's latent
    of this data's gene activity goes to ``obsm["X_<method>"]`` (e.g. ``X_scncl``), and nothing else of
    the transfer is written. Both are clusterable with :func:`cluster_embedding`. No labels are read.
    A learned latent without any reference (autoencoders on peaks or on LSI) clustered worse than LSI on
    MOp and is not offered. Returns the record, also in ``uns["omics_cl"]["embed_atac"]``.

    Parameters
    ----------
    atac
        ATAC cells x peaks, raw counts.
    layer
        Layer of ``atac`` holding the raw counts (``None``: ``X``).
    n_components
        LSI components kept.
    model
        Directory of a saved transfer model (``None``: LSI only).
    gene_activity
        Cells x genes gene-activity AnnData, same cells as ``atac`` (with ``model``).
    annotation
        Gene annotation to build gene activity from (with ``model``, when ``gene_activity`` is not given).
    seed
        Random seed of the SVD.
    tfidf_scale
        Scale inside the peaks' ``log1p(TF * IDF * scale)`` (:func:`omics_cl.data.lsi.tfidf`; ``None``: adapted so
        that the median value is 10; ``1e4``: Signac's, the default before 2026-12-06).

    Returns
    -------
    dict
        ``n_components``, ``lsi`` (depth correlation, whether the first component was dropped, the TF-IDF scale),
        ``learned`` (the obsm key of the learned latent or ``None``), ``n_cells_without_counts`` (warned about),
        library versions and the machine.
    """
    check_positive_int(n_components, "n_components")
    check_positive_number(tfidf_scale, "tfidf_scale", allow_none=True)
    counts, empty = nonempty_counts(atac, layer, "ATAC counts")
    if model is not None and gene_activity is None and annotation is None:
        raise ValueError("a model needs the query's gene activity: give gene_activity or annotation")
    if empty:
        warnings.warn(f"{empty} of {atac.n_obs} cells have no ATAC count: their X_lsi rows are one and the same "
                      "point and cluster together; consider removing them (e.g. sc.pp.filter_cells(atac, "
                      "min_counts=1))", stacklevel=2)
    embedding, info = lsi.lsi(counts, n_components, seed=seed, tfidf_scale=tfidf_scale)
    learned = None
    if model is not None:
        saved, out, _, _, _ = mapped_query(atac, model, gene_activity, annotation, layer)
        learned = f"X_{saved.method.name}"
        atac.obsm[learned] = out["atac_embedding"]
    atac.obsm["X_lsi"] = embedding
    record = {"n_components": n_components, "lsi": info, "learned": learned, "n_cells_without_counts": empty,
              "model": None if model is None else str(os.path.abspath(model)), "seed": seed, **provenance()}
    store_record(atac, "embed_atac", record)
    return record
