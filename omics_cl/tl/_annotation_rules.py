"""The rules of annotation checks: (atlas label, suggested label) groups, which of them the model's confusion
explains, and flags spread to neighbours."""
from __future__ import annotations

import numpy as np
import pandas as pd


def confusion_groups(atlas: np.ndarray, transferred: np.ndarray, candidates: np.ndarray,
                     probabilities: pd.DataFrame | None = None,
                     class_support: pd.DataFrame | None = None) -> pd.DataFrame:
    """(atlas label, transferred label) groups of the ``candidates`` cells, with the count the model's own
    confusion would explain.

    ``expected`` is the opposite group (atlas ``t`` -> transferred ``a``) scaled by ``max(1, n_a / n_t)``
    (atlas label sizes): a pair of types the model mixes up leaves disagreements both ways, a relabelled
    type only one way. With ``probabilities`` (the transfer's, cells x classes, columns named by class)
    ``expected_from_probabilities`` is the number of type-``a`` cells they put among all cells transferred
    as ``t`` (the sum of column ``a`` over those cells): a type the model over-predicts (the largest, usually)
    draws disagreements one way without any atlas error, and its probabilities show it.
    ``estimated_precision = max(0, 1 - the larger expected count / n_cells)``. With ``class_support`` (each cell's
    support for each class by its own gene activity, standardised per class: the transfer's
    ``obsm["<method>_class_support"]``), ``support_position`` places the group on the axis from the cells confirmed
    as ``a`` (atlas and transfer agree) to those confirmed as ``t``, measured by support for ``t`` minus support for
    ``a`` (group mean): 0 where the confirmed ``a`` cells sit, 1 where the confirmed ``t`` cells sit; missing when
    either has no confirmed cell or the confirmed ``t`` cells are not ahead. Uses no true labels.

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
    class_support
        Cells x classes support, columns named by class (``None``: no ``support_position``).

    Returns
    -------
    pandas.DataFrame
        Columns ``atlas_label``, ``transferred_label``, ``n_cells``, ``expected``, (with ``probabilities``)
        ``expected_from_probabilities``, ``estimated_precision``, (with ``class_support``) ``support_position``.
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
        row["estimated_precision"] = max(0.0, 1 - explained / n_cells)
        if class_support is not None:
            row["support_position"] = support_position(class_support, atlas, transferred, candidates, label,
                                                       suggested)
        rows.append(row)
    columns = ["atlas_label", "transferred_label", "n_cells", "expected",
               *(["expected_from_probabilities"] if probabilities is not None else []), "estimated_precision",
               *(["support_position"] if class_support is not None else [])]
    return pd.DataFrame(rows, columns=columns)


def flagged_groups(groups: pd.DataFrame, atlas: np.ndarray, transferred: np.ndarray, flags: np.ndarray) -> pd.DataFrame:
    """The rows of :func:`confusion_groups` whose (atlas, transferred) pair holds a flagged cell (none: an empty
    table with the same columns)."""
    flagged = set(zip(np.asarray(atlas)[flags], np.asarray(transferred)[flags]))
    return groups[np.fromiter((pair in flagged for pair in zip(groups["atlas_label"], groups["transferred_label"])),
                              bool, len(groups))]


def support_position(class_support: pd.DataFrame, atlas: np.ndarray, transferred: np.ndarray,
                     candidates: np.ndarray, label: str, suggested: str) -> float:
    """Where the (``label`` -> ``suggested``) group's candidate cells sit between the cells confirmed as ``label``
    (0) and those confirmed as ``suggested`` (1) by mean support for ``suggested`` minus support for ``label``
    (see :func:`confusion_groups`); NaN when it cannot be placed."""
    if label not in class_support.columns or suggested not in class_support.columns:
        return np.nan
    gain = class_support[suggested].to_numpy() - class_support[label].to_numpy()
    confirmed = atlas == transferred
    from_label, from_suggested = confirmed & (atlas == label), confirmed & (atlas == suggested)
    if not from_label.any() or not from_suggested.any():
        return np.nan
    start, end = gain[from_label].mean(), gain[from_suggested].mean()
    if end <= start:
        return np.nan
    return float((gain[candidates & (atlas == label) & (transferred == suggested)].mean() - start) / (end - start))


def annotation_flags(atlas_labels, transferred, confidence, reference_labels, novel=None,
                     min_confidence: float | None = 0.0, min_enrichment: float = 4.0,
                     min_group_cells: int = 20, min_agreement: float = 0.35,
                     probabilities: pd.DataFrame | None = None,
                     min_probability_enrichment: float = 1.5, class_support: pd.DataFrame | None = None,
                     min_support_position: float | None = 0.7) -> tuple[np.ndarray, float]:
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
    ``min_probability_enrichment`` times the count its probabilities explain (``expected_from_probabilities``)
    and, with ``class_support``, a ``support_position`` of at least ``min_support_position`` where it is defined:
    the group's own gene activity must look like the transferred label's confirmed cells more than like the atlas
    label's (two types the transfer confuses in the query, such as two interneuron types, leave a one-way group
    that the cells' genes place half way). Returns ``(flags, min_confidence)``.

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
    class_support
        Cells x classes support by each cell's gene activity, class-named columns (``None``: no support rule).
    min_support_position
        Smallest ``support_position`` (:func:`confusion_groups`) of a group (``None``: no support rule).

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
    if class_support is not None and len(class_support) != len(atlas):
        raise ValueError(f"class_support has {len(class_support)} rows for {len(atlas)} cells")
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
        groups = confusion_groups(atlas, transferred, flags, probabilities, class_support)
        kept = groups[(groups["n_cells"] >= min_group_cells) & (groups["n_cells"] >= min_enrichment * groups["expected"])]
        if probabilities is not None:
            kept = kept[kept["n_cells"] >= min_probability_enrichment * kept["expected_from_probabilities"]]
        if class_support is not None and min_support_position is not None:
            kept = kept[~(kept["support_position"] < min_support_position)]
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
