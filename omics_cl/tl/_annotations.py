"""Annotation checks: atlas labels that a label transfer contradicts more than the model's confusion explains."""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from omics_cl import get
from omics_cl.core import graph
from omics_cl.pp import gene_activity as build_gene_activity
from omics_cl.tl._common import marker_genes, store_record


def confusion_groups(atlas: np.ndarray, transferred: np.ndarray, candidates: np.ndarray,
                     probabilities: pd.DataFrame | None = None) -> pd.DataFrame:
    """(atlas label, transferred label) groups of the ``candidates`` cells, with the count the model's own
    confusion would explain.

    ``expected`` is the opposite group (atlas ``t`` -> transferred ``a``) scaled by ``max(1, n_a / n_t)``
    (atlas label sizes): a pair of types the model mixes up leaves disagreements both ways, a relabelled
    type only one way. With ``probabilities`` (the transfer's, cells x classes, columns named by class)
    ``expected_from_probabilities`` is the number of type-``a`` cells they put among all cells transferred
    as ``t`` (the sum of column ``a`` over those cells): a type the model over-predicts (the largest, usually)
    draws disagreements one way without any atlas error, and its probabilities show it.
    ``estimated_precision = max(0, 1 - the larger expected count / n_cells)``. Uses no true labels.

    Parameters
    ----------
    atlas
        Atlas label per cell.
    transferred
        Transferred label per cell.
    candidates
        Boolean mask of the candidate cells.
    probabilities
        The transfer's class probabilities of every cell (``None``: no ``expected_from_probabilities``).

    Returns
    -------
    pandas.DataFrame
        Columns ``atlas_label``, ``transferred_label``, ``n_cells``, ``expected``, (with ``probabilities``)
        ``expected_from_probabilities``, ``estimated_precision``.
    """
    atlas, transferred = np.asarray(atlas, dtype=str), np.asarray(transferred, dtype=str)
    counts = pd.crosstab(atlas[candidates], transferred[candidates])
    sizes = pd.Series(atlas).value_counts()
    rows = []
    for (label, suggested), n_cells in counts.stack().items():
        if n_cells == 0:
            continue
        opposite = counts.at[suggested, label] if suggested in counts.index and label in counts.columns else 0
        row = {"atlas_label": label, "transferred_label": suggested, "n_cells": int(n_cells),
               "expected": float(opposite * max(1.0, sizes.get(label, 0) / max(sizes.get(suggested, 0), 1)))}
        if probabilities is not None:
            column = probabilities[label].to_numpy() if label in probabilities.columns else np.zeros(len(atlas))
            row["expected_from_probabilities"] = float(column[transferred == suggested].sum())
        explained = max(row["expected"], row.get("expected_from_probabilities", 0.0))
        rows.append({**row, "estimated_precision": max(0.0, 1 - explained / n_cells)})
    columns = ["atlas_label", "transferred_label", "n_cells", "expected",
               *(["expected_from_probabilities"] if probabilities is not None else []), "estimated_precision"]
    return pd.DataFrame(rows, columns=columns)


def annotation_flags(atlas_labels, transferred, confidence, reference_labels, novel=None,
                     min_confidence: float | None = 0.0, min_enrichment: float = 4.0,
                     min_group_cells: int = 20, min_agreement: float = 0.35,
                     probabilities: pd.DataFrame | None = None,
                     min_probability_enrichment: float = 1.5) -> tuple[np.ndarray, float]:
    """Cells whose transferred label disagrees with their atlas label more than the model's confusion explains.

    Candidates: the transferred label differs from the atlas label, the cell is not predicted novel, and
    its confidence is at least ``min_confidence`` (``None``: the median confidence of the cells whose
    transfer agrees with the atlas; the default 0 keeps every disagreement: on the benchmark the group
    rule below decides better than confidence). Cells without an atlas label, or with one the
    reference lacks (``reference_labels``), are never flagged, nor are cells of an atlas label whose cells
    the transfer confirms less often than ``min_agreement`` (a type the model cannot recognise in the
    query). A candidate is flagged when its (atlas, transferred) group has at least ``min_group_cells``
    cells and ``min_enrichment`` times the count the model's confusion explains (:func:`confusion_groups`;
    ``min_enrichment=0`` and ``min_agreement=0`` flag every candidate) and, with ``probabilities``,
    ``min_probability_enrichment`` times the count its probabilities explain (``expected_from_probabilities``).
    Returns ``(flags, min_confidence)``.

    Parameters
    ----------
    atlas_labels
        Atlas label per cell (missing: unlabelled).
    transferred
        Transferred label per cell.
    confidence
        Confidence of the transferred label per cell.
    reference_labels
        Labels the reference has.
    novel
        Boolean mask of cells predicted novel (``None``: none).
    min_confidence
        Smallest confidence of a candidate (``None``: see above).
    min_enrichment
        Times the explained count a group must reach (0: no group rule, and no probability rule).
    min_group_cells
        Smallest group that can be flagged.
    min_agreement
        Smallest share of an atlas label's cells the transfer must confirm.
    probabilities
        The transfer's class probabilities, cells x classes with class-named columns (``None``: no
        probability rule).
    min_probability_enrichment
        Times ``expected_from_probabilities`` a group must reach (0: no probability rule).

    Returns
    -------
    tuple[numpy.ndarray, float]
        Boolean flag per cell and the confidence threshold used.
    """
    atlas = pd.Series(np.asarray(atlas_labels, dtype=object))
    transferred = np.asarray(transferred, dtype=object).astype(str)
    confidence = np.asarray(confidence, dtype=float)
    if probabilities is not None and len(probabilities) != len(atlas):
        raise ValueError(f"probabilities has {len(probabilities)} rows for {len(atlas)} cells")
    if min_probability_enrichment < 0:
        raise ValueError(f"min_probability_enrichment must be >= 0, got {min_probability_enrichment}")
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
    if min_agreement > 0:
        rate = pd.Series(agree[has_label]).groupby(atlas[has_label]).mean()
        flags &= np.isin(atlas, rate.index[rate >= min_agreement])
    if min_enrichment > 0 and flags.any():
        groups = confusion_groups(atlas, transferred, flags, probabilities)
        kept = groups[(groups["n_cells"] >= min_group_cells) & (groups["n_cells"] >= min_enrichment * groups["expected"])]
        if probabilities is not None:
            kept = kept[kept["n_cells"] >= min_probability_enrichment * kept["expected_from_probabilities"]]
        pairs = set(zip(kept["atlas_label"], kept["transferred_label"]))
        flags &= np.fromiter(((a, t) in pairs for a, t in zip(atlas, transferred)), bool, len(atlas))
    return flags, float(min_confidence)


def neighbour_flags(flags, atlas_labels, suggested, neighbors, min_share: float = 0.5,
                    eligible=None) -> tuple[np.ndarray, np.ndarray]:
    """Spread annotation flags to the cells whose neighbourhood flags their atlas label.

    An unflagged cell is flagged when at least ``min_share`` of its neighbours that carry the same atlas label
    are flagged; its suggested label is the most common one among those flagged neighbours. This reaches the
    cells of a relabelled type that the transfer itself put under the wrong (atlas) label. Uses no true labels.

    Parameters
    ----------
    flags
        Boolean flag per cell (e.g. from :func:`annotation_flags`).
    atlas_labels
        Atlas label per cell (missing: unlabelled, never flagged).
    suggested
        Suggested label per cell (read where ``flags``).
    neighbors
        Cells x k indices of each cell's nearest other cells.
    min_share
        Smallest share of flagged same-label neighbours.
    eligible
        Boolean mask of the cells that may be flagged (``None``: every labelled cell).

    Returns
    -------
    tuple[numpy.ndarray, numpy.ndarray]
        The flags with the spread ones added, and the suggested label per cell (``None`` where unflagged).
    """
    if not 0 < min_share <= 1:
        raise ValueError(f"min_share must be in (0, 1], got {min_share}")
    flags = np.asarray(flags, dtype=bool)
    atlas = pd.Series(np.asarray(atlas_labels, dtype=object))
    labelled = atlas.notna().to_numpy()
    atlas = atlas.astype(str).to_numpy()
    neighbors = np.asarray(neighbors)
    if neighbors.ndim != 2 or neighbors.shape[0] != len(flags):
        raise ValueError(f"neighbors must be cells x k indices for {len(flags)} cells, got shape {neighbors.shape}")
    suggested = np.where(flags, np.asarray(suggested, dtype=object), None)
    same = (atlas[neighbors] == atlas[:, None]) & labelled[neighbors]
    flagged_same = same & flags[neighbors]
    share = flagged_same.sum(1) / np.maximum(same.sum(1), 1)
    spread = labelled & ~flags & (share >= min_share) & flagged_same.any(1)
    if eligible is not None:
        spread &= np.asarray(eligible, dtype=bool)
    for cell in np.flatnonzero(spread):
        values, counts = np.unique(suggested[neighbors[cell][flagged_same[cell]]].astype(str), return_counts=True)
        suggested[cell] = values[counts.argmax()]
    return flags | spread, suggested


def check_annotations(atac: ad.AnnData, atlas_key: str, gene_activity: ad.AnnData | None = None,
                      annotation=None, min_confidence: float | None = 0.0, min_enrichment: float = 4.0,
                      min_group_cells: int = 20, min_agreement: float = 0.35, skip_novel: bool = False,
                      propagate_neighbors: int = 15, n_markers: int = 5, layer: str | None = None,
                      method: str | None = None, min_probability_enrichment: float = 1.5) -> pd.DataFrame:
    """Find atlas labels that the transferred labels (from :func:`transfer_labels`) contradict more than the
    model's own confusion explains.

    ``method``: whose transfer to check (default: the one recorded by :func:`transfer_labels`).
    Flags cells with :func:`annotation_flags` (with the transfer's probabilities, ``obsm["<method>_probabilities"]``,
    when present: ``min_probability_enrichment``; atlas labels the reference lacks are not checked; cells
    predicted novel only with ``skip_novel``: novelty is called per query cluster, and a relabelled type's
    cluster may look novel to the reference), spreads the flags over the ``propagate_neighbors`` nearest cells
    in the transfer's query embedding (``obsm["X_<method>"]``; :func:`neighbour_flags`: a cell whose
    same-label neighbours are mostly flagged is flagged too, which reaches the cells of a relabelled type that
    the transfer put under the atlas label; 0: no spreading) and
    writes ``obs["omics_cl_annotation_flag"]`` (bool) and ``obs["omics_cl_suggested_label"]`` (the
    transferred label of flagged cells, their flagged neighbours' for cells flagged by spreading, else missing).
    Returns one row per (atlas label, transferred label) group of flagged cells, the group its confusion
    explains least first: ``n_cells``, ``expected`` and ``estimated_precision`` (label-free, see
    :func:`confusion_groups`), ``n_propagated`` (cells of the atlas label flagged with that suggested label by
    their neighbours), ``mean_confidence``, ``fraction_of_atlas_label`` and ``markers``, the
    ``n_markers`` genes whose gene activity (fraction of cells with any) is most higher in the group than in
    the cells of the same atlas label whose transfer agrees. Gene activity comes from ``gene_activity``
    (same cells as ``atac``) or is built from ``annotation``; without either, markers are left empty.

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
        Neighbours of each cell in the query embedding that spread flags (0: none).
    n_markers
        Marker genes per group.
    layer
        Layer of ``atac`` holding the raw counts, to build gene activity (``None``: ``X``).
    method
        Transfer method to check (``None``: the recorded one).
    min_probability_enrichment
        Times the count the transfer's own probabilities explain (``obsm["<method>_probabilities"]``;
        ``expected_from_probabilities`` in :func:`confusion_groups`) a group must reach (0: no such rule; skipped
        when the probabilities are missing).

    Returns
    -------
    pandas.DataFrame
        One row per flagged group, as described above.
    """
    missing = [k for k in ("omics_cl_label", "omics_cl_confidence", "omics_cl_is_novel") if k not in atac.obs]
    if missing:
        raise ValueError(f"atac.obs lacks {missing}; run omics_cl.tl.transfer_labels first")
    if atlas_key not in atac.obs:
        raise ValueError(f"atlas label column {atlas_key!r} not in obs; columns: {list(atac.obs.columns)}")
    if propagate_neighbors < 0:
        raise ValueError(f"propagate_neighbors must be >= 0, got {propagate_neighbors}")
    atlas = atac.obs[atlas_key]
    transferred = atac.obs["omics_cl_label"].astype(str).to_numpy()
    confidence = atac.obs["omics_cl_confidence"].to_numpy()
    method = get.transfer_method(atac, method)
    classes = get.run_record(atac, method).get("classes")
    if classes is None:
        raise ValueError(f"atac.uns['omics_cl'][{method!r}] lacks the reference classes; run tl.transfer_labels first")
    novel = atac.obs["omics_cl_is_novel"].to_numpy() if skip_novel else None
    probabilities = get.transfer_probabilities(atac, method) if f"{method}_probabilities" in atac.obsm else None
    flags, threshold = annotation_flags(atlas, transferred, confidence, classes, novel, min_confidence,
                                        min_enrichment, min_group_cells, min_agreement, probabilities,
                                        min_probability_enrichment)
    direct = flags
    suggested = np.where(flags, transferred, None)
    if propagate_neighbors > 0 and flags.any():
        embedding = atac.obsm.get(f"X_{method}")
        if embedding is None:
            raise ValueError(f"obsm['X_{method}'] (the transfer's query embedding) is missing; pass "
                             "propagate_neighbors=0 to check without it")
        neighbors, _ = graph.knn(np.asarray(embedding), propagate_neighbors + 1)
        flags, suggested = neighbour_flags(flags, atlas, suggested, neighbors[:, 1:],
                                           eligible=None if novel is None else ~np.asarray(novel, dtype=bool))
    if gene_activity is None and annotation is not None:
        gene_activity = build_gene_activity(atac, annotation, layer=layer)
    if gene_activity is not None and not gene_activity.obs_names.equals(atac.obs_names):
        raise ValueError("gene_activity must have the same cells as atac, in the same order")
    atlas_str = atlas.astype(str).to_numpy()
    agree = atlas.notna().to_numpy() & (atlas_str == transferred)
    candidates, _ = annotation_flags(atlas, transferred, confidence, classes, novel, threshold, 0.0, 0, 0.0)
    table = confusion_groups(atlas_str, transferred, candidates, probabilities)
    suggested_str = suggested.astype(str)
    flagged_pairs = set(zip(atlas_str[direct], transferred[direct]))
    table = table[[pair in flagged_pairs for pair in zip(table["atlas_label"], table["transferred_label"])]]
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
    atac.obs["omics_cl_annotation_flag"] = flags
    atac.obs["omics_cl_suggested_label"] = pd.Categorical(suggested)
    store_record(atac, "check_annotations", {
        "method": method, "atlas_key": atlas_key, "min_confidence": threshold, "min_enrichment": min_enrichment,
        "min_group_cells": min_group_cells, "min_agreement": min_agreement,
        "min_probability_enrichment": min_probability_enrichment if probabilities is not None else None,
        "propagate_neighbors": propagate_neighbors, "n_flagged": int(flags.sum()),
        "n_propagated": int((flags & ~direct).sum()), "n_groups": len(table),
        "estimated_precision": float(excess / flags.sum()) if flags.any() else None})
    return table
