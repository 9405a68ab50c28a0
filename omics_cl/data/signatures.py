"""Reference class signatures in the shared gene space, and how well a query cell's own gene activity supports
the label it was given (a label-transfer novelty cue that does not come from the transfer model)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata


def class_signatures(rna_x, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Classes x genes: each class's mean feature value (the detection rate of binarised features) minus the
    mean of the other classes' means. Positive where the class expresses a gene more than the others do."""
    labels = np.asarray(labels)
    if labels.shape[0] != rna_x.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {rna_x.shape[0]} reference cells")
    present = np.bincount(labels, minlength=n_classes) > 0
    if not present.all() or n_classes < 2:
        raise ValueError(f"class signatures need at least 2 classes, each with a cell; classes without cells: "
                         f"{np.flatnonzero(~present).tolist()}")
    x = sp.csr_matrix(rna_x)
    means = np.vstack([np.asarray(x[labels == k].mean(0)).ravel() for k in range(n_classes)])
    others = (means.sum(0, keepdims=True) - means) / (n_classes - 1)
    return (means - others).astype(np.float32)


def class_support(atac_x, signatures: np.ndarray) -> np.ndarray:
    """Query cells x classes: the mean signature weight of each class over the cell's gene activity (the
    features weighted by their values, divided by their sum; 0 for a cell with no activity). High when the
    cell's open genes are the ones the class expresses more than the others."""
    x = sp.csr_matrix(atac_x)
    if x.shape[1] != signatures.shape[1]:
        raise ValueError(f"{x.shape[1]} query features for signatures over {signatures.shape[1]} genes")
    weighted = np.asarray(x @ signatures.T.astype(np.float64))
    return weighted / np.maximum(np.asarray(x.sum(1)), 1e-12)


def label_support(support: np.ndarray, assigned: np.ndarray) -> np.ndarray:
    """Each cell's support (a row of :func:`class_support`) for the class it was assigned."""
    return support[np.arange(len(support)), np.asarray(assigned)]


def standardised(scores: np.ndarray) -> np.ndarray:
    """Each column centred on its mean over the rows and divided by its standard deviation (0 where constant)."""
    spread = scores.std(0)
    return (scores - scores.mean(0)) / np.where(spread > 0, spread, 1.0)


def quantile_rank(scores: np.ndarray) -> np.ndarray:
    """Each score's rank among all (ties averaged) divided by their number: in (0, 1], 1 for the largest."""
    return rankdata(scores) / len(scores)


def ranked_novelty(confidence_novelty: np.ndarray, support: np.ndarray, support_weight: float) -> np.ndarray:
    """The quantile rank of ``confidence_novelty`` and that of the lack of ``support`` (each cell's support for its
    label), weighted ``1 - support_weight`` and ``support_weight``."""
    return (1 - support_weight) * quantile_rank(confidence_novelty) + support_weight * quantile_rank(-support)
