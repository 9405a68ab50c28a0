"""The label-transfer ceiling diagnostic scores a space by the query's own labels, cross-validated."""
import numpy as np
import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def ceiling():
    return load_benchmark("transfer_ceiling")


def blobs(seed=0, n=300):
    rng = np.random.default_rng(seed)
    truth = np.array(["L4/5", "L2/3", "L6"])[np.arange(n) % 3]
    centres = {"L4/5": [5, 0, 0], "L2/3": [0, 5, 0], "L6": [0, 0, 5]}
    return np.array([centres[t] for t in truth]) + rng.normal(size=(n, 3)), truth


def test_separated_types_score_near_one(ceiling):
    z, truth = blobs()
    scores = ceiling.self_knn(z, truth, seed=0)
    assert scores["self_acc"] > 0.95 and scores["self_recall_l45"] > 0.95


def test_labels_unrelated_to_the_space_score_near_chance(ceiling):
    z, truth = blobs()
    scores = ceiling.self_knn(z, np.random.default_rng(1).permutation(truth), seed=0)
    assert scores["self_acc"] < 0.5


def test_logreg_ceiling_reads_sparse_features(ceiling):
    import scipy.sparse as sp

    z, truth = blobs()
    assert ceiling.self_logreg(sp.csr_matrix(np.abs(z)), truth, seed=0)["self_acc"] > 0.9


def test_scglue_needs_both_kept_stages(ceiling, tmp_path):
    assert not ceiling.has_stages(None) and not ceiling.has_stages(str(tmp_path))
    (tmp_path / "pretrain.dill").write_text("")
    assert not ceiling.has_stages(str(tmp_path))
    (tmp_path / "fine-tune.dill").write_text("")
    assert ceiling.has_stages(str(tmp_path))
