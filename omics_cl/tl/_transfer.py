"""RNA -> ATAC label transfer (``transfer_labels``) and its novelty flag."""
from __future__ import annotations

import dataclasses
import os

import anndata as ad
import numpy as np
import pandas as pd

from omics_cl import models
from omics_cl.checks import check_feature_count, check_key_added, check_positive_int, check_positive_number
from omics_cl.data import lsi
from omics_cl.data.counts import cells_without_counts, counts_matrix, nonempty_counts
from omics_cl.data.transfer import TransferInputs, transfer_features
from omics_cl.environment import provenance
from omics_cl.fallbacks import recorded
from omics_cl.get import TRANSFER_OBS_PREFIX
from omics_cl.pp import gene_activity as build_gene_activity
from omics_cl.tl._atac_latent import guided_config, learned_atac_latent
from omics_cl.tl._common import store_record, warn_cells_without_features
from omics_cl.tl._novelty import NOVELTY_RATE, check_novelty_rate, otsu_threshold, rate_threshold
from omics_cl.tl._saved import check_saveable, save_method_model

LEARNED_ATAC_KEY = "X_atac_latent"  # obsm key of the learned ATAC latent (learned_atac=True)
QUERY_LSI = "query_lsi"  # the query's LSI among a transfer's arrays, written to obsm["<method>_lsi"]
LSI_COMPONENTS = 20  # LSI components of the query's peaks (benchmarks/label_transfer.md)


def learned_atac_key(key_added: str | None) -> str:
    """obsm key of a transfer's learned ATAC latent: ``X_atac_latent``, or ``X_<key>_atac_latent`` under
    ``key_added``."""
    return LEARNED_ATAC_KEY if key_added is None else f"X_{key_added}_atac_latent"


def cells_without_features(n_genes: int, stacklevel: int = 3, **features) -> dict[str, int]:
    """``{"n_<name>_cells_without_features": count}`` of each named feature matrix's all-zero rows (cells with no
    count among the model's ``n_genes`` genes: the encoder sees one and the same input for all of them), with a
    warning when there are any."""
    counts = {name: cells_without_counts(x) for name, x in features.items()}
    return warn_cells_without_features(counts, f"the model's {n_genes} genes", "the encoder gives each of them the "
                                       "same latent, and the same label unless the query's peak classifier tells "
                                       "them apart", stacklevel=stacklevel)


@recorded
def transfer_labels(rna: ad.AnnData, atac: ad.AnnData, label_key: str, annotation=None,
                    gene_activity: ad.AnnData | None = None, rna_layer: str | None = None,
                    atac_layer: str | None = None, n_top_genes: int | None = 2000, features: str = "binary",
                    n_neighbors: int = 10, n_lsi_components: int = LSI_COMPONENTS, seed: int = 0,
                    progress: bool = True, method: str = "scncl",
                    save_model: str | os.PathLike | None = None, novelty_rate: float | None = NOVELTY_RATE,
                    learned_atac: bool | dict = False, tfidf_scale: float | None = None,
                    scale_lsi: bool = False, key_added: str | None = None, **model_params) -> dict:
    """Label transfer from a labelled RNA reference to an ATAC query with ``method`` (a registered transfer
    method; default scNCL, METHODS.md section 5).

    Gene activity comes from ``gene_activity`` (cells x genes AnnData, same cells as ``atac``) or is
    built from ``annotation``. The ATAC neighbourhood graph is a cosine kNN on LSI of the peaks
    (``n_lsi_components``; the query's peak-space embedding, which scncl's peak classifier also reads, with the
    peaks' TF-IDF at ``tfidf_scale``; its components standardised when ``scale_lsi``);
    ``learned_atac=True`` puts a learned ATAC latent beside the LSI (a peak-gene guided VAE of the reference's RNA
    counts and the query's peaks, linked through ``annotation``; no labels; :mod:`omics_cl.core.guided_vae`;
    a dict: :class:`~omics_cl.core.guided_vae.GuidedVAEConfig` values, e.g. ``{"epochs": 50}``).
    Writes into ``atac``: ``obs["omics_cl_label"]``, ``obs["omics_cl_confidence"]`` (the label's
    probability), ``obs["omics_cl_novelty"]`` (the method's novelty score, by default 1 - confidence;
    scncl: 1 - its classifier's max softmax averaged over the cell's query cluster, written to
    ``obs["omics_cl_query_cluster"]``; ``novelty_by="cell"`` keeps it per cell),
    ``obs["omics_cl_is_novel"]`` (the ``novelty_rate`` most novel cells: novelty above :func:`rate_threshold`,
    chosen without labels; with no unseen type in the query, ``novelty_rate`` is the share of false alarms, and
    the known cells' false-alarm rate is at most ``novelty_rate / (1 - unseen share)``); with ``learned_atac``
    ``obsm["X_atac_latent"]`` (the latent, standardised, clusterable with :func:`cluster_embedding`); scncl by
    default (``novelty_support``) also writes ``obs["omics_cl_label_support"]`` (how much the cell's own gene activity
    supports its label: its genes weighted by the reference's signature of that class; by default the label before
    the support weighting, ``support_rank_label``) and
    ``obs["omics_cl_confidence_novelty"]`` (the classifier's score above), and its novelty is a weighted mean of
    the quantile ranks of the two (high confidence novelty, low support; the support's weight is
    ``support_rank_weight``). ``novelty_rate=None`` calls cells novel by the rule before 2026-12-02: novelty (with
    label support: confidence novelty) above its Otsu threshold (:func:`otsu_threshold`), and with label support
    the cell's support below the query's median;
    ``obsm["X_<method>"]``, ``obsm["<method>_lsi"]`` (the query's LSI above, without the learned latent; where
    :func:`check_annotations` spreads its flags) and
    ``obsm["<method>_probabilities"]`` (cells x reference classes in the record's ``classes`` order; as a
    DataFrame: :func:`omics_cl.get.transfer_probabilities`); scncl with signatures also
    ``obsm["<method>_class_support"]`` (each cell's support for each class, standardised per class:
    :func:`omics_cl.get.transfer_class_support`); into ``rna``:
    ``obsm["X_<method>"]``; run record in both ``uns["omics_cl"]["<method>"]`` and the method's name in
    ``uns["omics_cl"]["transfer_method"]``. ``key_added``: write under that name instead (as scanpy's
    ``key_added``; a second transfer into the same query keeps the first's results): obs ``<key>_label``,
    ``<key>_confidence``, ..., obsm ``X_<key>``, ``<key>_probabilities``, ..., ``X_<key>_atac_latent``, the record
    ``uns["omics_cl"]["<key>"]``, and ``transfer_method`` holds the key (``omics_cl.get.transfer_column`` finds a
    transfer's columns). Extra keywords go to the method's config / training config. Reference
    cells without a label are left out of training and counted in the record; cells of either side with no count
    among the model's genes are kept (at the one latent an empty input gives), counted
    (``n_<side>_cells_without_features``) and warned about. ``save_model``: a new directory where the trained model
    is saved for :func:`map_query` (checked before any work).

    Parameters
    ----------
    rna
        Labelled RNA reference (cells x genes, raw counts).
    atac
        ATAC query (cells x peaks, raw counts).
    label_key
        Reference label column in ``rna.obs``.
    annotation
        Gene annotation (GTF / GFF3 / BED / TSV path or DataFrame) to build gene activity from.
    gene_activity
        Cells x genes gene-activity AnnData, same cells as ``atac``.
    rna_layer
        Layer of ``rna`` holding the raw counts (``None``: ``X``).
    atac_layer
        Layer of ``atac`` holding the raw counts (``None``: ``X``).
    n_top_genes
        Number of RNA HVGs among the shared genes (``None``: all).
    features
        ``"binary"`` or ``"lognorm"`` features for both modalities.
    n_neighbors
        Neighbours of the ATAC kNN graph on LSI.
    n_lsi_components
        LSI components of the query's peaks (20: measured in benchmarks/label_transfer.md; 50 before
        2026-12-05).
    seed
        Random seed.
    progress
        Show a training progress bar.
    method
        Registered transfer method.
    save_model
        New directory to save the trained model in (``None``: not saved).
    novelty_rate
        Share of the query flagged novel (``None``: the Otsu rule).
    learned_atac
        Join the LSI with the guided VAE's ATAC latent (needs ``annotation``).
    tfidf_scale
        Scale inside the peaks' ``log1p(TF * IDF * scale)`` (:func:`omics_cl.data.lsi.tfidf`). ``None`` (default
        since 2026-12-06) adapts it so that the median value is 10; ``1e4`` is Signac's fixed factor, the default
        before (measured in benchmarks/label_transfer.md).
    scale_lsi
        Standardise each LSI component (Signac's ``scale.embeddings``, the default before 2026-12-06's forty-third
        session); ``False`` keeps their singular values' weights in the kNN graph (measured in
        benchmarks/label_transfer.md).
    key_added
        Name to write the results under (``None``: ``omics_cl_*`` obs columns, the method's name elsewhere).
    **model_params
        Method config / training config values (e.g. ``epochs=50``).

    Returns
    -------
    dict
        The run record.
    """
    spec = models.get(method, "transfer")
    models.configure(spec, **model_params)  # a wrong parameter fails before any work
    check_novelty_rate(novelty_rate)
    check_key_added(key_added)
    check_positive_int(n_lsi_components, "n_lsi_components")
    check_positive_int(n_neighbors, "n_neighbors")
    check_feature_count(n_top_genes, "n_top_genes")
    if atac.n_obs <= max(n_neighbors, 2):
        raise ValueError(f"the ATAC query has {atac.n_obs} cells; label transfer needs at least 3 and more than "
                         f"n_neighbors ({n_neighbors}) for the query's LSI and neighbour graph: lower n_neighbors or "
                         "transfer to more cells (a saved model maps queries of 2 cells or more: save_model=..., "
                         "tl.map_query)")
    check_positive_number(tfidf_scale, "tfidf_scale", allow_none=True)
    if not isinstance(scale_lsi, bool):
        raise ValueError(f"scale_lsi must be True or False, got {scale_lsi!r}")
    latent_config = guided_config(learned_atac)
    if latent_config is not None and annotation is None:
        raise ValueError("learned_atac links peaks to genes through the gene annotation: give annotation")
    if save_model is not None:
        if spec.map_query is None:
            raise ValueError(f"{method} cannot map new queries, so its model cannot be saved")
        check_saveable(save_model, spec)
    if label_key not in rna.obs:
        raise ValueError(f"label column {label_key!r} not in the RNA reference's obs; columns: {list(rna.obs.columns)}")
    labels = rna.obs[label_key]
    labelled = labels.notna().to_numpy()
    classes = pd.Index(pd.unique(labels[labelled].astype(str)))
    if len(classes) < 2:
        raise ValueError(f"the reference has {len(classes)} class(es) in {label_key!r}; "
                         "label transfer needs at least 2")
    if gene_activity is None:
        gene_activity = build_gene_activity(atac, annotation, layer=atac_layer)
    elif not gene_activity.obs_names.equals(atac.obs_names):
        raise ValueError(f"gene_activity has {gene_activity.n_obs} cells, atac {atac.n_obs}, or another order; "
                         "they must be the same cells in the same order")
    rna_x, atac_x, genes, hvg_flavor = transfer_features(rna[labelled], gene_activity, rna_layer, n_top_genes,
                                                         features)
    empty = cells_without_features(len(genes), reference=rna_x, query=atac_x)
    peak_counts, _ = nonempty_counts(atac, atac_layer, "ATAC counts")
    embedding, lsi_info, peak_tfidf = lsi.lsi_with_tfidf(peak_counts, n_lsi_components, seed=seed,
                                                         tfidf_scale=tfidf_scale, standardize=scale_lsi)
    latent_record, latent_arrays, peak_space = None, {}, embedding
    if latent_config is not None:
        rna_counts = counts_matrix(rna[labelled], rna_layer)[:, rna.var_names.get_indexer(genes)]
        latent, latent_record, latent_arrays = learned_atac_latent(rna_counts, genes, atac, peak_counts, annotation,
                                                                   seed, progress, latent_config, tfidf_scale)
        peak_space = np.hstack([embedding, latent])
    neighbors = lsi.neighbors(peak_space, n_neighbors, seed)
    y = classes.get_indexer(labels[labelled].astype(str))
    trained = models.train_method(spec, TransferInputs(rna_x, y, atac_x, neighbors, len(classes), peak_space,
                                                       peak_tfidf),
                                  models.Context(seed), progress, **model_params)
    out = {**trained.arrays, QUERY_LSI: embedding}
    key = key_added or method
    flag = write_predictions(atac, key, classes, out, novelty_rate=novelty_rate,
                             obs_prefix=key_added or TRANSFER_OBS_PREFIX)
    if latent_config is not None:
        atac.obsm[learned_atac_key(key_added)] = latent
    rna_embedding = np.full((rna.n_obs, out["rna_embedding"].shape[1]), np.nan, dtype=np.float32)
    rna_embedding[labelled] = out["rna_embedding"]
    rna.obsm[f"X_{key}"] = rna_embedding
    record = {"method": method, "job": "transfer", "label_key": label_key, "classes": list(classes),
              "n_unlabelled_reference_cells": int((~labelled).sum()), **empty,
              "n_genes": len(genes), "hvg_flavor": hvg_flavor, "features": features, "n_neighbors": n_neighbors,
              "n_lsi_components": n_lsi_components, "seed": seed,
              **flag, "lsi": lsi_info, "learned_atac": latent_record, "params": trained.record, **provenance()}
    if save_model is not None:
        saved = {"genes": np.asarray(genes, dtype=str), "reference_embedding": out["rna_embedding"],
                 "reference_labels": y}
        if "class_signatures" in out:
            saved["class_signatures"] = out["class_signatures"]
        saved.update(latent_arrays)
        save_method_model(save_model, trained, saved,
                          classes=list(classes), label_key=label_key, features=features, seed=seed,
                          n_lsi_components=n_lsi_components, tfidf_scale=tfidf_scale, scale_lsi=scale_lsi,
                          record=record,
                          learned_atac=None if latent_config is None else dataclasses.asdict(latent_config))
    for target in (atac, rna):
        store_record(target, key, record)
        target.uns["omics_cl"]["transfer_method"] = key
    return record


def write_predictions(atac: ad.AnnData, key: str, classes: pd.Index, out: dict, threshold: float | None = None,
                      novelty_rate: float | None = NOVELTY_RATE, obs_prefix: str = TRANSFER_OBS_PREFIX) -> dict:
    """Write a transfer's query results (``out``: the method's arrays, with the query's LSI under ``"query_lsi"``)
    into ``atac``: the obs keys :func:`transfer_labels` documents under ``obs_prefix`` and its obsm keys under
    ``key``, and return the record entries of the flag (``novelty_threshold``, ``novelty_rule``: ``"rate"`` or
    ``"otsu"``, ``novelty_rate``) and ``obs_prefix``. ``<obs_prefix>_is_novel``:
    novelty above ``threshold`` (None: :func:`rate_threshold` at ``novelty_rate`` of this query's novelty). With
    ``novelty_rate=None`` the Otsu rule: when ``out`` has ``confidence_novelty`` and ``label_support`` the threshold
    (None: Otsu's) applies to the former and only cells whose support is below the query's median are called
    novel; otherwise to the novelty."""
    prob = out["probabilities"]
    confidence = prob.max(1)
    novelty = out.get("novelty", 1.0 - confidence)
    confidence_novelty = out.get("confidence_novelty", novelty)
    if novelty_rate is None:
        threshold = otsu_threshold(confidence_novelty) if threshold is None else threshold
        is_novel = confidence_novelty > threshold
        if "label_support" in out:
            is_novel &= out["label_support"] < np.median(out["label_support"])
    else:
        threshold = rate_threshold(novelty, novelty_rate) if threshold is None else threshold
        is_novel = novelty > threshold
    if "label_support" in out:
        atac.obs[f"{obs_prefix}_confidence_novelty"] = confidence_novelty
        atac.obs[f"{obs_prefix}_label_support"] = out["label_support"]
    if "query_clusters" in out:
        atac.obs[f"{obs_prefix}_query_cluster"] = pd.Categorical(out["query_clusters"].astype(str))
    atac.obs[f"{obs_prefix}_label"] = pd.Categorical(np.asarray(classes)[prob.argmax(1)], categories=classes)
    atac.obs[f"{obs_prefix}_confidence"] = confidence
    atac.obs[f"{obs_prefix}_novelty"] = novelty
    atac.obs[f"{obs_prefix}_is_novel"] = is_novel
    atac.obsm[f"X_{key}"] = out["atac_embedding"]
    atac.obsm[f"{key}_probabilities"] = np.asarray(prob)
    if QUERY_LSI in out:
        atac.obsm[f"{key}_lsi"] = np.asarray(out[QUERY_LSI], dtype=np.float32)
    if "class_support" in out:
        atac.obsm[f"{key}_class_support"] = np.asarray(out["class_support"], dtype=np.float32)
    return {"novelty_threshold": float(threshold), "novelty_rule": "otsu" if novelty_rate is None else "rate",
            "novelty_rate": novelty_rate, "obs_prefix": obs_prefix}
