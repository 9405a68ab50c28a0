"""Label a new ATAC query with a transfer model saved by ``transfer_labels(..., save_model=DIR)``, without
retraining (``map_query``).

What is saved and what is refitted: the trained parameters, the config, the selected genes (the model's
input space; features are binarised or log-normalised per cell, so no fitted normaliser is needed), the
reference's latent rows and class indices (the neighbour vote), its classes and the seed. The query's own
parts are recomputed on the new query exactly as the original run computed them on its query: the LSI of
its peaks, the peak-space classifier fitted to its confidently labelled cells, its Leiden clusters (cluster
novelty), its cells' support for their labels (from the saved class signatures) and, by default, the novelty
threshold (the ``novelty_rate`` most novel cells of this query). The query's peaks therefore need not match the
training query's; its genes are matched to the saved genes by name. A model trained with ``learned_atac`` also
saves its ATAC encoder, the training query's LSI projection and peaks: a new query's peaks are matched to those
by name (missing ones are zero, with a warning) for its learned latent (``obsm["X_atac_latent"]``).
"""
from __future__ import annotations

import os
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from omics_cl import models
from omics_cl.checks import check_key_added
from omics_cl.data import lsi
from omics_cl.data.counts import nonempty_counts
from omics_cl.data.transfer import QueryInputs, TransferInputs, query_features
from omics_cl.environment import provenance
from omics_cl.fallbacks import recorded
from omics_cl.get import TRANSFER_OBS_PREFIX
from omics_cl.pp import gene_activity as build_gene_activity
from omics_cl.tl._atac_latent import saved_query_latent
from omics_cl.tl._common import store_record
from omics_cl.tl._novelty import NOVELTY_RATE, check_novelty_rate
from omics_cl.tl._saved import LoadedModel, load_method_model
from omics_cl.tl._transfer import (
    LEARNED_ATAC_KEY,
    QUERY_LSI,
    cells_without_features,
    learned_atac_key,
    write_predictions,
)

THRESHOLDS = ("query", "model")


def _build(method: models.Method, config, meta: dict, arrays: dict):
    """A freshly initialised model of the saved shapes: the method's own init on an empty source."""
    n_genes, n_classes = len(arrays["genes"]), len(meta["classes"])
    empty = sp.csr_matrix((0, n_genes), dtype=np.float32)
    shape = TransferInputs(empty, np.zeros(0, np.int32), empty, np.zeros((0, 1), np.int64), n_classes)
    ctx = models.Context(int(meta["seed"]))
    return method.init(method.source(shape, config, ctx), config, ctx)


def load_transfer_model(model_dir: str | os.PathLike) -> LoadedModel:
    """Read a transfer model saved by :func:`transfer_labels` (``save_model=``). ``ValueError`` when the
    directory is missing, corrupt, of another format version or not a transfer model.

    Parameters
    ----------
    model_dir
        Directory written by ``transfer_labels(..., save_model=)``.

    Returns
    -------
    LoadedModel
        The saved method, its configs, model and arrays.
    """
    loaded = load_method_model(model_dir, "transfer", _build)
    missing = {"genes", "reference_embedding", "reference_labels"} - set(loaded.arrays)
    if missing or loaded.method.map_query is None:
        raise ValueError(f"{model_dir} cannot map queries: it lacks {sorted(missing) or 'a query mapping'}")
    return loaded


def mapped_query(atac: ad.AnnData, model_dir: str | os.PathLike, gene_activity: ad.AnnData | None = None,
                 annotation=None, atac_layer: str | None = None) -> tuple[LoadedModel, dict, dict, list, dict]:
    """What :func:`map_query` computes, nothing written: the loaded model, the method's query arrays (with the
    query's LSI under ``"query_lsi"`` and the learned ATAC latent under ``"X_atac_latent"`` for a model trained with
    it) and notes, the model genes the query lacks and the query's LSI record."""
    if atac.n_obs < 2:
        raise ValueError(f"the ATAC query has {atac.n_obs} cell(s); mapping needs at least 2 (the query's own LSI)")
    saved = load_transfer_model(model_dir)
    meta = saved.meta
    if gene_activity is None:
        if annotation is None:
            raise ValueError("give gene_activity (cells x genes, same cells as atac) or an annotation to build it")
        gene_activity = build_gene_activity(atac, annotation, layer=atac_layer)
    elif not gene_activity.obs_names.equals(atac.obs_names):
        raise ValueError(f"gene_activity has {gene_activity.n_obs} cells, atac {atac.n_obs}, or another order; "
                         "they must be the same cells in the same order")
    atac_x, missing = query_features(gene_activity, saved.arrays["genes"], meta["features"])
    if missing:
        warnings.warn(f"{len(missing)} of the model's {len(saved.arrays['genes'])} genes are not in the query's gene "
                      f"activity (e.g. {missing[:3]}); they are set to zero", stacklevel=3)
    empty = cells_without_features(len(saved.arrays["genes"]), stacklevel=4, query=atac_x)
    peak_counts, _ = nonempty_counts(atac, atac_layer, "ATAC counts")
    # models saved before these settings were recorded used 50 components, Signac's TF-IDF scale and standardised
    # components
    peaks, lsi_info, peak_tfidf = lsi.lsi_with_tfidf(peak_counts, int(meta.get("n_lsi_components", 50)),
                                                     seed=int(meta["seed"]),
                                                     tfidf_scale=meta.get("tfidf_scale", lsi.SIGNAC_SCALE),
                                                     standardize=bool(meta.get("scale_lsi", True)))
    latent, peak_space = None, peaks
    if meta.get("learned_atac"):  # a model trained with transfer_labels(..., learned_atac=...)
        latent = saved_query_latent(peak_counts, atac.var_names, saved.arrays, meta["learned_atac"])
        peak_space = np.hstack([peaks, latent])
    query = QueryInputs(atac_x, peak_space, saved.arrays["reference_embedding"], saved.arrays["reference_labels"],
                        len(meta["classes"]), peak_tfidf,
                        saved.arrays.get("class_signatures"))
    out, notes = saved.method.map_query(saved.model, query, saved.config, models.Context(int(meta["seed"])))
    notes = {**notes, **empty}
    out = {**out, QUERY_LSI: peaks}
    if latent is not None:
        out[LEARNED_ATAC_KEY] = latent
    return saved, out, notes, missing, lsi_info


@recorded
def map_query(atac: ad.AnnData, model_dir: str | os.PathLike, gene_activity: ad.AnnData | None = None,
              annotation=None, atac_layer: str | None = None, novelty_threshold: str | float = "query",
              novelty_rate: float | None = NOVELTY_RATE, key_added: str | None = None) -> dict:
    """Label the ATAC cells of ``atac`` with a saved transfer model (no training).

    Writes the same ``obs`` / ``obsm`` keys and run record as :func:`transfer_labels` writes into its query
    (not the reference's embedding), under ``key_added`` where given (as there). Gene activity comes from
    ``gene_activity`` (same cells as ``atac``) or is built from ``annotation``; its genes are matched to the
    model's by name (then ``alt_name``): genes the query lacks are zero-filled with a warning and counted in the
    record (``n_missing_genes``), no shared gene is an error. ``novelty_threshold``: ``"query"`` (chosen on this
    query as :func:`transfer_labels` chooses it: the ``novelty_rate`` most novel cells, or with
    ``novelty_rate=None`` the Otsu rule), ``"model"`` (the threshold and rule the training run chose; a model saved
    before the rule was recorded: the Otsu rule) or a number (applied under the rule ``novelty_rate`` names).
    Mapping the training query with its gene activity gives the original run's results bit for bit.
    Returns the run record.

    Parameters
    ----------
    atac
        New ATAC query (cells x peaks, raw counts).
    model_dir
        Directory of a saved transfer model.
    gene_activity
        Cells x genes gene-activity AnnData, same cells as ``atac``.
    annotation
        Gene annotation (GTF / GFF3 / BED / TSV path or DataFrame) to build gene activity from.
    atac_layer
        Layer of ``atac`` holding the raw counts (``None``: ``X``).
    novelty_threshold
        ``"query"``, ``"model"`` or a number.
    novelty_rate
        Share of the query flagged novel (``None``: the Otsu rule).
    key_added
        Name to write the results under (``None``: ``omics_cl_*`` obs columns, the method's name elsewhere).

    Returns
    -------
    dict
        The run record.
    """
    if not (novelty_threshold in THRESHOLDS or isinstance(novelty_threshold, (int, float))):
        raise ValueError(f"novelty_threshold must be one of {THRESHOLDS} or a number, got {novelty_threshold!r}")
    check_novelty_rate(novelty_rate)
    check_key_added(key_added)
    saved, out, notes, missing, lsi_info = mapped_query(atac, model_dir, gene_activity, annotation, atac_layer)
    meta, method = saved.meta, saved.method.name
    classes = pd.Index(meta["classes"])
    fixed = {"query": None, "model": meta["record"]["novelty_threshold"]}.get(novelty_threshold, novelty_threshold)
    if novelty_threshold == "model":
        novelty_rate = meta["record"].get("novelty_rate") if meta["record"].get("novelty_rule") == "rate" else None
    key = key_added or method
    flag = write_predictions(atac, key, classes, out, fixed, novelty_rate,
                             obs_prefix=key_added or TRANSFER_OBS_PREFIX)
    if LEARNED_ATAC_KEY in out:
        atac.obsm[learned_atac_key(key_added)] = out[LEARNED_ATAC_KEY]
    record = {"method": method, "job": "transfer", "mapped_with": str(os.path.abspath(model_dir)),
              "label_key": meta["label_key"], "classes": list(classes), "n_genes": len(saved.arrays["genes"]),
              "n_missing_genes": len(missing), "features": meta["features"], "seed": meta["seed"],
              **flag,
              "novelty_threshold_from": novelty_threshold if novelty_threshold in THRESHOLDS else "given",
              "lsi": lsi_info, "params": {**meta["record"]["params"], **notes}, "model_versions": meta["versions"],
              **provenance()}
    store_record(atac, key, record)
    atac.uns["omics_cl"]["transfer_method"] = key
    return record
