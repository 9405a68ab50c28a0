from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from omics_cl import tl
from omics_cl.core import losses
from omics_cl.core.train import fit
from omics_cl.data.preprocess import prepare_counts
from omics_cl.models import Context, configure, scinno
from omics_cl.models.common import reseed_empty_centres

SMALL = dict(hidden=(32,), latent=16, n_heads=4, epochs=4, batch_size=64, ramp_epochs=1)
ARGMAX = {**SMALL, "readout": "argmax"}


def test_memberships_rows_sum_to_one_and_follow_distance():
    z = jax.random.normal(jax.random.key(0), (50, 8))
    centres = jax.random.normal(jax.random.key(1), (5, 8))
    u, d = losses.fuzzy_memberships(z, centres, gamma=2.0)
    np.testing.assert_allclose(np.asarray(u.sum(1)), 1.0, rtol=1e-6)
    assert (np.asarray(u.argmax(1)) == np.asarray(d.argmin(1))).all()


def test_balance_term_is_minus_log_k_when_balanced_and_zero_when_collapsed():
    k = 4
    balanced = jnp.eye(k)[jnp.arange(40) % k]
    collapsed = jnp.eye(k)[jnp.zeros(40, dtype=int)]
    assert float(losses.balance(balanced)) == pytest.approx(-np.log(k), abs=1e-5)
    assert float(losses.balance(collapsed)) == pytest.approx(0.0, abs=1e-5)
    # with equal distances, the loss prefers the balanced assignment by alpha * log K
    d = jnp.ones((40, k))
    gap = losses.fuzzy_loss(collapsed, d, 2.0, 0.1) - losses.fuzzy_loss(balanced, d, 2.0, 0.1)
    assert float(gap) == pytest.approx(0.1 * np.log(k), abs=1e-5)


def test_inference_attention_does_not_depend_on_batching():
    config = scinno.SCINNOConfig(latent=16, n_heads=4)
    model = scinno.SCINNO(10, 3, config, rngs=nnx.Rngs(0))
    model.attention.out.kernel[...] = jax.random.normal(jax.random.key(2), (16, 16))  # non-trivial output
    z = jax.random.normal(jax.random.key(3), (30, 16))
    context = z[:7]
    whole = model.refine(z, context)
    perm = np.random.default_rng(0).permutation(30)
    parts = jnp.concatenate([model.refine(z[perm[:11]], context), model.refine(z[perm[11:]], context)])
    np.testing.assert_allclose(np.asarray(parts), np.asarray(whole[perm]), rtol=1e-5, atol=1e-5)
    assert not np.allclose(np.asarray(whole), np.asarray(z))


def test_cluster_writes_memberships_and_is_deterministic_and_label_free(counts_adata):
    a, b = counts_adata.copy(), counts_adata.copy()
    b.obs["group"] = np.random.default_rng(0).permutation(b.obs["group"].to_numpy())
    rec = tl.cluster(a, method="scinno", n_clusters=3, progress=False, **ARGMAX)
    tl.cluster(b, method="scinno", n_clusters=3, progress=False, **ARGMAX)
    u = a.obsm["scinno_membership"]
    assert u.shape == (300, 3)
    np.testing.assert_allclose(u.sum(1), 1.0, rtol=1e-5)
    assert (a.obs["scinno_cluster"].cat.codes.to_numpy() == u.argmax(1)).all()
    np.testing.assert_array_equal(a.obsm["X_scinno"], b.obsm["X_scinno"])
    np.testing.assert_array_equal(u, b.obsm["scinno_membership"])
    assert rec["protocol"] == "n_clusters" and not rec["params"]["k_estimated"]
    assert rec["params"]["warmup_epochs"] == 2 and len(rec["params"]["history"]["clustering"]) == 2


def test_k_is_estimated_without_labels_and_reported(counts_adata):
    rec = tl.cluster(counts_adata, method="scinno", progress=False, **ARGMAX)
    assert rec["params"]["k_estimated"] and rec["protocol"] == "resolution"
    assert rec["n_centres"] == counts_adata.obsm["scinno_membership"].shape[1] >= 2


def test_leiden_readout_fuses_the_pca_view_of_all_hvgs_label_free(counts_adata):
    a, b = counts_adata.copy(), counts_adata.copy()
    b.obs["group"] = np.random.default_rng(1).permutation(b.obs["group"].to_numpy())
    rec = tl.cluster(a, method="scinno", n_clusters=3, progress=False, **SMALL)
    tl.cluster(b, method="scinno", n_clusters=3, progress=False, **SMALL)
    np.testing.assert_array_equal(a.obsm["X_scinno"], b.obsm["X_scinno"])
    np.testing.assert_array_equal(a.obs["scinno_cluster"], b.obs["scinno_cluster"])
    assert "scinno_membership" not in a.obsm and a.obsm["X_scinno_latent"].shape == (300, 16)
    assert rec["n_clusters"] == 3
    assert rec["params"]["fusion_weights"] == pytest.approx({"pca": 0.425, "pca_pearson": 0.15, "latent": 0.425})
    assert a.obsm["X_scinno"].shape == (300, 2 * 50 + 16)  # the log and the Pearson views beside the latent
    assert rec["params"]["centres_per_cluster"] == 1 and rec["params"]["n_clusters"] == 3  # one centre per cluster
    doubled = tl.cluster(counts_adata.copy(), method="scinno", n_clusters=3, centres_per_cluster=2, progress=False,
                         **SMALL)
    assert doubled["params"]["n_clusters"] == 6 and doubled["n_clusters"] == 3
    prepared = prepare_counts(counts_adata, None, 2000)
    config, _ = configure(scinno.METHOD, min_detection=0.5, **SMALL)
    source = scinno.METHOD.source(prepared, config, Context())
    assert source.n_features < prepared.normalizer.n_features  # the model reads the detected genes only
    assert source.hvg_normalizer is prepared.normalizer  # the view reads all HVGs


def test_leiden_readout_reads_the_encoder_latent_or_the_refined_one(counts_adata):
    runs = {}
    for name, params in (("argmax", ARGMAX), ("encoder", SMALL), ("refined", {**SMALL, "readout_latent": "refined"})):
        runs[name] = counts_adata.copy()
        tl.cluster(runs[name], method="scinno", n_clusters=3, progress=False, **params)
    refined = runs["argmax"].obsm["X_scinno"]  # the argmax read-off's embedding: the attention-refined latent
    np.testing.assert_array_equal(runs["refined"].obsm["X_scinno_latent"], refined)  # the same trained model
    assert not np.allclose(runs["encoder"].obsm["X_scinno_latent"], refined, atol=1e-3)
    with pytest.raises(ValueError, match="readout_latent"):
        tl.cluster(counts_adata, method="scinno", readout_latent="attention", progress=False, **SMALL)


def test_leiden_readout_takes_fixed_view_weights_or_equal_ones_and_refuses_bad_ones_before_training(counts_adata):
    weights = {"pca": 0.2, "pca_pearson": 0.2, "latent": 0.6}
    for given, expected in ((weights, weights), (None, {"pca": 1 / 3, "pca_pearson": 1 / 3, "latent": 1 / 3})):
        rec = tl.cluster(counts_adata.copy(), method="scinno", n_clusters=3, fusion_weights=given, progress=False,
                         **SMALL)
        assert rec["params"]["fusion_weights"] == pytest.approx(expected)  # shrinkage 1: every cell takes them
    for bad in ({"pca": 1.0, "latent": 1.0}, {"pca": -1.0, "pca_pearson": 1.0, "latent": 1.0},
                {"pca": 1.0, "pca_pearson": 1.0, "latent": 1.0, "rna": 1.0}):
        with pytest.raises(ValueError, match="fusion_weights"):
            tl.cluster(counts_adata, method="scinno", fusion_weights=bad, progress=False, **SMALL)
    assert "X_scinno" not in counts_adata.obsm


def test_warmup_must_leave_clustering_epochs(counts_adata):
    with pytest.raises(ValueError, match="warmup_epochs must be between"):
        tl.cluster(counts_adata, method="scinno", progress=False, **{**SMALL, "warmup_epochs": 4})


def test_reseed_moves_an_empty_centre_onto_the_farthest_cell_of_the_largest_cluster():
    z = np.array([[1.0, 0.0], [0.9, 0.1], [0.6, 0.4], [0.0, 1.0]], np.float32)
    centres = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], np.float32)  # the third is nobody's nearest

    def assign(c):
        return (z @ c.T / np.linalg.norm(c, axis=1)).argmax(1)

    new, moved = reseed_empty_centres(centres, assign, z)
    assert moved == 1 and np.bincount(assign(new), minlength=3).min() >= 1
    np.testing.assert_allclose(new[2], z[2] / np.linalg.norm(z[2]), rtol=1e-6)  # farthest from centre 0
    np.testing.assert_array_equal(new[:2], centres[:2])


def test_clustering_epochs_leave_no_centre_empty(counts_adata):
    """A centre pointing away from every cell stays empty without re-seeding and gets cells with it."""
    prepared = prepare_counts(counts_adata, None, 2000)
    ctx = Context(seed=0, n_clusters=3)
    counts = {}
    for reseed in (False, True):
        config, train = configure(scinno.METHOD, reseed_empty=reseed, **ARGMAX)
        source = scinno.METHOD.source(prepared, config, ctx)
        model = scinno.SCINNO(source.n_features, 3, config, rngs=nnx.Rngs(0))
        z = scinno.refined(model, source, train, ctx)
        model.centres[...] = jnp.asarray(np.stack([z[0], z[150], -z.mean(0)]))
        cluster_stage = scinno.stages(config, train, source, ctx)[1]
        trained = fit(model, cluster_stage.loss, source, replace(train, epochs=1, progress=False), 0,
                      schedule=cluster_stage.schedule, after_epoch=cluster_stage.after_epoch).model
        u = scinno.embed(trained, source, config, train, ctx)[0]["memberships"]
        counts[reseed] = len(np.unique(u.argmax(1)))
    assert counts == {False: 2, True: 3}
