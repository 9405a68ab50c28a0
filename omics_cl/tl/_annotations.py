"""Annotation checks: atlas labels that a label transfer contradicts more than the model's confusion explains."""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from omics_cl import get
from omics_cl.checks import check_atlas_labels
from omics_cl.core.neighbors import knn
from omics_cl.pp import gene_activity as build_gene_activity
from omics_cl.tl._annotation_rules import annotation_flags, confusion_groups, flagged_groups, neighbour_flags
from omics_cl.tl._common import check_result_key, marker_genes, store_record


def check_annotations(atac: ad.AnnData, atlas_key: str, gene_activity: ad.AnnData | None = None,
                      annotation=None, min_confidence: float | None = 0.0, min_enrichment: float = 4.0,
                      min_group_cells: int = 20, min_agreement: float = 0.35, skip_novel: bool = False,
                      propagate_neighbors: int = 15, n_markers: int = 5, layer: str | None = None,
                      method: str | None = None, min_probability_enrichment: float = 1.5,
                      min_support_position: float | None = 0.7, propagate_rep: str | None = None,
                      key_added: str | None = None) -> pd.DataFrame:
    """Find atlas labels that the transferred labels (from :func:`transfer_labels`) contradict more than the
    model's own confusion explains.

    ``method``: whose transfer to check, its method name or ``key_added`` (default: the latest one recorded by
    :func:`transfer_labels`; its columns by :func:`omics_cl.get.transfer_column`). Flags cells with
    :func:`annotation_flags` (with the transfer's probabilities, ``obsm["<method>_probabilities"]``, when present:
    ``min_probability_enrichment``; with each cell's class support by its own gene activity,
    ``obsm["<method>_class_support"]``, when present: ``min_support_position``; atlas labels the reference lacks are
    not checked; cells predicted novel only with ``skip_novel``: novelty is called per query cluster, and a
    relabelled type's cluster may look novel to the reference), spreads the flags over the ``propagate_neighbors``
    nearest cells in ``propagate_rep`` (default: the query's own LSI, ``obsm["<method>_lsi"]``, which transfers
    write since 2026-12-06; else the transfer's query embedding, ``obsm["X_<method>"]``; :func:`neighbour_flags`: a
    cell whose same-label neighbours are mostly flagged is flagged too, which reaches the cells of a relabelled type
    that the transfer put under the atlas label or among other types; 0: no spreading) and writes
    ``obs["omics_cl_annotation_flag"]`` (bool) and ``obs["omics_cl_suggested_label"]`` (the transferred label of
    flagged cells, their flagged neighbours' for cells flagged by spreading, else missing) and the record
    ``uns["omics_cl"]["check_annotations"]``; under ``key_added`` ``obs["<key>_annotation_flag"]``,
    ``obs["<key>_suggested_label"]`` and ``uns["omics_cl"]["<key>"]`` instead (a second check, e.g. of another
    transfer or at other thresholds, beside the first). Returns one row per
    (atlas label, transferred label) group of flagged cells, the group its confusion explains least first:
    ``n_cells``, ``expected``, ``estimated_precision`` and (with class support) ``support_position`` (label-free,
    see :func:`confusion_groups`), ``n_propagated`` (cells of the atlas label flagged with that suggested label by
    their neighbours), ``mean_confidence``, ``fraction_of_atlas_label`` and ``markers``, the ``n_markers`` genes
    whose gene activity (fraction of cells with any) is most higher in the group than in the cells of the same atlas
    label whose transfer agrees. Gene activity comes from ``gene_activity`` (same cells as ``atac``) or is built
    from ``annotation``; without either, markers are left empty.

    Parameters
    ----------
    atac
        ATAC query after :func:`transfer_labels`.
    atlas_key
        Atlas label column in ``atac.obs``.
    gene_activity
        Cells x genes gene-activity AnnData, same cells as ``atac``.
    annotation
        Gene annotation (GTF / GFF3 / BED / TSV path or DataFrame) to build gene activity from.
    min_confidence
        As in :func:`annotation_flags`.
    min_enrichment
        Times the explained count a group must reach (0: no group rule).
    min_group_cells
        Smallest group that can be flagged.
    min_agreement
        As in :func:`annotation_flags`.
    skip_novel
        Leave out cells predicted novel.
    propagate_neighbors
        Neighbours of each cell in ``propagate_rep`` that spread flags (0: none).
    propagate_rep
        ``obsm`` key of the embedding whose neighbours spread flags (``None``: ``"<method>_lsi"`` when present, else
        ``"X_<method>"``, the only choice before 2026-12-06).
    n_markers
        Marker genes per group.
    layer
        Layer of ``atac`` holding the raw counts, to build gene activity (``None``: ``X``).
    method
        Transfer to check: its method name or ``key_added`` (``None``: the recorded one).
    key_added
        Name to write the flags and record under (``None``: ``omics_cl_*`` columns, record ``check_annotations``).
    min_probability_enrichment
        Times the count the transfer's own probabilities explain (``obsm["<method>_probabilities"]``;
        ``expected_from_probabilities`` in :func:`confusion_groups`) a group must reach (0: no such rule; skipped
        when the probabilities are missing).
    min_support_position
        Smallest ``support_position`` of a group (:func:`confusion_groups`: where its cells' own gene activity,
        ``obsm["<method>_class_support"]``, places them between the atlas label's confirmed cells, 0, and the
        transferred label's, 1; groups it cannot place are kept; ``None``: no such rule; skipped when the
        transfer wrote no class support).

    Returns
    -------
    pandas.DataFrame
        One row per flagged group, as described above.
    """
    check_result_key(atac, key_added, "check_annotations")
    method = get.transfer_method(atac, method)
    label_column, confidence_column, novel_column = (get.transfer_column(atac, name, method)
                                                     for name in ("label", "confidence", "is_novel"))
    missing = [k for k in (label_column, confidence_column, novel_column) if k not in atac.obs]
    if missing:
        raise ValueError(f"atac.obs lacks {missing}; run omics_cl.tl.transfer_labels first")
    if atlas_key not in atac.obs:
        raise ValueError(f"atlas label column {atlas_key!r} not in obs; columns: {list(atac.obs.columns)}")
    if propagate_neighbors < 0:
        raise ValueError(f"propagate_neighbors must be >= 0, got {propagate_neighbors}")
    atlas = atac.obs[atlas_key]
    transferred = atac.obs[label_column].astype(str).to_numpy()
    confidence = atac.obs[confidence_column].to_numpy()
    classes = get.run_record(atac, method).get("classes")
    if classes is None:
        raise ValueError(f"atac.uns['omics_cl'][{method!r}] lacks the reference classes; run tl.transfer_labels first")
    check_atlas_labels(atlas, classes, f"obs[{atlas_key!r}]")
    novel = atac.obs[novel_column].to_numpy() if skip_novel else None
    probabilities = get.transfer_probabilities(atac, method) if f"{method}_probabilities" in atac.obsm else None
    support = get.transfer_class_support(atac, method)
    flags, threshold = annotation_flags(atlas, transferred, confidence, classes, novel, min_confidence,
                                        min_enrichment, min_group_cells, min_agreement, probabilities,
                                        min_probability_enrichment, support, min_support_position)
    direct = flags
    suggested = np.where(flags, transferred, None)
    if propagate_rep is None:
        propagate_rep = f"{method}_lsi" if f"{method}_lsi" in atac.obsm else f"X_{method}"
    if propagate_neighbors > 0 and flags.any():
        if propagate_rep not in atac.obsm:
            raise ValueError(f"obsm[{propagate_rep!r}] (where flags spread to neighbours) is missing; obsm has "
                             f"{list(atac.obsm.keys())}; pass propagate_neighbors=0 to check without it")
        neighbors, _ = knn(np.asarray(atac.obsm[propagate_rep]), propagate_neighbors + 1)
        flags, suggested = neighbour_flags(flags, atlas, suggested, neighbors[:, 1:],
                                           eligible=None if novel is None else ~np.asarray(novel, dtype=bool))
    if gene_activity is None and annotation is not None:
        gene_activity = build_gene_activity(atac, annotation, layer=layer)
    if gene_activity is not None and not gene_activity.obs_names.equals(atac.obs_names):
        raise ValueError("gene_activity must have the same cells as atac, in the same order")
    atlas_str = atlas.astype(str).to_numpy()
    agree = atlas.notna().to_numpy() & (atlas_str == transferred)
    candidates, _ = annotation_flags(atlas, transferred, confidence, classes, novel, threshold, 0.0, 0, 0.0)
    table = confusion_groups(atlas_str, transferred, candidates, probabilities, support)
    suggested_str = suggested.astype(str)
    table = flagged_groups(table, atlas_str, transferred, direct)
    extra = []
    for label, proposal in zip(table["atlas_label"], table["transferred_label"]):
        cells = np.flatnonzero(flags & (atlas_str == label) & (suggested_str == proposal))
        markers = []
        if gene_activity is not None:
            markers = marker_genes(gene_activity, cells, np.flatnonzero(agree & (atlas_str == label)), n_markers)
        extra.append({"n_propagated": int((~direct[cells]).sum()),
                      "mean_confidence": float(confidence[cells].mean()),
                      "fraction_of_atlas_label": len(cells) / int((atlas_str == label).sum()),
                      "markers": ", ".join(markers)})
    table = pd.concat([table.reset_index(drop=True), pd.DataFrame(extra, columns=[
        "n_propagated", "mean_confidence", "fraction_of_atlas_label", "markers"])], axis=1)
    order = np.argsort(-(table["n_cells"] - table["expected"]).to_numpy(), kind="stable")
    table = table.iloc[order].reset_index(drop=True)
    # each group's flagged cells (its own and the propagated ones) at the group's estimated precision
    excess = (table["estimated_precision"] * (table["n_cells"] + table["n_propagated"])).sum()
    prefix = key_added or "omics_cl"
    atac.obs[f"{prefix}_annotation_flag"] = flags
    atac.obs[f"{prefix}_suggested_label"] = pd.Categorical(suggested)
    store_record(atac, key_added or "check_annotations", {
        "job": "check_annotations", "method": method, "atlas_key": atlas_key, "min_confidence": threshold,
        "min_enrichment": min_enrichment, "min_group_cells": min_group_cells, "min_agreement": min_agreement,
        "min_probability_enrichment": min_probability_enrichment if probabilities is not None else None,
        "min_support_position": min_support_position if support is not None else None,
        "propagate_neighbors": propagate_neighbors, "propagate_rep": propagate_rep, "n_flagged": int(flags.sum()),
        "n_propagated": int((flags & ~direct).sum()), "n_groups": len(table),
        "estimated_precision": float(excess / flags.sum()) if flags.any() else None})
    return table
