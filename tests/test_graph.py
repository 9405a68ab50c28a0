import numpy as np
import pytest
from conftest import blobs

from omics_cl.core import graph
from omics_cl.models.common import leiden_centres


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


def test_integrate_refuses_a_bad_overcluster_before_training(monkeypatch):
    import anndata as ad

    from omics_cl import models, tl

    def no_training(*args, **kwargs):
        raise AssertionError("trained before refusing overcluster")

    monkeypatch.setattr(models, "train_method", no_training)
    counts = ad.AnnData(np.ones((20, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="overcluster"):
        tl.integrate(rna=counts, atac=counts.copy(), n_clusters=3, overcluster=0.9, progress=False)
