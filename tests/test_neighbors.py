"""The kNN searches of core.neighbors (exact JAX, scikit-learn, pynndescent) and the graphs built on them."""
import sys
import types

import numpy as np
import pytest
from conftest import blobs

from omics_cl.core import graph, neighbors


def test_knn_includes_self_first():
    x, _ = blobs(20, 2)
    idx, dist = neighbors.knn(x, 5, "cosine")
    assert np.array_equal(idx[:, 0], np.arange(len(x))) and np.allclose(dist[:, 0], 0, atol=1e-5)


def test_knn_vote_shares_match_a_naive_count():
    rng = np.random.default_rng(0)
    reference, query = rng.normal(size=(40, 5)), rng.normal(size=(7, 5))
    labels = rng.integers(0, 3, 40)
    votes = neighbors.knn_vote(reference, query, labels, 4, k=6)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    nearest = np.argsort(-(unit(query) @ unit(reference).T), axis=1)[:, :6]
    expected = np.stack([np.bincount(labels[row], minlength=4) / 6 for row in nearest])
    assert votes.shape == (7, 4) and np.allclose(votes, expected) and np.all(votes[:, 3] == 0)


def brute_force(x, query, k, metric):
    """Exact neighbours by numpy in float64: indices (stable order) and distances."""
    x, query = x.astype(np.float64), query.astype(np.float64)
    if metric == "cosine":
        x, query = (a / np.linalg.norm(a, axis=1, keepdims=True) for a in (x, query))
        dist = 1 - query @ x.T
    else:
        dist = np.sqrt(((query[:, None, :] - x[None]) ** 2).sum(-1))
    idx = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(dist, idx, 1)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_jax_knn_equals_numpy_brute_force(metric):
    x = np.random.default_rng(3).normal(size=(301, 16)).astype(np.float32)
    query = np.random.default_rng(4).normal(size=(50, 16)).astype(np.float32)
    for q in (None, query):
        want_idx, want_dist = brute_force(x, x if q is None else q, 15, metric)
        for block_values in (neighbors.KNN_BLOCK_VALUES, 301 * 7):  # one block; 7 rows per block, the last padded
            idx, dist = neighbors.blocked_knn(x, 15, metric, q, block_values)
            np.testing.assert_array_equal(idx, want_idx)
            np.testing.assert_allclose(dist, want_dist, atol=2e-6)
    np.testing.assert_array_equal(neighbors.knn(x, 15, metric, method="jax")[0], brute_force(x, x, 15, metric)[0])


class ExactIndex:
    """Stands in for pynndescent's index in the dispatch test (its numba compilation per metric takes a minute on 2
    cores; the real one is checked by ``test_jax_knn_agrees_with_pynndescent``): exact answers by scikit-learn."""

    def __init__(self, x, n_neighbors, metric):
        self.x, self.metric = x, metric
        self.neighbor_graph = self.query(x, n_neighbors)

    def query(self, query, k):
        from sklearn.neighbors import NearestNeighbors

        dist, idx = NearestNeighbors(n_neighbors=k, metric=self.metric).fit(self.x).kneighbors(query)
        return idx, dist


def test_auto_knn_picks_the_search_by_size_metric_and_query(monkeypatch):
    x = np.random.default_rng(5).normal(size=(200, 8)).astype(np.float32)
    query = np.random.default_rng(6).normal(size=(40, 8)).astype(np.float32)
    calls = []
    blocked = neighbors.blocked_knn
    monkeypatch.setattr(neighbors, "blocked_knn", lambda *a, **kw: calls.append(a[2]) or blocked(*a, **kw))
    approximate = []

    def nndescent(x, n_neighbors, metric, **kwargs):
        approximate.append(metric)
        return ExactIndex(x, n_neighbors, metric)

    monkeypatch.setitem(sys.modules, "pynndescent", types.SimpleNamespace(NNDescent=nndescent))
    for metric in ("cosine", "euclidean"):
        idx, _ = neighbors.knn(x, 10, metric, query=query)
        np.testing.assert_array_equal(idx, brute_force(x, query, 10, metric)[0])
    neighbors.knn(x, 10, "manhattan", query=query)  # not a JAX metric: scikit-learn
    neighbors.knn(x, 10, "cosine")  # a graph of x itself on the CPU: scikit-learn up to EXACT_KNN_MAX_CELLS
    assert calls == ["cosine", "euclidean"]
    monkeypatch.setattr(neighbors, "EXACT_KNN_MAX_CELLS", 100)  # 200 rows: past scikit-learn's share
    idx, _ = neighbors.knn(x, 10, "cosine")  # a graph of x itself: the JAX search, exact
    np.testing.assert_array_equal(idx, brute_force(x, x, 10, "cosine")[0])
    neighbors.knn(x, 10, "manhattan")  # not a JAX metric: pynndescent
    monkeypatch.setattr(neighbors, "JAX_KNN_MAX_CELLS", 150)  # past the JAX share too: pynndescent
    assert neighbors.knn(x, 10, "cosine", query=query)[0].shape == (40, 10)
    assert neighbors.knn(x, 10, "cosine")[0].shape == (200, 10)
    assert calls == ["cosine", "euclidean", "cosine"]
    assert approximate == ["manhattan", "cosine", "cosine"]


def test_jax_knn_agrees_with_pynndescent():
    x, _ = blobs(n_per=600, k=5, seed=1)
    exact, _ = neighbors.knn(x, 15, "cosine", method="jax")
    approx, _ = neighbors.knn(x, 15, "cosine", method="pynndescent")
    recall = np.mean([len(np.intersect1d(a, b)) / 15 for a, b in zip(exact, approx)])
    assert recall >= 0.95, recall
    with pytest.raises(ValueError, match="method must be one of"):
        neighbors.knn(x, 15, method="faiss")
    with pytest.raises(ValueError, match="cosine' or 'euclidean"):
        neighbors.knn(x, 15, "manhattan", method="jax")


def test_a_cells_distance_to_itself_is_zero_so_rounding_does_not_move_the_graph():
    """float32 cosine gives some rows a distance to themselves of ~1e-7; UMAP's weights take the first nonzero
    distance as the cell's rho, so that noise would reweight the whole row. Scaling rows leaves the graph alone."""
    x = np.random.default_rng(0).normal(size=(200, 12)).astype(np.float32)
    scaled = (x / np.linalg.norm(x, axis=1, keepdims=True) / np.sqrt(2)).astype(np.float32)
    for method in ("brute", "pynndescent", "jax"):
        idx, dist = neighbors.knn(scaled, 10, "cosine", method=method)
        assert (idx[:, 0] == np.arange(200)).all() and (dist[:, 0] == 0).all()
    difference = graph.neighbor_graph(x, 10) - graph.neighbor_graph(scaled, 10)
    assert abs(difference).max() < 1e-4

