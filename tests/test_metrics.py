import itertools

import numpy as np
import pytest
from sklearn import metrics as skm

from omics_cl import metrics


def brute_force_acc(true, pred):
    """Best one-to-one map of clusters to classes by trying every injection."""
    classes, clusters = np.unique(true), np.unique(pred)
    best = 0
    pad = max(len(classes), len(clusters))
    targets = list(classes) + [None] * (pad - len(classes))
    for perm in itertools.permutations(targets, len(clusters)):
        mapping = dict(zip(clusters, perm))
        best = max(best, sum(mapping[p] == t for p, t in zip(pred, true)))
    return best / len(true)


@pytest.mark.parametrize("n_classes,n_clusters,seed", [(3, 3, 0), (3, 5, 1), (5, 3, 2), (4, 4, 3), (2, 6, 4)])
def test_acc_equals_brute_force_including_rectangular(n_classes, n_clusters, seed):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, n_classes, 40)
    pred = np.where(rng.random(40) < 0.6, true % n_clusters, rng.integers(0, n_clusters, 40))
    assert metrics.acc(true, pred) == pytest.approx(brute_force_acc(true, pred))


def test_acc_unmatched_clusters_count_as_errors():
    true = np.array(["a"] * 4 + ["b"] * 4)
    pred = np.array([0, 0, 1, 1, 2, 2, 3, 3])  # every cluster pure, but only 2 can be matched
    assert metrics.acc(true, pred) == 0.5


def test_nmi_ari_match_sklearn_with_string_labels():
    rng = np.random.default_rng(0)
    true = rng.choice(["x", "y", "z"], 100)
    pred = rng.integers(0, 4, 100)
    assert metrics.nmi(true, pred) == pytest.approx(
        skm.normalized_mutual_info_score(true, pred, average_method="arithmetic"))
    assert metrics.ari(true, pred) == pytest.approx(skm.adjusted_rand_score(true, pred))


def test_macro_f1_counts_foreign_predictions_as_errors():
    true = ["a", "a", "b", "b"]
    assert metrics.macro_f1(true, ["a", "a", "b", "b"]) == 1.0
    assert metrics.macro_f1(true, ["a", "a", "c", "c"]) == pytest.approx(0.5)


def test_clustering_scores_exclude_unlabelled():
    true = np.array(["a", "a", "Mis", None, "b"], dtype=object)
    pred = np.array([0, 0, 1, 1, 1])
    s = metrics.clustering_scores(true, pred, exclude=["Mis"])
    assert s["acc"] == 1.0 and s["ari"] == 1.0
