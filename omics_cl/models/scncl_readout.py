"""scNCL's query-side classifier: fitted to the query's own confidently labelled cells, on its peak-space
embedding, gene activity and peaks (``omics_cl.models.scncl``'s ``peak_weight``)."""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from omics_cl.data.sparse_rows import hstack_rows

PREDICT_ROWS = 65536  # cells whose features are built at once for the classifier's probabilities
UNFITTED_RULES = ("transfer", "zero")  # what the classifier gives a class none of its training cells had


def peak_classifier(peaks: np.ndarray | None, prob: np.ndarray, min_vote: float,
                    activity: sp.spmatrix | np.ndarray | None = None,
                    peak_tfidf: sp.spmatrix | np.ndarray | None = None,
                    unfitted: str = "transfer") -> tuple[np.ndarray, int]:
    """Class probabilities from the query's own peak-space embedding (and, when given, its gene-activity features and
    ``peak_tfidf``, the TF-IDF of its peaks (``omics_cl.data.lsi.tfidf``), beside it): a logistic regression (L2,
    C=0.1, on the standardised components and the other features as they are) fitted to the query cells whose
    transferred probability is at least ``min_vote``, with their transferred labels. A class none of those cells has
    (small types rarely reach ``min_vote``: MOp's OPC and MGC never did) is one the classifier cannot speak for:
    ``unfitted="transfer"`` gives it the transferred probability and scales the fitted classes' to the rest of each
    cell's mass; ``"zero"`` gives it 0, which halved small types' probabilities in the mix
    (benchmarks/label_transfer.md). Returns the probabilities and the number of cells it was fitted to. Uses no
    query labels.
    Fitted and applied with one BLAS thread: lbfgs stops at a tolerance, and with two threads OpenBLAS's other
    rounding stopped it elsewhere (MOp: probabilities up to 0.06 apart, 4 of 5,155 labels changed), so the result
    would depend on the machine's thread count."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    if unfitted not in UNFITTED_RULES:
        raise ValueError(f"unfitted must be one of {UNFITTED_RULES}, got {unfitted!r}")
    if peaks is None:
        raise ValueError("peak_weight > 0 needs the query's peak-space embedding (TransferInputs.atac_peaks)")
    confident = prob.max(1) >= min_vote
    labels = prob.argmax(1)
    out = np.zeros_like(prob)
    if len(np.unique(labels[confident])) < 2:
        warnings.warn(f"fewer than 2 classes among query cells with probability >= {min_vote}; the peak-space "
                      "classifier is skipped (its share of the probabilities goes to the transfer)", stacklevel=3)
        return prob, 0
    parts = [StandardScaler().fit_transform(peaks)]
    if activity is not None:
        parts.append(sp.csr_matrix(activity))
    if peak_tfidf is not None:
        parts.append(sp.csr_matrix(peak_tfidf))

    if len(parts) == 1:  # the components alone: small and dense, predicted at once
        features, predict_rows = (lambda rows: parts[0][rows]), len(prob)
    else:  # the sparse features of all cells are never held at once
        features, predict_rows = (lambda rows: hstack_rows(parts, rows)), PREDICT_ROWS
    with threadpool_limits(limits=1, user_api="blas"):
        clf = LogisticRegression(C=0.1, max_iter=500).fit(features(np.flatnonzero(confident)), labels[confident])
        for start in range(0, len(prob), predict_rows):
            rows = np.arange(start, min(start + predict_rows, len(prob)))
            out[np.ix_(rows, clf.classes_)] = clf.predict_proba(features(rows))
    absent = np.setdiff1d(np.arange(prob.shape[1]), clf.classes_)
    if unfitted == "transfer" and absent.size:
        out[:, clf.classes_] *= prob[:, clf.classes_].sum(1, keepdims=True)
        out[:, absent] = prob[:, absent]
    return out.astype(prob.dtype), int(confident.sum())
