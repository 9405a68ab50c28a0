"""Seed ensembles of cluster methods (``n_members``, ``omics_cl.models.members``)."""
import numpy as np
import pytest
from conftest import FAST

from omics_cl import models, tl
from omics_cl.core import graph
from omics_cl.models.members import member_params, member_seeds, unit_blocks


def test_member_seeds_start_with_the_seed_and_differ():
    assert member_seeds(7, 1) == [7]
    seeds = member_seeds(7, 3)
    assert seeds[0] == 7 and len(set(seeds)) == 3 and seeds == member_seeds(7, 3)
    assert member_seeds(8, 3)[1:] != seeds[1:]


def test_members_get_one_model_each_and_their_own_checkpoints():
    _, train = models.configure(models.METHODS["cae"], checkpoint_path="run.ckpt")
    assert member_params({"n_members": 3}, train, 0) == {"n_members": 1}
    assert member_params({"n_members": 3}, train, 2) == {"n_members": 1, "checkpoint_path": "run.ckpt.member2"}
    _, plain = models.configure(models.METHODS["cae"])
    assert member_params({}, plain, 1) == {"n_members": 1}


def test_unit_blocks_scale_each_block_row():
    a, b = np.array([[3.0, 4.0]]), np.array([[0.0, 2.0, 0.0]])
    joined = unit_blocks([a, b])
    np.testing.assert_allclose(joined, [[0.6, 0.8, 0.0, 1.0, 0.0]] / np.sqrt(2), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(joined, axis=1), 1.0, rtol=1e-6)


def test_an_ensemble_clusters_the_mean_of_its_members_graphs_and_reads_no_labels(counts_adata):
    single, ensemble, permuted = counts_adata.copy(), counts_adata.copy(), counts_adata.copy()
    permuted.obs["group"] = np.random.default_rng(0).permutation(permuted.obs["group"].to_numpy())
    single.obsp["cae_connectivities"] = np.eye(300)  # as if left by an earlier ensemble run
    tl.cluster(single, method="cae", pca_comps=10, n_clusters=3, seed=4, progress=False, **FAST)
    assert "cae_connectivities" not in single.obsp  # a single run does not leave an ensemble's graph
    for adata in (ensemble, permuted):
        record = tl.cluster(adata, method="cae", pca_comps=10, n_clusters=3, seed=4, n_members=2, progress=False,
                            **FAST)
    seeds = record["params"]["member_seeds"]
    assert seeds == member_seeds(4, 2) and record["params"]["n_members"] == 2
    assert len(record["params"]["member_histories"]) == 2
    # the same with the labels permuted: nothing reads them
    np.testing.assert_array_equal(ensemble.obsm["X_cae"], permuted.obsm["X_cae"])
    np.testing.assert_array_equal(ensemble.obs["cae_cluster"], permuted.obs["cae_cluster"])
    # member 0 is the single run with the seed; the arrays sit side by side, each block's rows normalised
    width = single.obsm["X_cae"].shape[1]
    joined = ensemble.obsm["X_cae"]
    assert joined.shape == (300, 2 * width)
    np.testing.assert_allclose(joined[:, :width], unit_blocks([single.obsm["X_cae"]]) / np.sqrt(2), rtol=1e-5,
                               atol=1e-6)
    assert ensemble.obsm["X_cae_latent"].shape[1] == 2 * single.obsm["X_cae_latent"].shape[1]
    expected = (graph.neighbor_graph(joined[:, :width], 15, "cosine", seeds[0])
                + graph.neighbor_graph(joined[:, width:], 15, "cosine", seeds[1])) / 2
    assert abs(ensemble.obsp["cae_connectivities"] - expected).max() < 1e-4  # float32 rounding of the blocks
    labels, _, _ = graph.consensus_leiden(ensemble.obsp["cae_connectivities"], 4, None, 1.0, 3)
    np.testing.assert_array_equal(ensemble.obs["cae_cluster"].astype(int).to_numpy(), labels)
    assert ensemble.obs["cae_cluster"].nunique() == 3


def test_bad_ensembles_are_refused_before_training(counts_adata):
    with pytest.raises(ValueError, match="n_members must be at least 1"):
        tl.cluster(counts_adata.copy(), method="cae", n_members=0, **FAST)
    with pytest.raises(ValueError, match="readout='argmax'"):
        tl.cluster(counts_adata.copy(), method="scinno", readout="argmax", n_members=2)
    with pytest.raises(TypeError, match="n_members"):
        models.configure(models.METHODS["pca"], n_members=2)
    with pytest.raises(TypeError, match="n_members must be int"):
        models.configure(models.METHODS["siamese"], n_members=None)
