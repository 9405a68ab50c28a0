import jax
import numpy as np
import pytest
from flax import nnx

from omics_cl import tl
from omics_cl.data.preprocess import prepare_counts
from omics_cl.data.sources import KEYS, GraphSource, cell_graph
from omics_cl.models import siamese

SMALL = dict(hidden=(32,), latent=8, gat_dim=8, gat_heads=2, epochs=4, batch_size=64, n_neighbors_graph=6,
             n_sampled=4)


def test_gat_minibatch_equals_full_graph():
    rng = np.random.default_rng(0)
    n, k, d = 40, 5, 12
    x = rng.normal(size=(n, d)).astype(np.float32)
    neighbors = np.stack([rng.choice(np.delete(np.arange(n), i), k, replace=False) for i in range(n)])
    mask = rng.random((n, k)) > 0.3
    gat = siamese.GAT(d, 3, 4, 6, rngs=nnx.Rngs(0))
    full = np.asarray(gat.full(x, neighbors, mask))
    batch = rng.permutation(n)[:17]
    mini = np.asarray(gat(x[batch], x[neighbors[batch]], mask[batch]))
    np.testing.assert_allclose(mini, full[batch], rtol=1e-5, atol=1e-6)
    # dropped edges matter: attending to all neighbours gives another output
    assert not np.allclose(np.asarray(gat.full(x, neighbors, np.ones_like(mask))), full)


def test_graph_source_feeds_the_same_neighbourhoods(counts_adata):
    prepared = prepare_counts(counts_adata, None, None)
    neighbors = cell_graph(prepared.source(), 10, 6, 0)
    source = GraphSource(prepared.source(), neighbors)
    idx = np.array([5, 0, 123, neighbors[5, 0]])  # the last is also a neighbour of the first: read once
    batch = source.get(idx)
    rows = prepared.source().get(np.arange(300))[KEYS.X]
    np.testing.assert_array_equal(batch[KEYS.X], rows[idx])
    np.testing.assert_array_equal(batch[KEYS.NEIGHBOR_X], rows[neighbors[idx]])


def test_cell_graph_ignores_labels(counts_adata):
    a = counts_adata.copy()
    b = counts_adata.copy()
    b.obs["group"] = np.random.default_rng(1).permutation(b.obs["group"].to_numpy())
    b.obs["cell_type"] = "same"
    ga = cell_graph(prepare_counts(a, None, None).source(), 10, 6, 0)
    gb = cell_graph(prepare_counts(b, None, None).source(), 10, 6, 0)
    np.testing.assert_array_equal(ga, gb)
    assert ga.shape == (300, 6) and (ga != np.arange(300)[:, None]).all()
    # the graph does follow the expression: most neighbours share the planted group
    groups = a.obs["group"].to_numpy()
    assert (groups[ga] == groups[:, None]).mean() > 0.8


def test_view_samples_neighbours_and_drops_edges():
    config = siamese.SiameseConfig(n_sampled=4, edge_drop=0.5)
    batch = {KEYS.X: np.ones((200, 3), np.float32), KEYS.NEIGHBOR_X: np.ones((200, 10, 3), np.float32),
             KEYS.NEIGHBOR_MASK: np.ones((200, 10), bool)}
    _, _, mask = siamese.view(jax.random.key(0), batch, config)
    kept = np.asarray(mask).sum(1)
    assert kept.max() <= 4 and 1.5 < kept.mean() < 2.5


def test_end_to_end_deterministic_label_free(counts_adata):
    a, b = counts_adata.copy(), counts_adata.copy()
    b.obs["group"] = "x"
    rec = tl.cluster(a, method="siamese", n_clusters=3, progress=False, readout="argmax", **SMALL)
    tl.cluster(b, method="siamese", n_clusters=3, progress=False, readout="argmax", **SMALL)
    np.testing.assert_array_equal(a.obsm["X_siamese"], b.obsm["X_siamese"])
    q = a.obsm["siamese_membership"]
    np.testing.assert_allclose(q.sum(1), 1.0, rtol=1e-5)
    assert a.obsm["X_siamese"].shape == (300, 16)
    assert rec["params"]["pretrain_epochs"] == 2 and "clustering" in rec["params"]["history"]


def test_k_estimated_when_not_given(counts_adata):
    rec = tl.cluster(counts_adata, method="siamese", progress=False, **SMALL)
    assert rec["params"]["k_estimated"] and rec["params"]["n_clusters"] >= 2


def test_too_few_cells_for_the_graph(counts_adata):
    with pytest.raises(ValueError, match="more cells"):
        tl.cluster(counts_adata[:5].copy(), method="siamese", progress=False, **SMALL)


def test_leiden_readout_fuses_the_pca_view_label_free(counts_adata):
    a, b = counts_adata.copy(), counts_adata.copy()
    b.obs["group"] = np.random.default_rng(0).permutation(b.obs["group"].to_numpy())
    a.obsm["siamese_membership"] = np.zeros((a.n_obs, 3))  # left from an earlier argmax run: removed
    rec = tl.cluster(a, method="siamese", n_clusters=3, progress=False, **SMALL)
    tl.cluster(b, method="siamese", n_clusters=3, progress=False, **SMALL)
    np.testing.assert_array_equal(a.obsm["X_siamese"], b.obsm["X_siamese"])
    np.testing.assert_array_equal(a.obs["siamese_cluster"], b.obs["siamese_cluster"])
    assert a.obsm["X_siamese_latent"].shape == (300, 16) and "siamese_membership" not in a.obsm
    np.testing.assert_allclose(np.linalg.norm(a.obsm["X_siamese"], axis=1), 1.0, rtol=1e-5)
    assert rec["n_clusters"] == 3 and rec["protocol"] == "n_clusters"
    assert rec["params"]["fusion_weights"] == {"pca": 0.5, "latent": 0.5}  # shrinkage 1: equal weights
    with pytest.raises(ValueError, match="readout"):
        tl.cluster(a, method="siamese", readout="kmeans", progress=False, **SMALL)
    with pytest.raises(ValueError, match="shrinkage"):
        tl.cluster(a, method="siamese", fusion_shrinkage=1.5, progress=False, **SMALL)


def test_leiden_readout_trains_more_centres_than_clusters(counts_adata):
    rec = tl.cluster(counts_adata.copy(), method="siamese", n_clusters=3, progress=False, **SMALL)
    assert rec["params"]["n_clusters"] == 9 and rec["params"]["centres_per_cluster"] == 3  # DEC centres
    assert rec["n_clusters"] == 3  # the Leiden read-off still gives the clusters asked for
    argmax = tl.cluster(counts_adata.copy(), method="siamese", n_clusters=3, readout="argmax", progress=False, **SMALL)
    assert argmax["params"]["n_clusters"] == 3 and argmax["params"]["centres_per_cluster"] == 1
    estimated = tl.cluster(counts_adata.copy(), method="siamese", progress=False, **SMALL)
    assert estimated["params"]["centres_per_cluster"] == 1  # K estimated: the Leiden clusters are the centres
    for bad, error in ((0, ValueError), (1.5, TypeError)):
        with pytest.raises(error, match="centres_per_cluster"):
            tl.cluster(counts_adata.copy(), method="siamese", centres_per_cluster=bad, progress=False, **SMALL)


def test_at_most_one_centre_per_cell(counts_adata):
    """K up to the cell count is valid; its three DEC centres per cluster stop at one per cell (the request of
    3 x 150 centres on 150 cells used to fail inside the Leiden bisection)."""
    small = counts_adata[::2].copy()
    rec = tl.cluster(small, method="siamese", n_clusters=small.n_obs, progress=False, **{**SMALL, "epochs": 2})
    assert rec["params"]["n_clusters"] == small.n_obs and rec["params"]["centres_per_cluster"] == 3
    assert small.obs["siamese_cluster"].notna().all()
