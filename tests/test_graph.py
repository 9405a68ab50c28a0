import numpy as np
import pytest

from omics_cl.core import graph, neighbors
from omics_cl.models.common import leiden_centres


def blobs(n_per=60, k=5, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, 10)) * 10
    return np.vstack([c + rng.normal(size=(n_per, 10)) for c in centres]), np.repeat(np.arange(k), n_per)


def test_bisection_finds_requested_cluster_count():
    x, _ = blobs()
    adj = graph.neighbor_graph(x, 15, "euclidean")
    for k in (5, 8, 12):
        labels, res = graph.leiden_n_clusters(adj, k, seed=0)
        assert labels.max() + 1 == k and res > 0


def test_bisection_returns_closest_count_when_unreachable():
    x, _ = blobs()  # 5 disconnected blobs: Leiden never merges them, so 3 is out of reach
    labels, _ = graph.leiden_n_clusters(graph.neighbor_graph(x, 15, "euclidean"), 3, seed=0)
    assert labels.max() + 1 == 5


def test_leiden_deterministic_and_recovers_blobs():
    x, truth = blobs()
    adj = graph.neighbor_graph(x, 15, "euclidean")
    a, b = graph.leiden(adj, 0.5, seed=1), graph.leiden(adj, 0.5, seed=1)
    assert np.array_equal(a, b)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, a) > 0.95


def noisy_graph():
    x, _ = blobs(40, 8, seed=3)
    return graph.neighbor_graph(x + np.random.default_rng(0).normal(size=x.shape) * 6, 15, "euclidean")


def modularity(adj, labels, resolution=1.0):
    import igraph
    import scipy.sparse as sp

    upper = sp.triu(adj, k=1).tocoo()
    g = igraph.Graph(n=adj.shape[0], edges=np.column_stack([upper.row, upper.col]).tolist(),
                     edge_attrs={"weight": upper.data.tolist()})
    return g.modularity(labels.tolist(), weights="weight", resolution=resolution)


def test_leiden_keeps_the_most_modular_restart():
    adj = noisy_graph()
    single = graph.leiden(adj, 1.5, seed=4, restarts=1)  # restart 0 of seed 4
    best = graph.leiden(adj, 1.5, seed=4, restarts=10)
    assert modularity(adj, best, 1.5) >= modularity(adj, single, 1.5)
    assert np.array_equal(best, graph.leiden(adj, 1.5, seed=4, restarts=10))
    with pytest.raises(ValueError, match="restarts"):
        graph.leiden(adj, 1.0, restarts=0)


def test_bisection_keeps_a_most_modular_partition_with_k_clusters():
    adj = noisy_graph()
    labels, res = graph.leiden_n_clusters(adj, 6, seed=0, restarts=10)
    assert labels.max() + 1 == 6
    other = graph.leiden(adj, res, seed=0, restarts=1)  # one of the restarts it compared
    if other.max() + 1 == 6:
        assert modularity(adj, other) <= modularity(adj, labels) + 1e-12


def test_knn_includes_self_first():
    x, _ = blobs(20, 2)
    idx, dist = neighbors.knn(x, 5, "cosine")
    assert np.array_equal(idx[:, 0], np.arange(len(x))) and np.allclose(dist[:, 0], 0, atol=1e-5)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_leiden_centres_are_mean_directions_of_the_clusters():
    x, truth = blobs()
    centres = leiden_centres(x, None, 15, 0.5, seed=0)  # K estimated: the 5 blobs
    assert centres.shape == (5, x.shape[1])
    blob_means = np.stack([unit(x[truth == k]).mean(0) for k in range(5)])
    nearest = np.abs(centres[:, None, :] - blob_means[None]).max(2).argmin(1)
    assert sorted(nearest) == list(range(5))
    assert np.allclose(centres, blob_means[nearest], atol=1e-5)


def test_leiden_centres_honour_a_given_k_or_warn():
    x, _ = blobs()
    assert leiden_centres(x, 8, 15, 1.0, seed=0).shape == (8, x.shape[1])
    with pytest.warns(UserWarning, match="training 5 centres"):  # 5 disconnected blobs: 3 is out of reach
        assert len(leiden_centres(x, 3, 15, 1.0, seed=0)) == 5


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


def test_auto_knn_picks_the_search_by_size_metric_and_query(monkeypatch):
    x = np.random.default_rng(5).normal(size=(200, 8)).astype(np.float32)
    query = np.random.default_rng(6).normal(size=(40, 8)).astype(np.float32)
    calls = []
    blocked = neighbors.blocked_knn
    monkeypatch.setattr(neighbors, "blocked_knn", lambda *a, **kw: calls.append(a[2]) or blocked(*a, **kw))
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


def test_coassociation_graph_scales_edges_by_how_often_partitions_agree():
    adj = noisy_graph()
    first = graph.leiden(adj, 1.0, seed=0)
    second = graph.leiden(adj, 1.0, seed=1)
    pooled = graph.coassociation_graph(adj, [first, second])
    assert abs(pooled - pooled.T).max() == 0
    rows, cols = adj.nonzero()
    share = ((first[rows] == first[cols]).astype(float) + (second[rows] == second[cols])) / 2
    assert np.allclose(np.asarray(pooled[rows, cols]).ravel(), np.asarray(adj[rows, cols]).ravel() * share)
    assert pooled.nnz == int((share > 0).sum())  # edges both partitions cut are dropped


def test_consensus_leiden_with_one_run_is_plain_leiden():
    adj = noisy_graph()
    labels, res, runs = graph.consensus_leiden(adj, seed=2, runs=1, resolution=1.3)
    assert runs == 1 and res == 1.3 and np.array_equal(labels, graph.leiden(adj, 1.3, seed=2))
    labels, res, _ = graph.consensus_leiden(adj, seed=2, runs=1, n_clusters=6, overcluster=1)
    expected, expected_res = graph.leiden_n_clusters(adj, 6, seed=2)
    assert np.array_equal(labels, expected) and res == expected_res
    with pytest.raises(ValueError, match="runs"):
        graph.consensus_leiden(adj, runs=0)


def ring_of_groups(n_big=600, n_small=8, size=20, seed=0):
    """A large homogeneous group and ``n_small`` dense small groups on a ring (few edges to their two ring
    neighbours and to the large group): modularity's resolution limit pairs small groups up."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    truth = np.concatenate([np.zeros(n_big, int), np.repeat(np.arange(1, n_small + 1), size)])
    i, j = np.triu_indices(len(truth), 1)
    p = np.where(truth[i] == truth[j], np.where(truth[i] == 0, 0.05, 0.6), 0.0)
    small = (truth[i] > 0) & (truth[j] > 0)
    p = np.where(small & np.isin((truth[j] - truth[i]) % n_small, (1, n_small - 1)), 0.02, p)
    p = np.where((truth[i] == 0) & (truth[j] > 0), 0.002, p)
    keep = rng.random(len(p)) < p
    upper = sp.csr_matrix((np.ones(keep.sum()), (i[keep], j[keep])), shape=(len(truth), len(truth)))
    return (upper + upper.T).tocsr(), truth


def test_n_clusters_by_merging_keeps_small_groups_that_bisection_pairs_up(monkeypatch):
    from sklearn.metrics import adjusted_rand_score

    monkeypatch.setattr(graph, "OVERCLUSTER_MIN_CELLS", 20)  # 760 cells: 27 clusters before merging
    adj, truth = ring_of_groups()
    for seed in range(2):
        merged = graph.consensus_leiden(adj, seed, None, n_clusters=9)[0]
        bisected = graph.consensus_leiden(adj, seed, None, n_clusters=9, overcluster=1)[0]
        assert merged.max() + 1 == bisected.max() + 1 == 9
        assert adjusted_rand_score(truth, merged) == 1.0
        assert adjusted_rand_score(truth, bisected) < 0.5  # splits the large group instead


def test_overcluster_target_keeps_a_hundred_cells_per_cluster():
    assert graph.overcluster_target(10_000, 14) == 42
    assert graph.overcluster_target(3_000, 14) == 30  # one cluster per 100 cells
    assert graph.overcluster_target(700, 10) == 10  # small data: plain bisection
    assert graph.overcluster_target(10_000, 14, 1) == 14
    with pytest.raises(ValueError, match="overcluster"):
        graph.overcluster_target(10_000, 14, 0.5)


def test_merge_clusters_joins_the_most_connected_pieces_first():
    import scipy.sparse as sp

    # pieces 0-2 of one population (many edges between them) and piece 3 (one edge to piece 0)
    blocks = np.array([[20, 8, 8, 1], [8, 20, 8, 0], [8, 8, 20, 0], [1, 0, 0, 6]], float)
    labels = np.repeat(np.arange(4), [3, 2, 2, 1])
    onehot = np.eye(4)[labels]
    sizes = onehot.sum(0)
    adj = sp.csr_matrix(onehot @ (blocks / np.outer(sizes, sizes)) @ onehot.T)
    merged = graph.merge_clusters(adj, labels, 2)
    assert len(set(merged[labels < 3])) == 1 and merged[labels == 3][0] != merged[0]
    assert np.bincount(merged).tolist() == [7, 1]  # sorted by size
    assert np.array_equal(graph.merge_clusters(adj, labels, 4), labels)
    with pytest.raises(ValueError, match="n_clusters"):
        graph.merge_clusters(adj, labels, 0)
    with pytest.raises(ValueError, match="overcluster"):
        graph.consensus_leiden(adj, n_clusters=2, overcluster=0.5)
    with pytest.raises(ValueError, match="n_clusters"):
        graph.consensus_leiden(adj, n_clusters=9)


def mean_pairwise_ari(partitions):
    from sklearn.metrics import adjusted_rand_score

    return np.mean([adjusted_rand_score(a, b) for i, a in enumerate(partitions) for b in partitions[i + 1:]])


def test_consensus_leiden_is_deterministic_and_steadier_across_seeds():
    adj = noisy_graph()
    pooled = [graph.consensus_leiden(adj, seed, 10, n_clusters=8, overcluster=1)[0] for seed in range(5)]
    assert all(labels.max() + 1 == 8 for labels in pooled)
    assert np.array_equal(pooled[0], graph.consensus_leiden(adj, 0, 10, n_clusters=8, overcluster=1)[0])
    single = [graph.leiden_n_clusters(adj, 8, seed)[0] for seed in range(5)]
    assert mean_pairwise_ari(pooled) > mean_pairwise_ari(single)


def test_consensus_leiden_default_runs_depend_on_graph_size(monkeypatch):
    adj = noisy_graph()
    assert graph.consensus_leiden(adj)[2] == graph.CONSENSUS_RUNS
    monkeypatch.setattr(graph, "CONSENSUS_MAX_CELLS", adj.shape[0] - 1)
    assert graph.consensus_leiden(adj)[2] == 1


def test_cluster_embedding_pools_leiden_runs_and_refuses_bad_settings():
    import anndata as ad

    from omics_cl import tl

    x, truth = blobs()
    adata = ad.AnnData(obs={"truth": truth.astype(str)}, obsm={"X_emb": x})
    record = tl.cluster_embedding(adata, "X_emb", n_clusters=5)
    assert record["leiden_consensus"] == graph.CONSENSUS_RUNS and adata.obs["emb_cluster"].nunique() == 5
    assert tl.cluster_embedding(adata, "X_emb", n_clusters=5, leiden_consensus=1)["leiden_consensus"] == 1
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="leiden_consensus"):
            tl.cluster_embedding(adata, "X_emb", leiden_consensus=bad)
    with pytest.raises(ValueError, match="leiden_restarts"):
        tl.cluster_embedding(adata, "X_emb", leiden_restarts=10, leiden_consensus=10)
    assert tl.cluster_embedding(adata, "X_emb", leiden_restarts=10)["leiden_consensus"] == 1
    assert record["overcluster"] == graph.OVERCLUSTER and record["clusters_before_merge"] == 5  # 300 cells
    assert "overcluster" not in tl.cluster_embedding(adata, "X_emb")
    for bad in (0.5, "3", True):
        with pytest.raises(ValueError, match="overcluster"):
            tl.cluster_embedding(adata, "X_emb", n_clusters=5, overcluster=bad)


def test_cluster_refuses_pooled_restarts_before_training(monkeypatch):
    import anndata as ad

    from omics_cl import models, tl

    def no_training(*args, **kwargs):
        raise AssertionError("trained before refusing the Leiden settings")

    monkeypatch.setattr(models, "run", no_training)
    adata = ad.AnnData(np.ones((20, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="leiden_restarts"):
        tl.cluster(adata, method="cae", leiden_restarts=10, leiden_consensus=10, progress=False)
    with pytest.raises(ValueError, match="overcluster"):
        tl.cluster(adata, method="cae", n_clusters=3, overcluster=0, progress=False)


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


def test_integrate_refuses_a_bad_overcluster_before_training(monkeypatch):
    import anndata as ad

    from omics_cl import models, tl

    def no_training(*args, **kwargs):
        raise AssertionError("trained before refusing overcluster")

    monkeypatch.setattr(models, "train_method", no_training)
    counts = ad.AnnData(np.ones((20, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="overcluster"):
        tl.integrate(rna=counts, atac=counts.copy(), n_clusters=3, overcluster=0.9, progress=False)
