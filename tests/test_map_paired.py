"""Saved integration models: save, load, embed new paired cells without retraining (synthetic data, 2 epochs)."""
import hashlib
import json

import anndata as ad
import mudata as md
import numpy as np
import pytest
import scipy.sparse as sp

from omics_cl import tl
from omics_cl.cli import main

# small and fast; a cross-attention context smaller than the 160 cells
PARAMS = {"hidden": (32,), "latent": 8, "epochs": 2, "batch_size": 64, "n_top_peaks": 300, "context_size": 64,
          "progress": False}
PER_CELL = ("X_sci2cl_rna", "X_sci2cl_atac", "X_sci2cl_xattn")
JOINT = ("X_sci2cl", "X_sci2cl_pca", "X_sci2cl_view_weights")


def _paired(n=160, genes=60, peaks=400):
    """Two groups of cells: negative-binomial RNA counts, sparse ATAC counts (like tests/test_sci2cl.py)."""
    rng = np.random.default_rng(0)
    group = np.repeat([0, 1], n // 2)
    x = rng.poisson(rng.gamma(5.0, rng.gamma(2.0, 1.0, size=(2, genes))[group] / 5.0)).astype(np.float32)
    y = (rng.random((n, peaks)) < rng.uniform(0.01, 0.2, size=(2, peaks))[group]).astype(np.float32)
    x[:, 0] += 1
    y[:, 0] += 1
    rna, atac = ad.AnnData(sp.csr_matrix(x)), ad.AnnData(sp.csr_matrix(y))
    rna.obs_names = atac.obs_names = [f"c{i}" for i in range(n)]
    rna.var_names = [f"g{i}" for i in range(genes)]
    atac.var_names = [f"chr1:{100 * i}-{100 * i + 50}" for i in range(peaks)]
    return rna, atac


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    rna, atac = _paired()
    path = tmp_path_factory.mktemp("models") / "sci2cl"
    mdata = md.MuData({"rna": rna, "atac": atac})
    tl.integrate(mdata, seed=0, save_model=path, **PARAMS)
    return path, mdata


def _map(path, rna=None, **kw):
    default_rna, atac = _paired()
    mdata = md.MuData({"rna": default_rna if rna is None else rna, "atac": atac})
    tl.map_paired(mdata, path, **kw)
    return mdata


def test_saving_keeps_the_run_and_writes_what_mapping_needs(trained):
    path, original = trained
    rna, atac = _paired()
    plain = md.MuData({"rna": rna, "atac": atac})
    tl.integrate(plain, seed=0, **PARAMS)
    for key in (*PER_CELL, *JOINT):
        assert np.array_equal(plain.obsm[key], original.obsm[key]), key
    assert {p.name for p in path.iterdir()} == {"params.msgpack", "model.json", "arrays.npz"}
    meta = json.loads((path / "model.json").read_text())
    assert (meta["job"], meta["method"], meta["seed"], meta["config"]["context_size"]) == ("integrate", "sci2cl", 0, 64)
    with np.load(path / "arrays.npz", allow_pickle=False) as arrays:
        assert arrays["genes"].tolist() == [f"g{i}" for i in range(60)] and arrays["peaks"].shape == (300,)
        assert arrays["context_rna"].shape == arrays["context_atac"].shape == (64, 8)
        assert arrays["pca_components"].shape == (50, 60) and arrays["pca_scale"].shape == (60,)


def test_saving_fits_the_pca_once_and_saves_that_fit(tmp_path, monkeypatch):
    from omics_cl.data import components

    fits = []

    def counted(x, *args, **kwargs):
        fits.append((x.copy(), kwargs))
        return fit_principal_components(x, *args, **kwargs)

    fit_principal_components = components.fit_principal_components
    monkeypatch.setattr(components, "fit_principal_components", counted)
    rna, atac = _paired()
    mdata = md.MuData({"rna": rna, "atac": atac})
    tl.integrate(mdata, seed=0, save_model=tmp_path / "m", **PARAMS)
    assert len(fits) == 1  # embed's fit is the one saved, not fitted again for the model
    x, kwargs = fits[0]
    np.testing.assert_allclose(kwargs["covariate"], np.log1p(np.asarray(rna.X.sum(1), np.float64).ravel()))  # depth
    pcs, projection = fit_principal_components(x, 50, 0, True, **kwargs)
    np.testing.assert_array_equal(mdata.obsm["X_sci2cl_pca"], pcs)
    with np.load(tmp_path / "m" / "arrays.npz", allow_pickle=False) as arrays:
        for key, value in projection.arrays("pca_").items():
            np.testing.assert_array_equal(arrays[key], value)


def test_mapping_the_training_cells_reproduces_the_run(trained):
    """Z_r, Z_a and the cross-attention output bit for bit. The PCA view is projected onto the saved loadings,
    which equals the fitted PCA up to float32 rounding, so the fused embedding and weights agree to a tolerance;
    refitting the PCA on the same cells reproduces every output bit for bit."""
    path, original = trained
    projected = _map(path)
    for key in PER_CELL:
        assert np.array_equal(projected.obsm[key], original.obsm[key]), key
    scale = np.abs(original.obsm["X_sci2cl_pca"]).max()
    np.testing.assert_allclose(projected.obsm["X_sci2cl_pca"], original.obsm["X_sci2cl_pca"], atol=1e-5 * scale)
    np.testing.assert_allclose(projected.obsm["X_sci2cl"], original.obsm["X_sci2cl"], atol=1e-4)
    np.testing.assert_allclose(projected.obsm["X_sci2cl_view_weights"], original.obsm["X_sci2cl_view_weights"],
                               atol=1e-4)
    record = projected.uns["omics_cl"]["sci2cl"]
    assert (record["pca"], record["n_missing_genes"], record["n_missing_peaks"]) == ("project", 0, 0)
    refitted = _map(path, pca="refit")
    for key in (*PER_CELL, *JOINT):
        assert np.array_equal(refitted.obsm[key], original.obsm[key]), key
    assert np.array_equal(refitted.obs["sci2cl_cluster"].to_numpy(), original.obs["sci2cl_cluster"].to_numpy())


def test_mapped_cells_go_under_a_key_beside_their_own_run(trained):
    path, original = trained
    mdata = original.copy()
    tl.map_paired(mdata, path, key_added="mapped", pca="refit")
    for key in (*PER_CELL, *JOINT):  # the run's own results stay; the mapping is the same arrays under the key
        assert np.array_equal(mdata.obsm[key], original.obsm[key]), key
        assert np.array_equal(mdata.obsm[key.replace("sci2cl", "mapped")], original.obsm[key]), key
    assert sorted(mdata.uns["omics_cl"]) == ["mapped", "sci2cl"] and "mapped_cluster" in mdata.obs
    assert mdata.uns["omics_cl"]["mapped"]["mapped_with"] == str(path.resolve())
    with pytest.raises(ValueError, match="another tool's record"):
        tl.map_paired(mdata, path, key_added="subclusters")


def test_new_cells_are_embedded_per_cell_against_the_saved_context(trained):
    """A subset of the cells, ATAC in another order, given as two AnnData: Z_r, Z_a, the cross-attention output
    and the projected PCA view of each cell are its rows of the original run (to float32 rounding: the batch
    shapes differ)."""
    path, original = trained
    rna, atac = _paired()
    cells = np.random.default_rng(0).permutation(160)[:90]
    rna, atac = rna[cells].copy(), atac[cells[::-1]].copy()
    tl.map_paired(rna=rna, atac=atac, model_dir=path, n_clusters=2)
    expected = original[rna.obs_names]
    for key in PER_CELL:
        np.testing.assert_allclose(rna.obsm[key], expected.obsm[key], rtol=1e-5, atol=1e-6)
    scale = np.abs(original.obsm["X_sci2cl_pca"]).max()
    np.testing.assert_allclose(rna.obsm["X_sci2cl_pca"], expected.obsm["X_sci2cl_pca"], atol=1e-5 * scale)
    order = atac.obs_names.get_indexer(rna.obs_names)
    assert np.array_equal(atac.obsm["X_sci2cl"][order], rna.obsm["X_sci2cl"])
    assert rna.obs["sci2cl_cluster"].nunique() == 2 and rna.uns["omics_cl"]["sci2cl"]["n_clusters"] == 2


def test_features_are_aligned_by_name(trained):
    path, original = trained
    rna, atac = _paired()
    genes = np.random.default_rng(1).permutation(rna.n_vars)
    peaks = np.random.default_rng(2).permutation(atac.n_vars)
    shuffled = md.MuData({"rna": rna[:, genes].copy(), "atac": atac[:, peaks].copy()})
    tl.map_paired(shuffled, path, pca="refit")
    for key in (*PER_CELL, *JOINT):
        assert np.array_equal(shuffled.obsm[key], original.obsm[key]), key
    saved_genes = np.load(path / "arrays.npz")["genes"]
    with pytest.warns(UserWarning, match="5 of the model's 60 genes are not in the RNA data"):
        fewer = _map(path, rna[:, ~rna.var_names.isin(saved_genes[:5])].copy())
    assert fewer.uns["omics_cl"]["sci2cl"]["n_missing_genes"] == 5 and fewer.obsm["X_sci2cl"].shape[0] == 160
    renamed = atac.copy()
    renamed.var_names = [f"chr2:{i}-{i + 9}" for i in range(atac.n_vars)]
    with pytest.raises(ValueError, match="ATAC: no shared peaks"):
        tl.map_paired(rna=rna.copy(), atac=renamed, model_dir=path)
    assert "X_sci2cl" not in renamed.obsm


def test_cross_attention_model_maps_bit_for_bit(tmp_path):
    rna, atac = _paired(n=64)
    original = md.MuData({"rna": rna, "atac": atac})
    tl.integrate(original, variant="seed", seed=3, save_model=tmp_path / "m", **PARAMS)
    assert not any(k.startswith("pca_") for k in np.load(tmp_path / "m" / "arrays.npz").files)
    mapped = md.MuData({"rna": rna.copy(), "atac": atac.copy()})
    tl.map_paired(mapped, tmp_path / "m")
    keys = {k for k in original.obsm if k.startswith("X_")}
    assert keys == {k for k in mapped.obsm if k.startswith("X_")} == {"X_sci2cl", *PER_CELL}
    for key in keys:
        assert np.array_equal(mapped.obsm[key], original.obsm[key]), key
    assert np.array_equal(mapped.obs["sci2cl_cluster"].to_numpy(), original.obs["sci2cl_cluster"].to_numpy())


def test_loading_refuses_missing_corrupt_foreign_or_incomplete_models(trained, tmp_path):
    path, _ = trained
    with pytest.raises(ValueError, match="no saved model at .*not a directory"):
        tl.load_integration_model(tmp_path / "nope")
    bad = tmp_path / "copy"
    bad.mkdir()
    for p in path.iterdir():
        (bad / p.name).write_bytes(p.read_bytes())
    (bad / "params.msgpack").write_bytes(b"x" + (path / "params.msgpack").read_bytes())
    with pytest.raises(ValueError, match="corrupt: params.msgpack does not match the sha256"):
        tl.load_integration_model(bad)
    (bad / "params.msgpack").write_bytes((path / "params.msgpack").read_bytes())
    meta = json.loads((path / "model.json").read_text())
    for change, message in (({"job": "transfer"}, "holds a 'transfer' model"),
                            ({"config": {**meta["config"], "latent": 4}}, "saved parameters do not fit")):
        (bad / "model.json").write_text(json.dumps({**meta, **change}))
        with pytest.raises(ValueError, match=message):
            tl.load_integration_model(bad)
    with np.load(path / "arrays.npz") as npz:
        np.savez(bad / "arrays.npz", **{k: npz[k] for k in npz.files if not k.startswith("context")})
    meta["files"]["arrays.npz"] = hashlib.sha256((bad / "arrays.npz").read_bytes()).hexdigest()
    (bad / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"cannot map new cells: it lacks \['context_atac', 'context_rna'\]"):
        tl.load_integration_model(bad)
    with pytest.raises(ValueError, match="pca must be one of"):
        tl.map_paired(md.MuData({"rna": _paired()[0]}), path, pca="ingest")
    rna, atac = _paired(n=40)
    with pytest.raises(ValueError, match="already exists"):
        tl.integrate(rna=rna, atac=atac, save_model=path, **PARAMS)
    assert "X_sci2cl" not in rna.obsm


def test_cli_integrate_save_model_then_map(tmp_path, capsys):
    rna, atac = _paired()
    rna.write_h5ad(tmp_path / "rna.h5ad")
    atac.write_h5ad(tmp_path / "atac.h5ad")
    pair = ["--rna", str(tmp_path / "rna.h5ad"), "--atac", str(tmp_path / "atac.h5ad")]
    rc = main(["integrate", *pair, "--out", str(tmp_path / "out.h5mu"), "--save-model", str(tmp_path / "model"),
               "--epochs", "1", "--n-top-peaks", "300", "--set", "hidden=[32]", "--set", "latent=8", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    rc = main(["map", "--model", str(tmp_path / "model"), *pair, "--out", str(tmp_path / "mapped.h5mu"),
               "--pca", "refit"])
    assert rc == 0, capsys.readouterr().err
    assert "160 paired cells embedded with the model" in capsys.readouterr().out
    original, mapped = md.read_h5mu(tmp_path / "out.h5mu"), md.read_h5mu(tmp_path / "mapped.h5mu")
    for key in (*PER_CELL, *JOINT):
        assert np.array_equal(original.obsm[key], mapped.obsm[key]), key
    # mapped into the first run's output under --key-added: both side by side, the same arrays
    rc = main(["map", "--model", str(tmp_path / "model"), "--mudata", str(tmp_path / "out.h5mu"), "--pca", "refit",
               "--key-added", "mapped", "--out", str(tmp_path / "both.h5mu")])
    assert rc == 0, capsys.readouterr().err
    assert "embedding obsm['X_mapped'], clusters obs['mapped_cluster']" in capsys.readouterr().out
    both = md.read_h5mu(tmp_path / "both.h5mu")
    assert np.array_equal(both.obsm["X_mapped"], original.obsm["X_sci2cl"])
    assert np.array_equal(both.obsm["X_sci2cl"], original.obsm["X_sci2cl"]) and "mapped" in both.uns["omics_cl"]
    for args, message in ((["--annotation", "genes.gtf"], "--annotation do not apply to the integrate model"),
                          ([], "give one of --mudata, --multiome, or both --rna and --atac")):
        extra = args + ([] if not args else pair)
        assert main(["map", "--model", str(tmp_path / "model"), *extra, "--out", str(tmp_path / "x.h5mu")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and not (tmp_path / "x.h5mu").exists()


def test_model_saved_before_later_fields_maps_as_trained(tmp_path):
    """A model.json without ``fusion_shrinkage``, ``fusion_weights``, ``pca_regress_depth`` and ``atac_likelihood``
    (saved before they existed) fuses with the WNN weights, the PCA view and the ATAC model it was trained with
    (sci2cl's ``saved_defaults``: 0, None, False, "zinb"), not today's."""
    rna, atac = _paired()
    mdata = md.MuData({"rna": rna, "atac": atac})
    tl.integrate(mdata, seed=0, save_model=tmp_path / "m",
                 **{**PARAMS, "fusion_shrinkage": 0.0, "fusion_weights": None, "pca_regress_depth": False,
                    "atac_likelihood": "zinb"})
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    for name in ("fusion_shrinkage", "fusion_weights", "pca_regress_depth", "atac_likelihood"):
        del meta["config"][name]
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    mapped = _map(tmp_path / "m", pca="refit")
    assert np.array_equal(mapped.obsm["X_sci2cl"], mdata.obsm["X_sci2cl"])
