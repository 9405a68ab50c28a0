"""RNA -> ATAC label transfer (``transfer_labels``), its novelty threshold, and annotation checks."""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from omics_cl import get, models
from omics_cl.data import lsi
from omics_cl.data.preprocess import validated_counts
from omics_cl.data.transfer import TransferInputs, transfer_features
from omics_cl.pp import gene_activity as build_gene_activity
from omics_cl.tl._common import marker_genes, store_record, versions


def otsu_threshold(scores: np.ndarray, bins: int = 256) -> float:
    """Label-free split of a score distribution: the cut maximising between-class variance (Otsu);
    where the maximum is a plateau (an empty gap between modes), its middle."""
    hist, edges = np.histogram(scores, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centres) - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    first = int(np.argmax(between))
    last = first
    while last + 1 < len(between) and between[last + 1] >= between[first] * (1 - 1e-9):
        last += 1
    return float((edges[first + 1] + edges[last + 1]) / 2)


def transfer_labels(rna: ad.AnnData, atac: ad.AnnData, label_key: str, annotation=None,
                    gene_activity: ad.AnnData | None = None, rna_layer: str | None = None,
                    atac_layer: str | None = None, n_top_genes: int | None = 2000, features: str = "binary",
                    n_neighbors: int = 10, seed: int = 0, progress: bool = True, method: str = "scncl",
                    **model_params) -> dict:
    """Label transfer from a labelled RNA reference to an ATAC query with ``method`` (a registered transfer
    method; default scNCL, METHODS.md section 5).

    Gene activity comes from ``gene_activity`` (cells x genes AnnData, same cells as ``atac``) or is
    built from ``annotation``. The ATAC neighbourhood graph is a cosine kNN on LSI of the peaks.
    Writes into ``atac``: ``obs["omics_cl_label"]``, ``obs["omics_cl_confidence"]`` (max softmax),
    ``obs["omics_cl_novelty"]`` (1 - confidence), ``obs["omics_cl_is_novel"]`` (novelty above an Otsu
    threshold of the novelty distribution, chosen without labels), ``obsm["X_<method>"]``; into ``rna``:
    ``obsm["X_<method>"]``; run record in both ``uns["omics_cl"]["<method>"]`` and the method's name in
    ``uns["omics_cl"]["transfer_method"]``. Extra keywords go to the method's config / training config. Reference cells without a label
    are left out of training and counted in the record.
    """
    spec = models.get(method, "transfer")
    models.configure(spec, **model_params)  # a wrong parameter fails before any work
    if label_key not in rna.obs:
        raise ValueError(f"label column {label_key!r} not in the RNA reference's obs; columns: {list(rna.obs.columns)}")
    labels = rna.obs[label_key]
    labelled = labels.notna().to_numpy()
    classes = pd.Index(pd.unique(labels[labelled].astype(str)))
    if len(classes) < 2:
        raise ValueError(f"the reference has {len(classes)} class(es) in {label_key!r}; label transfer needs at least 2")
    if gene_activity is None:
        gene_activity = build_gene_activity(atac, annotation, layer=atac_layer)
    elif not gene_activity.obs_names.equals(atac.obs_names):
        raise ValueError(f"gene_activity has {gene_activity.n_obs} cells, atac {atac.n_obs}, or another order; "
                         "they must be the same cells in the same order")
    rna_x, atac_x, genes = transfer_features(rna[labelled], gene_activity, rna_layer, n_top_genes, features)
    embedding, lsi_info = lsi.lsi(validated_counts(atac, atac_layer, "ATAC counts"), seed=seed)
    neighbors = lsi.neighbors(embedding, n_neighbors, seed)
    y = classes.get_indexer(labels[labelled].astype(str))
    out, info = models.run(spec, TransferInputs(rna_x, y, atac_x, neighbors, len(classes)), models.Context(seed),
                           progress, **model_params)
    prob = out["probabilities"]
    confidence = prob.max(1)
    novelty = 1.0 - confidence
    threshold = otsu_threshold(novelty)

    atac.obs["omics_cl_label"] = pd.Categorical(np.asarray(classes)[prob.argmax(1)], categories=classes)
    atac.obs["omics_cl_confidence"] = confidence
    atac.obs["omics_cl_novelty"] = novelty
    atac.obs["omics_cl_is_novel"] = novelty > threshold
    atac.obsm[f"X_{method}"] = out["atac_embedding"]
    rna_embedding = np.full((rna.n_obs, out["rna_embedding"].shape[1]), np.nan, dtype=np.float32)
    rna_embedding[labelled] = out["rna_embedding"]
    rna.obsm[f"X_{method}"] = rna_embedding
    record = {"method": method, "job": "transfer", "label_key": label_key, "classes": list(classes), "n_unlabelled_reference_cells": int((~labelled).sum()),
              "n_genes": len(genes), "features": features, "n_neighbors": n_neighbors, "seed": seed,
              "novelty_threshold": threshold, "lsi": lsi_info, "params": info, "versions": versions()}
    for target in (atac, rna):
        store_record(target, method, record)
        target.uns["omics_cl"]["transfer_method"] = method
    return record


def annotation_flags(atlas_labels, transferred, confidence, reference_labels, novel=None,
                     min_confidence: float | None = None) -> tuple[np.ndarray, float]:
    """Cells whose transferred label confidently disagrees with their atlas label.

    A cell is flagged when its transferred label differs from its atlas label, it is not predicted
    novel, and its confidence is at least ``min_confidence``. The default threshold is the median
    confidence of the cells whose transfer agrees with the atlas: a disagreement is flagged only when
    the model is as sure of it as it typically is when it agrees. Cells without an atlas label, or
    with one the reference lacks (``reference_labels``: the transfer cannot confirm it), are never
    flagged. Returns ``(flags, threshold)``.
    """
    atlas = pd.Series(np.asarray(atlas_labels, dtype=object))
    transferred = np.asarray(transferred, dtype=object)
    confidence = np.asarray(confidence, dtype=float)
    has_label = atlas.notna().to_numpy()
    atlas = atlas.astype(str).to_numpy()
    has_label &= np.isin(atlas, np.asarray(list(reference_labels), dtype=str))
    agree = has_label & (atlas == transferred)
    if min_confidence is None:
        if not agree.any():
            raise ValueError("no cell's transferred label agrees with its atlas label; give min_confidence explicitly "
                             "(do the two use the same label names?)")
        min_confidence = float(np.median(confidence[agree]))
    flags = has_label & (atlas != transferred) & (confidence >= min_confidence)
    if novel is not None:
        flags &= ~np.asarray(novel, dtype=bool)
    return flags, float(min_confidence)


def check_annotations(atac: ad.AnnData, atlas_key: str, gene_activity: ad.AnnData | None = None,
                      annotation=None, min_confidence: float | None = None, n_markers: int = 5,
                      layer: str | None = None, method: str | None = None) -> pd.DataFrame:
    """Find atlas labels that the transferred labels (from :func:`transfer_labels`) confidently contradict.

    ``method``: whose transfer to check (default: the one recorded by :func:`transfer_labels`).
    Flags cells with :func:`annotation_flags` (atlas labels the reference lacks are not checked) and
    writes ``obs["omics_cl_annotation_flag"]`` (bool) and ``obs["omics_cl_suggested_label"]`` (the
    transferred label of flagged cells, else missing).
    Returns one row per (atlas label, transferred label) group of flagged cells, largest first:
    ``n_cells``, ``mean_confidence``, ``fraction_of_atlas_label`` and ``markers``, the ``n_markers``
    genes whose gene activity (fraction of cells with any) is most higher in the group than in the cells
    of the same atlas label whose transfer agrees. Gene activity comes from ``gene_activity`` (same
    cells as ``atac``) or is built from ``annotation``; without either, markers are left empty.
    """
    missing = [k for k in ("omics_cl_label", "omics_cl_confidence", "omics_cl_is_novel") if k not in atac.obs]
    if missing:
        raise ValueError(f"atac.obs lacks {missing}; run omics_cl.tl.transfer_labels first")
    if atlas_key not in atac.obs:
        raise ValueError(f"atlas label column {atlas_key!r} not in obs; columns: {list(atac.obs.columns)}")
    atlas = atac.obs[atlas_key]
    transferred = atac.obs["omics_cl_label"].astype(str).to_numpy()
    confidence = atac.obs["omics_cl_confidence"].to_numpy()
    method = get.transfer_method(atac, method)
    classes = get.run_record(atac, method).get("classes")
    if classes is None:
        raise ValueError(f"atac.uns['omics_cl'][{method!r}] lacks the reference classes; run tl.transfer_labels first")
    flags, threshold = annotation_flags(atlas, transferred, confidence, classes,
                                        atac.obs["omics_cl_is_novel"].to_numpy(), min_confidence)
    if gene_activity is None and annotation is not None:
        gene_activity = build_gene_activity(atac, annotation, layer=layer)
    if gene_activity is not None and not gene_activity.obs_names.equals(atac.obs_names):
        raise ValueError("gene_activity must have the same cells as atac, in the same order")
    atlas_str = atlas.astype(str).to_numpy()
    agree = atlas.notna().to_numpy() & (atlas_str == transferred)
    rows = []
    for (label, suggested), cells in pd.DataFrame({"a": atlas_str[flags], "t": transferred[flags]},
                                                  index=np.flatnonzero(flags)).groupby(["a", "t"]).groups.items():
        cells = np.asarray(cells)
        markers = []
        if gene_activity is not None:
            markers = marker_genes(gene_activity, cells, np.flatnonzero(agree & (atlas_str == label)), n_markers)
        rows.append({"atlas_label": label, "transferred_label": suggested, "n_cells": len(cells),
                     "mean_confidence": float(confidence[cells].mean()),
                     "fraction_of_atlas_label": len(cells) / int((atlas_str == label).sum()),
                     "markers": ", ".join(markers)})
    table = pd.DataFrame(rows, columns=["atlas_label", "transferred_label", "n_cells", "mean_confidence",
                                        "fraction_of_atlas_label", "markers"])
    table = table.sort_values(["n_cells", "mean_confidence"], ascending=False, ignore_index=True)
    atac.obs["omics_cl_annotation_flag"] = flags
    atac.obs["omics_cl_suggested_label"] = pd.Categorical(np.where(flags, transferred, None))
    store_record(atac, "check_annotations", {"method": method, "atlas_key": atlas_key, "min_confidence": threshold,
                                        "n_flagged": int(flags.sum()), "n_groups": len(table)})
    return table
