import numpy as np
import pytest
from sklearn.metrics import auc

from omics_cl import metrics


def brute_force_oscr(is_novel, correct, confidence):
    known = ~is_novel
    points = [(0.0, 0.0), (1.0, 1.0)]
    for t in np.unique(confidence):
        above = confidence >= t
        points.append(((above & is_novel).sum() / is_novel.sum(), (above & known & correct).sum() / known.sum()))
    points.sort()
    x, y = zip(*points)
    return auc(x, y)


def brute_force_auroc(is_novel, score):
    pos, neg = score[is_novel], score[~is_novel]
    return np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])


def brute_force_aupr(is_novel, score):
    """Average precision: mean over positives of precision at that positive's score."""
    return np.mean([(is_novel & (score >= s)).sum() / (score >= s).sum() for s in score[is_novel]])


@pytest.mark.parametrize("seed", range(5))
def test_open_set_metrics_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 60
    is_novel = rng.random(n) < 0.3
    correct = rng.random(n) < 0.7
    confidence = np.round(rng.random(n) - 0.3 * is_novel, 1)  # rounding makes ties
    assert metrics.oscr(is_novel, correct, confidence) == pytest.approx(
        brute_force_oscr(is_novel, correct & ~is_novel, confidence))
    novelty = 1 - confidence
    assert metrics.auroc(is_novel, novelty) == pytest.approx(brute_force_auroc(is_novel, novelty))
    assert metrics.aupr(is_novel, novelty) == pytest.approx(brute_force_aupr(is_novel, novelty))


def test_oscr_perfect_and_needs_both_kinds():
    is_novel = np.array([False, False, True, True])
    assert metrics.oscr(is_novel, [True, True, False, False], [0.9, 0.8, 0.1, 0.2]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="known and novel"):
        metrics.oscr([False, False], [True, True], [0.5, 0.6])
