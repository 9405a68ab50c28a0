"""Clustering and classification metrics on label vectors (plain numpy / scikit-learn)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as skm


def _codes(labels) -> np.ndarray:
    return pd.factorize(np.asarray(labels, dtype=object))[0]


def contingency(true, pred) -> np.ndarray:
    """Counts of (predicted cluster, true class) pairs: clusters x classes."""
    t, p = _codes(true), _codes(pred)
    table = np.zeros((p.max() + 1, t.max() + 1), dtype=np.int64)
    np.add.at(table, (p, t), 1)
    return table


def nmi(true, pred) -> float:
    return float(skm.normalized_mutual_info_score(_codes(true), _codes(pred), average_method="arithmetic"))


def ari(true, pred) -> float:
    return float(skm.adjusted_rand_score(_codes(true), _codes(pred)))


def acc(true, pred) -> float:
    """Clustering accuracy: one-to-one Hungarian matching of clusters to classes on the rectangular
    contingency table; cells of unmatched clusters (or classes) count as errors."""
    table = contingency(true, pred)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / table.sum())


def macro_f1(true, pred) -> float:
    """Macro-averaged F1 over the true classes (predictions outside them are errors)."""
    true = np.asarray(true, dtype=object)
    pred = np.asarray(pred, dtype=object)
    return float(skm.f1_score(true, pred, labels=pd.unique(true), average="macro", zero_division=0))


def labelled_mask(labels, exclude=()) -> np.ndarray:
    """Cells with a usable label: not missing and not one of ``exclude`` (e.g. ``Mis``)."""
    s = pd.Series(np.asarray(labels, dtype=object))
    return np.asarray(s.notna() & ~s.isin(list(exclude)))


def clustering_scores(true, pred, exclude=()) -> dict[str, float]:
    """NMI, ARI and ACC on the cells with a usable label."""
    mask = labelled_mask(true, exclude)
    if not mask.any():
        raise ValueError("no cell has a usable label to score against")
    t, p = np.asarray(true, dtype=object)[mask], np.asarray(pred, dtype=object)[mask]
    return {"nmi": nmi(t, p), "ari": ari(t, p), "acc": acc(t, p)}


def auroc(is_novel, novelty) -> float:
    """Area under the ROC curve of the novelty score, novel cells positive."""
    return float(skm.roc_auc_score(np.asarray(is_novel, dtype=bool), np.asarray(novelty, dtype=float)))


def aupr(is_novel, novelty) -> float:
    """Average precision of the novelty score, novel cells positive."""
    return float(skm.average_precision_score(np.asarray(is_novel, dtype=bool), np.asarray(novelty, dtype=float)))


def oscr(is_novel, correct, confidence) -> float:
    """Open-set classification rate: area under correct-classification rate (known cells labelled correctly
    with confidence above the threshold / all known) against false-positive rate (novel cells above the
    threshold / all novel), sweeping the threshold; the curve runs from (0, 0) to (1, 1)."""
    is_novel = np.asarray(is_novel, dtype=bool)
    correct = np.asarray(correct, dtype=bool) & ~is_novel
    confidence = np.asarray(confidence, dtype=float)
    n_known, n_novel = int((~is_novel).sum()), int(is_novel.sum())
    if n_known == 0 or n_novel == 0:
        raise ValueError(f"OSCR needs both known and novel cells, got {n_known} known and {n_novel} novel")
    order = np.argsort(-confidence, kind="stable")
    conf = confidence[order]
    last_of_tie = np.r_[conf[1:] != conf[:-1], True]  # thresholds between distinct confidence values
    ccr = np.cumsum(correct[order])[last_of_tie] / n_known
    fpr = np.cumsum(is_novel[order])[last_of_tie] / n_novel
    x = np.r_[0.0, fpr, 1.0]
    y = np.r_[0.0, ccr, 1.0]
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def _partner_ranks(za: np.ndarray, zb: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """For each row i of ``za``: how many rows of ``zb`` are closer (Euclidean) to it than ``zb[i]``."""
    za, zb = np.asarray(za, dtype=np.float64), np.asarray(zb, dtype=np.float64)
    if za.shape != zb.shape:
        raise ValueError(f"paired embeddings must have the same shape, got {za.shape} and {zb.shape}")
    sq_b = (zb**2).sum(1)
    ranks = np.empty(len(za), dtype=np.int64)
    for s in range(0, len(za), chunk):
        a = za[s:s + chunk]
        d = sq_b[None, :] - 2 * a @ zb.T  # squared distance up to the row constant |a|^2
        own = d[np.arange(len(a)), np.arange(s, s + len(a))]
        ranks[s:s + len(a)] = (d < own[:, None]).sum(1)
    return ranks


def foscttm(za: np.ndarray, zb: np.ndarray) -> float:
    """Fraction of samples closer than the true match (row i of ``za`` pairs with row i of ``zb``),
    averaged over both directions; 0 is perfect, 0.5 is random."""
    n = len(za)
    if n < 2:
        raise ValueError("FOSCTTM needs at least 2 paired cells")
    return float((_partner_ranks(za, zb).mean() + _partner_ranks(zb, za).mean()) / (2 * (n - 1)))


def top1_match(za: np.ndarray, zb: np.ndarray) -> float:
    """Share of cells whose nearest cell in the other modality's embedding is their own pair,
    averaged over both directions."""
    return float(((_partner_ranks(za, zb) == 0).mean() + (_partner_ranks(zb, za) == 0).mean()) / 2)
