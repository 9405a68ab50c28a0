"""Saved transfer models: save, load, map a query without retraining (synthetic data, a few epochs)."""
import json

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from flax import nnx

from omics_cl import tl
from omics_cl.cli import main
from omics_cl.core import saved_model
from omics_cl.core.layers import MLP
from omics_cl.data import lsi

FAST = {"epochs": 3, "hidden": 32, "n_top_genes": 50, "progress": False}
OUTPUTS = ("omics_cl_label", "omics_cl_confidence", "omics_cl_novelty", "omics_cl_is_novel")


def synthetic(seed=0, n_ref=300, n_query=240, n_genes=80, n_peaks=400):
    """RNA reference, ATAC query and its gene activity of three cell types, each with its own marker genes
    and accessible peaks."""
    rng = np.random.default_rng(seed)
    gene_prog, peak_prog = np.full((3, n_genes), 0.3), np.full((3, n_peaks), 0.05)
    for t in range(3):
        gene_prog[t, rng.choice(n_genes, 15, replace=False)] = 3.0
        peak_prog[t, rng.choice(n_peaks, 60, replace=False)] = 0.8
    ref_t, query_t = rng.integers(0, 3, n_ref), rng.integers(0, 3, n_query)
    genes = [f"g{i}" for i in range(n_genes)]

    def adata(x, prefix, var_names):
        out = ad.AnnData(sp.csr_matrix(rng.poisson(x).astype(np.float32)))
        out.obs_names, out.var_names = [f"{prefix}{i}" for i in range(len(x))], var_names
        return out

    rna = adata(gene_prog[ref_t], "r", genes)
    rna.obs["cell_type"] = np.array(["A", "B", "C"])[ref_t]
    atac = adata(peak_prog[query_t], "q", [f"chr1:{i * 1000}-{i * 1000 + 500}" for i in range(n_peaks)])
    atac.obs["cell_type"] = np.array(["A", "B", "C"])[query_t]  # for scoring only
    activity = adata(0.5 * gene_prog[query_t], "q", genes)
    return rna, atac, activity


@pytest.fixture(scope="module")
def data():
    return synthetic()


def _train(data, path, **params):
    rna, atac, activity = data
    query = atac.copy()
    tl.transfer_labels(rna.copy(), query, "cell_type", gene_activity=activity, save_model=path, **{**FAST, **params})
    return query


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "scncl"
    return path, _train(data, path)


def _map(data, path, cells=None, **kw):
    _, atac, activity = data
    cells = np.arange(atac.n_obs) if cells is None else cells
    query = atac[cells].copy()
    tl.map_query(query, path, gene_activity=activity[cells].copy(), **kw)
    return query


def _assert_same(a, b):
    assert ("omics_cl_query_cluster" in a.obs) == ("omics_cl_query_cluster" in b.obs)
    for key in (*OUTPUTS, *[k for k in ("omics_cl_query_cluster",) if k in a.obs]):
        assert np.array_equal(a.obs[key].to_numpy(), b.obs[key].to_numpy()), key
    assert np.array_equal(a.obsm["X_scncl"], b.obsm["X_scncl"])
    assert np.array_equal(a.obsm["scncl_probabilities"], b.obsm["scncl_probabilities"])
    assert np.array_equal(a.obsm["scncl_lsi"], b.obsm["scncl_lsi"])


def test_saved_model_maps_its_training_query_bit_for_bit(data, trained):
    path, original = trained
    assert {p.name for p in path.iterdir()} == {"params.msgpack", "model.json", "arrays.npz"}
    meta = json.loads((path / "model.json").read_text())
    assert meta["method"] == "scncl" and meta["config"]["hidden"] == 32 and meta["train"]["epochs"] == 3
    assert sorted(meta["classes"]) == ["A", "B", "C"] and "checkpoint_path" not in meta["train"]
    with np.load(path / "arrays.npz", allow_pickle=False) as arrays:
        assert arrays["genes"].shape == (50,) and arrays["reference_embedding"].shape == (300, 64 * 3)
        assert arrays["class_signatures"].shape == (3, 50)  # the novelty's label support
    mapped = _map(data, path)
    _assert_same(original, mapped)
    record = mapped.uns["omics_cl"]["scncl"]
    assert record["novelty_threshold"] == original.uns["omics_cl"]["scncl"]["novelty_threshold"]
    assert record["n_missing_genes"] == 0 and mapped.uns["omics_cl"]["transfer_method"] == "scncl"


def test_model_without_its_class_signatures_is_refused(data, tmp_path):
    """A config asking for label support on a model saved without class signatures fails before any mapping."""
    _train(data, tmp_path / "m", novelty_support=False, support_weight=0.0, epochs=1)
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["config"]["novelty_support"] = True
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="class signatures"):
        _map(data, tmp_path / "m")


def test_seed_variant_also_maps_bit_for_bit(data, tmp_path):
    original = _train(data, tmp_path / "m", variant="seed")
    _assert_same(original, _map(data, tmp_path / "m"))


def test_permuted_query_maps_consistently(data, trained):
    """The encoder and the reference vote are per cell: the latent rows are the same; the LSI, peak-space
    classifier and Leiden clusters are refitted to the permuted query, so probabilities and cluster novelty
    move a little."""
    path, original = trained
    perm = np.random.default_rng(1).permutation(original.n_obs)
    back = _map(data, path, perm)[original.obs_names]
    assert np.allclose(back.obsm["X_scncl"], original.obsm["X_scncl"], rtol=1e-5, atol=1e-6)
    for key in ("omics_cl_label", "omics_cl_is_novel"):
        assert np.mean(back.obs[key].to_numpy() == original.obs[key].to_numpy()) >= 0.95, key


def test_per_cell_outputs_are_equivariant_under_permutation_and_subset(data, tmp_path):
    """Without the query-fitted parts (peak_weight=0, the support weight standardised over the query, per-cell novelty
    without the query-ranked label support, the model's threshold) every output of a cell depends on that cell
    alone."""
    original = _train(data, tmp_path / "m", peak_weight=0.0, novelty_by="cell", novelty_support=False,
                      support_weight=0.0)
    for cells in (np.random.default_rng(2).permutation(original.n_obs), np.arange(original.n_obs)[::-7]):
        back = _map(data, tmp_path / "m", cells, novelty_threshold="model")
        expected = original[back.obs_names]
        for key in ("omics_cl_label", "omics_cl_is_novel"):
            assert np.array_equal(back.obs[key].to_numpy(), expected.obs[key].to_numpy()), key
        for key in ("omics_cl_confidence", "omics_cl_novelty"):
            assert np.allclose(back.obs[key], expected.obs[key], rtol=1e-5, atol=1e-6), key
        assert np.allclose(back.obsm["X_scncl"], expected.obsm["X_scncl"], rtol=1e-5, atol=1e-6)


def test_genes_are_aligned_by_name(data, trained):
    _, atac, activity = data
    path, original = trained
    shuffled = activity[:, np.random.default_rng(3).permutation(activity.n_vars)].copy()
    query = atac.copy()
    tl.map_query(query, path, gene_activity=shuffled)
    _assert_same(original, query)
    genes = np.load(path / "arrays.npz")["genes"]
    fewer = activity[:, ~activity.var_names.isin(genes[:5])].copy()
    with pytest.warns(UserWarning, match="5 of the model's 50 genes"):
        tl.map_query(query, path, gene_activity=fewer)
    assert query.uns["omics_cl"]["scncl"]["n_missing_genes"] == 5
    renamed = activity.copy()
    renamed.var_names = [f"x{i}" for i in range(activity.n_vars)]
    with pytest.raises(ValueError, match="no shared genes"):
        tl.map_query(atac.copy(), path, gene_activity=renamed)


def _copy_model(path, tmp_path):
    out = tmp_path / "copy"
    out.mkdir()
    for p in path.iterdir():
        (out / p.name).write_bytes(p.read_bytes())
    return out


def test_tiny_queries_map_or_are_refused_before_anything_is_written(data, trained):
    """A trained model maps a query of 2 cells; one cell has no LSI of its own and is refused, as is transfer
    training on a query no larger than its neighbour count."""
    path, _ = trained
    assert _map(data, path, np.arange(2)).obs["omics_cl_label"].notna().all()
    with pytest.raises(ValueError, match="query has 1 cell.*at least 2"):
        _map(data, path, np.arange(1))
    rna, atac, activity = data
    small = atac[:5].copy()
    with pytest.raises(ValueError, match="query has 5 cells.*more than n_neighbors \\(10\\)"):
        tl.transfer_labels(rna.copy(), small, "cell_type", gene_activity=activity[:5].copy(), **FAST)
    assert "omics_cl" not in small.uns and "omics_cl_label" not in small.obs


def test_loading_refuses_missing_corrupt_or_foreign_models(data, trained, tmp_path):
    path, _ = trained
    with pytest.raises(ValueError, match="no saved model at .*not a directory"):
        tl.load_transfer_model(tmp_path / "nope")
    bad = _copy_model(path, tmp_path)
    (bad / "params.msgpack").write_bytes((path / "params.msgpack").read_bytes()[:-10])
    with pytest.raises(ValueError, match="corrupt: params.msgpack does not match the sha256"):
        tl.load_transfer_model(bad)
    (bad / "params.msgpack").unlink()
    with pytest.raises(ValueError, match="incomplete: params.msgpack is missing"):
        tl.load_transfer_model(bad)
    (bad / "params.msgpack").write_bytes((path / "params.msgpack").read_bytes())
    meta = json.loads((path / "model.json").read_text())
    for change, message in (({"format_version": 99}, "format version 99; this omics_cl reads version 1"),
                            ({"job": "integrate"}, "holds a 'integrate' model"),
                            ({"method": "scgpt"}, "unknown transfer method 'scgpt'"),
                            ({"config": {**meta["config"], "hidden": 16}}, "saved parameters do not fit")):
        (bad / "model.json").write_text(json.dumps({**meta, **change}))
        with pytest.raises(ValueError, match=message):
            tl.load_transfer_model(bad)
    (bad / "model.json").write_text("{not json")
    with pytest.raises(ValueError, match="model.json is corrupt"):
        tl.load_transfer_model(bad)
    (bad / "model.json").unlink()
    with pytest.raises(ValueError, match="not a saved omics_cl model: model.json is missing"):
        tl.load_transfer_model(bad)


def test_saving_refuses_an_existing_directory_before_training(data, trained):
    rna, atac, activity = data
    path, _ = trained
    query = atac.copy()
    with pytest.raises(ValueError, match="already exists"):
        tl.transfer_labels(rna, query, "cell_type", gene_activity=activity, save_model=path, **FAST)
    assert "omics_cl_label" not in query.obs


def test_core_round_trip_and_atomic_write(tmp_path, monkeypatch):
    model = MLP([5, 4, 3], rngs=nnx.Rngs(0))
    saved_model.save_model(tmp_path / "m", model, {"note": "x"}, {"names": np.array(["a", "bc"])})
    back = saved_model.read_model(tmp_path / "m")
    assert back.meta == {"note": "x"} and back.arrays["names"].tolist() == ["a", "bc"]
    fresh = saved_model.restore(MLP([5, 4, 3], rngs=nnx.Rngs(1)), back.params)
    assert np.array_equal(fresh.out.kernel[...], model.out.kernel[...])
    with pytest.raises(ValueError, match="do not fit"):
        saved_model.restore(MLP([5, 6, 3], rngs=nnx.Rngs(1)), back.params)
    with pytest.raises(ValueError, match="Python objects"):
        saved_model.save_model(tmp_path / "o", model, {}, {"x": np.array([{}], dtype=object)})

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", fail)
    with pytest.raises(OSError, match="disk full"):
        saved_model.save_model(tmp_path / "f", model, {}, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no half-written model, no temporary left


def test_cli_transfer_save_model_then_map(data, tmp_path, capsys):
    rna, atac, activity = data
    for name, adata in (("ref", rna), ("query", atac), ("ga", activity)):
        adata.write_h5ad(tmp_path / f"{name}.h5ad")
    common = ["--atac", str(tmp_path / "query.h5ad"), "--gene-activity", str(tmp_path / "ga.h5ad")]
    rc = main(["transfer", "--rna", str(tmp_path / "ref.h5ad"), *common, "--label-key", "cell_type",
               "--out", str(tmp_path / "out.h5ad"), "--save-model", str(tmp_path / "model"), "--epochs", "2",
               "--set", "hidden=32", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    rc = main(["map", "--model", str(tmp_path / "model"), *common, "--out", str(tmp_path / "mapped.h5ad")])
    assert rc == 0, capsys.readouterr().err
    assert "threshold from query" in capsys.readouterr().out
    original, mapped = ad.read_h5ad(tmp_path / "out.h5ad"), ad.read_h5ad(tmp_path / "mapped.h5ad")
    for key in OUTPUTS:
        assert np.array_equal(original.obs[key].to_numpy(), mapped.obs[key].to_numpy()), key
    # mapped into the first run's output under --key-added: both side by side, the same labels
    rc = main(["map", "--model", str(tmp_path / "model"), "--atac", str(tmp_path / "out.h5ad"), "--gene-activity",
               str(tmp_path / "ga.h5ad"), "--key-added", "mapped", "--out", str(tmp_path / "both.h5ad")])
    assert rc == 0, capsys.readouterr().err
    both = ad.read_h5ad(tmp_path / "both.h5ad")
    assert f"{int(both.obs['mapped_is_novel'].sum())} flagged novel" in capsys.readouterr().out
    for key in OUTPUTS:
        mapped_key = key.replace("omics_cl_", "mapped_")
        assert np.array_equal(both.obs[key].to_numpy(), original.obs[key].to_numpy()), key
        assert np.array_equal(both.obs[mapped_key].to_numpy(), original.obs[key].to_numpy()), mapped_key
    assert main(["map", "--model", str(tmp_path / "nope"), *common, "--out", str(tmp_path / "x.h5ad")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no saved model at" in err and not (tmp_path / "x.h5ad").exists()


@pytest.mark.parametrize("old", [
    {"n_members": 1, "class_prior_power": 0.0, "peak_features": "lsi", "support_weight": 0.0, "novelty_support": False},
    {"support_rank_weight": 0.5}, {"vote_share": 1.0}, {"support_rank_label": "final"}])
def test_model_saved_before_newer_config_fields_maps_as_it_was_trained(data, tmp_path, old):
    """A model.json written before ``n_members``, ``class_prior_power``, ``peak_features``, ``support_weight`` and
    ``novelty_support`` existed, with the label support before ``support_rank_weight`` existed (equal ranks), or with
    the neighbour vote alone before ``vote_share`` existed, or with the support ranked for the final label before
    ``support_rank_label`` existed, is read with the values it was trained with (scncl's ``saved_defaults``), not
    with today's defaults."""
    original = _train(data, tmp_path / "m", **old)
    path = tmp_path / "m"
    meta = json.loads((path / "model.json").read_text())
    meta["config"] = {k: v for k, v in meta["config"].items() if k not in old}
    (path / "model.json").write_text(json.dumps(meta))
    _assert_same(original, _map(data, path))


def test_model_saved_before_peak_unfitted_maps_with_the_zero_rule(data, tmp_path):
    """A model.json written before ``peak_unfitted`` existed maps with the rule it was trained with (0 for a class
    the query's classifier had no training cell of). The query holds no C cell, so C has none and the rules differ."""
    rna, atac, activity = data
    cells = np.flatnonzero(atac.obs["cell_type"].to_numpy() != "C")
    without_c = (rna, atac[cells].copy(), activity[cells].copy())
    original = _train(without_c, tmp_path / "m", peak_unfitted="zero", min_vote=0.6)
    today = _train(without_c, tmp_path / "t", min_vote=0.6)
    assert not np.allclose(original.obsm["scncl_probabilities"], today.obsm["scncl_probabilities"])
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    del meta["config"]["peak_unfitted"]
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    _assert_same(original, _map(without_c, tmp_path / "m"))


def test_flag_rule_follows_the_model_or_the_query(data, tmp_path, trained):
    """``novelty_threshold="model"`` keeps the training run's threshold and rule; a model saved before the rule was
    recorded was flagged by the Otsu rule and keeps it. ``"query"`` flags this query's ``novelty_rate`` share."""
    path, original = trained
    by_model = _map(data, path, novelty_threshold="model")
    _assert_same(original, by_model)
    assert by_model.uns["omics_cl"]["scncl"]["novelty_rule"] == "rate"
    otsu = _train(data, tmp_path / "m", novelty_rate=None)
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert (meta["record"].pop("novelty_rule"), meta["record"].pop("novelty_rate")) == ("otsu", None)
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    mapped = _map(data, tmp_path / "m", novelty_threshold="model")
    _assert_same(otsu, mapped)
    assert mapped.uns["omics_cl"]["scncl"]["novelty_rule"] == "otsu"
    wider = _map(data, path, novelty_rate=0.25)
    novelty = wider.obs["omics_cl_novelty"].to_numpy()
    assert np.array_equal(wider.obs["omics_cl_is_novel"], novelty > tl.rate_threshold(novelty, 0.25))


@pytest.mark.parametrize("n_lsi, drop_key", [(7, False), (50, True)])
def test_query_lsi_follows_the_saved_model(data, tmp_path, n_lsi, drop_key):
    """The query's LSI is recomputed at the component count the model was trained with; a model.json written
    before the count was saved was trained with 50."""
    original = _train(data, tmp_path / "m", n_lsi_components=n_lsi, epochs=1)
    path = tmp_path / "m"
    meta = json.loads((path / "model.json").read_text())
    assert meta["n_lsi_components"] == n_lsi and original.uns["omics_cl"]["scncl"]["n_lsi_components"] == n_lsi
    if drop_key:
        del meta["n_lsi_components"]
        (path / "model.json").write_text(json.dumps(meta))
    _assert_same(original, _map(data, path))


@pytest.mark.parametrize("scale, drop_key", [(None, False), (3.0, False), (lsi.SIGNAC_SCALE, True)])
def test_query_tfidf_follows_the_saved_model(data, tmp_path, scale, drop_key):
    """The query's TF-IDF (its LSI and the peak classifier's features) is recomputed at the scale rule the model was
    trained with; a model.json written before the rule was saved was trained at Signac's fixed scale."""
    original = _train(data, tmp_path / "m", tfidf_scale=scale, epochs=1)
    path = tmp_path / "m"
    meta = json.loads((path / "model.json").read_text())
    used = original.uns["omics_cl"]["scncl"]["lsi"]["tfidf_scale"]
    assert meta["tfidf_scale"] == scale and (used == scale if scale else used != lsi.SIGNAC_SCALE)
    if drop_key:
        del meta["tfidf_scale"]
        (path / "model.json").write_text(json.dumps(meta))
    _assert_same(original, _map(data, path))


@pytest.mark.parametrize("scale_lsi, drop_key", [(False, False), (True, False), (True, True)])
def test_query_lsi_scaling_follows_the_saved_model(data, tmp_path, scale_lsi, drop_key):
    """The query's LSI components are standardised or not as the model was trained (the record says which; the
    outputs do not depend on it when mapping, as the LSI reaches them only through the standardised features of the
    peak classifier); a model.json written before the choice was saved was trained on standardised components."""
    original = _train(data, tmp_path / "m", scale_lsi=scale_lsi, epochs=1)
    path = tmp_path / "m"
    meta = json.loads((path / "model.json").read_text())
    assert meta["scale_lsi"] is scale_lsi and original.uns["omics_cl"]["scncl"]["lsi"]["standardized"] is scale_lsi
    # the query's LSI, as the transfer computed it, is written for the annotation check's neighbours
    expected, _ = lsi.lsi(data[1].X, meta["n_lsi_components"], seed=0, tfidf_scale=None, standardize=scale_lsi)
    assert np.allclose(original.obsm["scncl_lsi"], expected, atol=1e-5)
    if drop_key:
        del meta["scale_lsi"]
        (path / "model.json").write_text(json.dumps(meta))
    mapped = _map(data, path)
    _assert_same(original, mapped)
    assert mapped.uns["omics_cl"]["scncl"]["lsi"]["standardized"] is scale_lsi


@pytest.mark.parametrize("setting, bad", [*[("n_lsi_components", v) for v in (0, -3, 2.5, True, "20")],
                                          *[("tfidf_scale", v) for v in (0, -1.0, float("nan"), float("inf"), True,
                                                                         "10")],
                                          *[("scale_lsi", v) for v in (None, 1, "yes")]])
def test_bad_query_lsi_setting_fails_before_training(data, setting, bad):
    rna, atac, activity = data
    query = atac.copy()
    with pytest.raises(ValueError, match=setting):
        tl.transfer_labels(rna.copy(), query, "cell_type", gene_activity=activity, **{setting: bad}, **FAST)
    assert "omics_cl_label" not in query.obs
