import anndata as ad
import jax
import jax.numpy as jnp
import mudata as md
import numpy as np
import pytest
import scipy.sparse as sp
from flax import nnx
from scipy import stats

from omics_cl import metrics, tl
from omics_cl.core import augment
from omics_cl.data.paired import Modality, paired_modalities, top_accessible
from omics_cl.models import sci2cl, sci2cl_network
from omics_cl.models.common import context_cells

FAST = {"hidden": (32,), "latent": 8, "epochs": 2, "batch_size": 64, "n_top_peaks": 300}


def _paired(n=160, genes=60, peaks=400, seed=0):
    """Two groups of cells; RNA negative-binomial counts, sparse binary-ish ATAC counts."""
    rng = np.random.default_rng(seed)
    group = np.repeat([0, 1], n // 2)
    mu = rng.gamma(2.0, 1.0, size=(2, genes))[group]
    x = rng.poisson(rng.gamma(5.0, mu / 5.0)).astype(np.float32)
    x[:, 0] += 1
    p = rng.uniform(0.01, 0.2, size=(2, peaks))[group]
    y = (rng.random((n, peaks)) < p).astype(np.float32)
    y[:, 0] += 1
    names = [f"c{i}" for i in range(n)]
    rna = ad.AnnData(sp.csr_matrix(x), obs={"cell_type": group.astype(str)})
    atac = ad.AnnData(sp.csr_matrix(y))
    rna.obs_names = atac.obs_names = names
    rna.var_names = [f"g{i}" for i in range(genes)]
    atac.var_names = [f"chr1:{100 * i}-{100 * i + 50}" for i in range(peaks)]
    return rna, atac


def test_model_zinb_nll_matches_scipy_with_size_factors():
    config = sci2cl.SCI2CLConfig(hidden=(8,), latent=4)
    ae = sci2cl_network.CountAutoEncoder(5, config, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(1)
    z = jnp.asarray(rng.normal(size=(3, 4)), dtype=jnp.float32)
    batch = {"counts": jnp.asarray(rng.poisson(2.0, size=(3, 5)), dtype=jnp.float32),
             "size_factor": jnp.asarray([0.5, 1.0, 2.0], dtype=jnp.float32)}
    got = float(ae.nll(z, batch, 0.0, None))
    h = jax.nn.gelu(ae.decoder(z))
    mu = np.asarray(jnp.exp(ae.mean(h))) * np.asarray(batch["size_factor"])[:, None]
    pi = np.asarray(jax.nn.sigmoid(ae.dropout_logit(h)))
    theta = np.exp(np.asarray(ae.log_theta[...]))[None, :].repeat(3, 0)
    x = np.asarray(batch["counts"])
    nb = stats.nbinom.pmf(x, theta, theta / (theta + mu))
    want = -np.mean(np.log(np.where(x == 0, pi + (1 - pi) * nb, (1 - pi) * nb)))
    assert got == pytest.approx(want, rel=1e-4)


def test_bernoulli_atac_models_which_peaks_are_open_and_bad_likelihood_is_refused():
    config = sci2cl.SCI2CLConfig(hidden=(8,), latent=4)
    model = sci2cl_network.SCI2CL(6, 5, config, rngs=nnx.Rngs(0))
    assert not hasattr(model.atac, "log_theta") and hasattr(model.rna, "log_theta")
    z = jnp.asarray(np.random.default_rng(1).normal(size=(3, 4)), dtype=jnp.float32)
    counts = jnp.asarray([[0, 1, 3, 0, 2], [1, 0, 0, 0, 5], [0, 0, 1, 1, 0]], dtype=jnp.float32)
    p = np.asarray(jax.nn.sigmoid(model.atac.mean(jax.nn.gelu(model.atac.decoder(z)))))
    want = -np.mean(stats.bernoulli.logpmf(np.asarray(counts) > 0, p))
    assert float(model.atac.nll(z, {"counts": counts}, 0.0, None)) == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="atac_likelihood must be one of"):
        sci2cl.SCI2CLConfig(atac_likelihood="poisson")


def test_views_mask_shared_columns_and_attention_shapes():
    config = sci2cl.SCI2CLConfig(hidden=(16,), latent=8, n_views=5, mask_rate=0.4)
    x = jnp.ones((6, 200))
    key = jax.random.key(0)
    masks = [np.asarray(augment.column_mask(jax.random.fold_in(key, t), x, config.mask_rate) == 0)
             for t in range(config.n_views)]
    for m in masks:
        assert (m == m[0]).all()  # one set of columns for the whole batch
        assert 0.25 < m[0].mean() < 0.55
    assert not all((m == masks[0]).all() for m in masks[1:])  # the views differ
    views = sci2cl_network.ViewAttention(config, rngs=nnx.Rngs(0))
    assert views(jnp.ones((6, 5, 8))).shape == (6, 8)
    ae = sci2cl_network.CountAutoEncoder(200, config, rngs=nnx.Rngs(0))
    z = ae.encoder(x)
    loss = sci2cl_network.view_loss(ae, views, x, z, config.n_views, config.mask_rate, key, None)
    assert np.isfinite(float(loss)) and 0 <= float(loss) <= 4


def test_hard_negatives_exclude_the_pair_and_follow_similarity():
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.normal(size=(32, 8)), dtype=jnp.float32)
    draws = np.stack([np.asarray(sci2cl_network.hard_negatives(jax.random.key(s), z, z + 0.01, 0.1)) for s in range(200)])
    assert (draws != np.arange(32)).all()
    # hardest negative (most similar other cell) is drawn most often
    sim = np.asarray(z @ z.T) / np.outer(np.linalg.norm(z, axis=1), np.linalg.norm(z, axis=1))
    np.fill_diagonal(sim, -np.inf)
    counts = np.stack([np.bincount(draws[:, i], minlength=32) for i in range(32)])
    assert np.mean(counts.argmax(1) == sim.argmax(1)) > 0.8


def test_integrate_ignores_labels_is_deterministic_and_matches_cells_by_name():
    rna, atac = _paired()
    runs = []
    for labels, atac_order in ((rna.obs["cell_type"].to_numpy(), slice(None)),
                               (np.random.default_rng(3).permutation(rna.obs["cell_type"].to_numpy()), slice(None, None, -1))):
        r = rna.copy()
        r.obs["cell_type"] = labels
        mdata = md.MuData({"rna": r, "atac": atac[atac_order].copy()})
        tl.integrate(mdata, seed=0, progress=False, **FAST)
        z = mdata.obsm["X_sci2cl"][mdata.obs_names.get_indexer(rna.obs_names)]
        runs.append((z, mdata))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    mdata = runs[0][1]
    assert mdata.obsm["X_sci2cl_rna"].shape == mdata.obsm["X_sci2cl_atac"].shape == (160, 8)
    assert mdata.obsm["X_sci2cl_xattn"].shape == (160, 16)  # the seed's joint embedding, kept beside
    # default joint: per-cell weighted fusion of the RNA PCA and Z_r (weights rows sum to 1)
    assert mdata.obsm["X_sci2cl"].shape == (160, mdata.obsm["X_sci2cl_pca"].shape[1] + 8)
    np.testing.assert_allclose(mdata.obsm["X_sci2cl_view_weights"].sum(1), 1.0, rtol=1e-5)
    assert "sci2cl_cluster" in mdata.obs and mdata.uns["omics_cl"]["sci2cl"]["n_peaks"] == 300
    assert mdata.uns["omics_cl"]["sci2cl"]["hvg_flavor"] in ("seurat_v3", "all_genes")


def test_integrate_two_anndata_under_a_key_and_batch_independent_inference():
    rna, atac = _paired()
    atac = atac[::-1].copy()
    rec = tl.integrate(rna=rna, atac=atac, seed=1, n_clusters=2, progress=False, key_added="joint", **FAST)
    assert rec["n_clusters"] == 2 and rec["method"] == "sci2cl"
    order = atac.obs_names.get_indexer(rna.obs_names)
    np.testing.assert_array_equal(rna.obsm["X_joint"], atac.obsm["X_joint"][order])
    assert (rna.obs["joint_cluster"].to_numpy() == atac.obs["joint_cluster"].to_numpy()[order]).all()
    for a in (rna, atac):  # every result under the key, none under the method's name
        assert {"X_joint_rna", "X_joint_atac"} <= set(a.obsm) and not any("sci2cl" in k for k in a.obsm)
        assert list(a.uns["omics_cl"]) == ["joint"] and "sci2cl_cluster" not in a.obs
    # inference: every cell attends to one fixed context, so a subset gives the same rows
    assert list(context_cells(100, 200, 0)) == list(range(100))
    ctx = context_cells(1000, 50, 0)
    assert len(ctx) == 50 and (ctx == context_cells(1000, 50, 0)).all()


def test_cells_without_kept_peaks_are_warned_about_and_counted(tmp_path):
    """ATAC cells whose only counts are in peaks outside the kept ones: warned about and counted, at training and
    when a saved model maps them."""
    rna, atac = _paired()
    y = atac.X.toarray()
    y[:, 390:] = 0
    y[:3] = 0
    y[:3, 395] = 1  # open in three cells only: not among the 300 most accessible peaks
    atac.X = sp.csr_matrix(y)
    with pytest.warns(UserWarning, match="^3 ATAC cells have no count among the kept genes"):
        record = tl.integrate(rna=rna, atac=atac, seed=0, progress=False, save_model=tmp_path / "model", **FAST)
    assert record["n_atac_cells_without_features"] == 3 and record["n_rna_cells_without_features"] == 0
    np.testing.assert_array_equal(atac.obsm["X_sci2cl_atac"][1:3], atac.obsm["X_sci2cl_atac"][[0, 0]])
    with pytest.warns(UserWarning, match="^3 ATAC cells have no count"):
        mapped = tl.map_paired(rna=rna.copy(), atac=atac.copy(), model_dir=tmp_path / "model")
    assert mapped["n_atac_cells_without_features"] == 3


@pytest.mark.parametrize("case", ["unmatched", "empty", "non_count_rna", "non_count_atac", "nan", "no_mudata_mods"])
def test_integrate_bad_input_raises_and_writes_nothing(case):
    rna, atac = _paired(n=40)
    if case == "unmatched":
        atac.obs_names = [f"x{i}" for i in range(40)]
        match = "do not match: 40 RNA cells, 40 ATAC cells, 0 in both"
    elif case == "empty":
        atac = atac[:, []].copy()
        match = "atac modality is empty"
    elif case == "non_count_rna":
        rna.X = rna.X * 0.5
        match = "RNA: counts contain non-integer"
    elif case == "non_count_atac":
        atac.X = sp.csr_matrix(np.log1p(atac.X.toarray()))
        match = "ATAC: counts contain non-integer"
    elif case == "nan":
        x = rna.X.toarray()
        x[3, 2] = np.nan
        rna.X = sp.csr_matrix(x)
        match = "NaN/inf"
    if case == "no_mudata_mods":
        with pytest.raises(ValueError, match="modalities 'rna' and 'atac'"):
            tl.integrate(md.MuData({"gex": rna}), progress=False, **FAST)
        return
    before = (dict(rna.obsm), dict(atac.obsm), rna.obs.columns.tolist(), dict(rna.uns))
    with pytest.raises(ValueError, match=match):
        tl.integrate(rna=rna, atac=atac, progress=False, **FAST)
    assert (dict(rna.obsm), dict(atac.obsm), rna.obs.columns.tolist(), dict(rna.uns)) == before


def test_paired_modalities_reorders_and_top_accessible():
    rna, atac = _paired(n=20)
    r, a = paired_modalities(rna=rna, atac=atac[::-1])
    assert list(a.obs_names) == list(r.obs_names)
    x = sp.csr_matrix(np.array([[1, 0, 1], [1, 0, 0], [1, 1, 0]]))
    assert list(top_accessible(x, 2)) == [0, 1] or list(top_accessible(x, 2)) == [0, 2]
    mod = Modality.fit(x, None, "accessible")
    np.testing.assert_allclose(mod.size_factor, np.array([2, 1, 2]) / 2)


def test_foscttm_and_top1_match():
    z = np.random.default_rng(0).normal(size=(50, 4))
    assert metrics.foscttm(z, z) == 0 and metrics.top1_match(z, z) == 1
    rev = z[::-1]
    assert metrics.foscttm(z, rev) > 0.3 and metrics.top1_match(z, rev) < 0.1


def test_cli_integrate_writes_mudata_and_report_and_refuses_bad_input(tmp_path, capsys):
    import hashlib

    from omics_cl.cli import main

    rna, atac = _paired()
    rna.write_h5ad(tmp_path / "rna.h5ad")
    atac[::-1].copy().write_h5ad(tmp_path / "atac.h5ad")
    digest = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.glob("*.h5ad")}
    out = tmp_path / "out.h5mu"
    code = main(["integrate", "--rna", str(tmp_path / "rna.h5ad"), "--atac", str(tmp_path / "atac.h5ad"),
                 "--out", str(out), "--n-clusters", "2", "--label-key", "cell_type", "--report",
                 str(tmp_path / "report"), "--epochs", "1", "--n-top-peaks", "300", "--no-progress",
                 "--key-added", "joint"])
    assert code == 0
    result = md.read_h5mu(out)
    assert result.obsm["X_joint"].shape[0] == 160 and result.obs["joint_cluster"].nunique() == 2
    assert "X_sci2cl" not in result.obsm and result.uns["omics_cl"]["joint"]["method"] == "sci2cl"
    assert (tmp_path / "report" / "umap.png").stat().st_size > 0
    assert "| sci2cl | n_clusters | 2 |" in capsys.readouterr().out
    assert digest == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.glob("*.h5ad")}

    bad = tmp_path / "other.h5ad"
    other = atac.copy()
    other.obs_names = [f"x{i}" for i in range(other.n_obs)]
    other.write_h5ad(bad)
    out2 = tmp_path / "out2.h5mu"
    for args, message in (([ "--rna", str(tmp_path / "rna.h5ad"), "--atac", str(bad)], "do not match"),
                          (["--rna", str(tmp_path / "rna.h5ad")], "give one of --mudata, --multiome, or both"),
                          (["--mudata", str(out), "--label-key", "nope"], "'nope' not found"),
                          (["--mudata", str(out), "--key-added", "trajectory"], "another tool's record")):
        assert main(["integrate", *args, "--out", str(out2), "--epochs", "1", "--no-progress"]) == 2
        assert message in capsys.readouterr().err
        assert not out2.exists()


def test_pretraining_runs_first_and_is_recorded():
    rna, atac = _paired(n=64)
    rec = tl.integrate(rna=rna, atac=atac, seed=0, progress=False, pretrain_epochs=2, mse_weight=1.0, **FAST)
    history = rec["params"]["history"]
    assert len(history["pretrain_loss"]) == 2 and len(history["loss"]) == FAST["epochs"]
    assert set(history) >= {"pretrain_zinb_rna", "pretrain_bernoulli_atac", "moc", "mom", "mse"}
    off = tl.integrate(rna=rna, atac=atac, seed=0, progress=False, mse_weight=0.0, **FAST)["params"]["history"]
    assert "mse" not in off and "moc" in off  # mse_weight=0 switches the intra-omics views off
    zinb = tl.integrate(rna=rna, atac=atac, seed=0, progress=False, atac_likelihood="zinb", **FAST)
    assert "zinb_atac" in zinb["params"]["history"] and "bernoulli_atac" not in zinb["params"]["history"]


def test_seed_variant_joint_is_the_cross_attention_output_and_bad_fusion_is_refused():
    rna, atac = _paired(n=64)
    mdata = md.MuData({"rna": rna, "atac": atac})
    tl.integrate(mdata, variant="seed", seed=0, progress=False, **FAST)
    np.testing.assert_array_equal(mdata.obsm["X_sci2cl"], mdata.obsm["X_sci2cl_xattn"])
    assert "X_sci2cl_view_weights" not in mdata.obsm
    with pytest.raises(ValueError, match="fusion_views needs at least 2 distinct views"):
        tl.integrate(mdata, fusion_views=("pca", "pca"), progress=False, **FAST)
    with pytest.raises(ValueError, match="fusion must be one of"):
        tl.integrate(mdata, fusion="mean", progress=False, **FAST)


def test_default_fusion_weights_every_cell_alike_and_bad_weights_are_refused():
    rna, atac = _paired(n=64)
    mdata = md.MuData({"rna": rna, "atac": atac})
    tl.integrate(mdata, seed=0, progress=False, **FAST)  # default: 0.8 on the PCA view, 0.2 on Z_r, every cell
    np.testing.assert_allclose(mdata.obsm["X_sci2cl_view_weights"], np.tile([0.8, 0.2], (64, 1)), rtol=1e-6)
    pca, z_rna = (mdata.obsm[f"X_sci2cl_{v}"] for v in ("pca", "rna"))
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(mdata.obsm["X_sci2cl"], np.hstack([np.sqrt(0.8) * unit(pca), np.sqrt(0.2) * unit(z_rna)]),
                               rtol=1e-5, atol=1e-6)
    tl.integrate(mdata, fusion_weights={"pca": 1.0, "rna": 3.0}, seed=0, progress=False, **FAST)
    np.testing.assert_allclose(mdata.obsm["X_sci2cl_view_weights"], np.tile([0.25, 0.75], (64, 1)), rtol=1e-6)
    tl.integrate(mdata, fusion_shrinkage=0.0, seed=0, progress=False, **FAST)  # the WNN weights: per cell
    assert np.ptp(mdata.obsm["X_sci2cl_view_weights"][:, 0]) > 0.01
    for bad in ({"pca": 1.0}, {"pca": 1.0, "rna": -1.0}, {"pca": 0.0, "rna": 0.0}, {"pca": 1, "rna": 1, "lsi": 1}):
        with pytest.raises(ValueError, match="fusion_weights"):
            tl.integrate(mdata, fusion_weights=bad, progress=False, **FAST)
    with pytest.raises(ValueError, match="fusion_weights"):  # a third view needs its weight
        tl.integrate(mdata, fusion_views=("pca", "rna", "atac"), progress=False, **FAST)
    tl.integrate(mdata, fusion_views=("pca", "rna", "atac"), fusion_weights=None, seed=0, progress=False, **FAST)
    np.testing.assert_allclose(mdata.obsm["X_sci2cl_view_weights"], 1 / 3, rtol=1e-6)
