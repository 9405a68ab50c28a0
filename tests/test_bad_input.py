import hashlib

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import FAST

from omics_cl import cli, tl
from omics_cl.checks import check_positive_int


def _cluster(a, **kw):
    tl.cluster(a, method="cae", progress=False, **{**FAST, **kw})


def _no_results(a):
    return "X_cae" not in a.obsm and "cae_cluster" not in a.obs and "omics_cl" not in a.uns


def test_log_normalised_data_refused(counts_adata):
    a = counts_adata.copy()
    a.X = a.X.astype(np.float32)
    a.X.data = np.log1p(a.X.data)
    with pytest.raises(ValueError, match="non-integer values"):
        _cluster(a)
    assert _no_results(a)


def test_negative_values_refused(counts_adata):
    a = counts_adata.copy()
    a.X = a.X.toarray().astype(np.float32) - 1.0
    with pytest.raises(ValueError, match="negative values"):
        _cluster(a)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_refused(counts_adata, bad):
    a = counts_adata.copy()
    a.X = a.X.astype(np.float32)
    a.X.data[5] = bad
    with pytest.raises(ValueError, match="NaN/inf"):
        _cluster(a)
    assert _no_results(a)


def test_zero_count_cells_refused_with_count(counts_adata):
    a = counts_adata.copy()
    x = a.X.toarray()
    x[[3, 7]] = 0
    a.X = sp.csr_matrix(x)
    with pytest.raises(ValueError, match="2 of 300 cells have zero total counts"):
        _cluster(a)
    assert _no_results(a)


def test_empty_anndata_refused():
    with pytest.raises(ValueError, match="empty"):
        _cluster(ad.AnnData(np.zeros((0, 5), dtype=np.float32)))


def test_missing_layer_refused(counts_adata):
    with pytest.raises(ValueError, match="layer 'counts' not found"):
        _cluster(counts_adata, layer="counts")


def test_counts_from_layer_are_used(counts_adata):
    a = counts_adata.copy()
    a.layers["counts"] = a.X.copy()
    a.X = sp.csr_matrix(np.log1p(a.X.toarray()))
    _cluster(a, layer="counts")
    assert a.obsm["X_cae_latent"].shape == (300, 16)


def test_bad_n_clusters_and_method(counts_adata):
    with pytest.raises(ValueError, match="n_clusters"):
        tl.cluster(counts_adata, method="pca", n_clusters=0, progress=False)
    with pytest.raises(ValueError, match="unknown cluster method"):
        tl.cluster(counts_adata, method="nope", progress=False)


@pytest.mark.parametrize("bad", [0, 1, -3, 2.5, "10", True])
def test_feature_counts_below_two_refused_before_any_work(counts_adata, bad):
    """Once these died inside scanpy / scikit-learn (0, 1, True), in Python (2.5, "10") or went through (-3)."""
    a = counts_adata.copy()
    with pytest.raises(ValueError, match="n_top_genes must be None \\(all\\) or an integer of at least 2"):
        tl.cluster(a, method="pca", n_top_genes=bad, progress=False)
    with pytest.raises(ValueError, match="n_top_genes must be None"):
        tl.transfer_labels(a, a.copy(), "group", n_top_genes=bad, progress=False)
    with pytest.raises(ValueError, match="n_top_peaks must be None"):
        tl.integrate(rna=a, atac=a.copy(), n_top_peaks=bad, progress=False)
    assert "omics_cl" not in a.uns and "pca_cluster" not in a.obs


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_missing_label_key_writes_nothing(counts_adata, tmp_path, capsys):
    src, out = tmp_path / "in.h5ad", tmp_path / "out.h5ad"
    counts_adata.write_h5ad(src)
    before = _sha(src)
    code = cli.main(["cluster", str(src), "--method", "pca", "--out", str(out), "--label-key", "cell_type"])
    assert code == 2 and "label key 'cell_type' not in obs" in capsys.readouterr().err
    assert not out.exists() and _sha(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5ad"]  # no temporary left behind


def test_cli_non_count_input_writes_nothing(counts_adata, tmp_path, capsys):
    a = counts_adata.copy()
    a.X = a.X * 0.5
    src, out = tmp_path / "in.h5ad", tmp_path / "out.h5ad"
    a.write_h5ad(src)
    before = _sha(src)
    assert cli.main(["cluster", str(src), "--method", "pca", "--out", str(out)]) == 2
    assert "non-integer" in capsys.readouterr().err
    assert not out.exists() and _sha(src) == before


def test_cli_refuses_to_overwrite_input(counts_adata, tmp_path, capsys):
    src = tmp_path / "in.h5ad"
    counts_adata.write_h5ad(src)
    before = _sha(src)
    assert cli.main(["cluster", str(src), "--method", "pca", "--out", str(src)]) == 2
    assert "never overwrites its input" in capsys.readouterr().err and _sha(src) == before


@pytest.mark.parametrize("command", ["cluster", "transfer", "integrate"])
def test_cli_truncated_input_is_one_line_error(counts_adata, tmp_path, capsys, command):
    """A truncated .h5ad ends the CLI with one error line naming the file (exit 2), not a traceback."""
    whole, broken, out = tmp_path / "whole.h5ad", tmp_path / "broken.h5ad", tmp_path / "out.h5ad"
    counts_adata.write_h5ad(whole)
    broken.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    args = {"cluster": [str(broken), "--method", "pca"],
            "transfer": ["--rna", str(whole), "--atac", str(broken), "--label-key", "group",
                         "--annotation", str(whole)],
            "integrate": ["--rna", str(whole), "--atac", str(broken)]}[command]
    before = _sha(broken)
    assert cli.main([command, *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot read {broken}" in err[0]
    assert not out.exists() and _sha(broken) == before


@pytest.mark.parametrize("value", [0, -3, True, 2.0, "4", None])
def test_positive_int_check_refuses_non_counts(value):
    with pytest.raises(ValueError, match="n_things must be a positive integer"):
        check_positive_int(value, "n_things")


@pytest.mark.parametrize("value", [None, 1, np.int64(7)])
def test_positive_int_check_accepts_counts(value):
    check_positive_int(value, "n_things", allow_none=True)


def test_cells_without_hvg_counts_are_warned_about_and_counted(counts_adata):
    """Cells whose only counts are in genes the HVG selection drops get one and the same input: warned, counted."""
    x = counts_adata.X.toarray()
    x[:5] = 0
    x = np.hstack([x, np.ones((x.shape[0], 10), dtype=x.dtype)])  # constant genes: never highly variable
    a = ad.AnnData(sp.csr_matrix(x), obs=counts_adata.obs.copy())
    with pytest.warns(UserWarning, match="^5 cells have no count among the 40 selected genes"):
        record = tl.cluster(a, method="pca", n_top_genes=40, progress=False)
    assert record["n_cells_without_features"] == 5
    assert a.uns["omics_cl"]["pca"]["n_cells_without_features"] == 5
    np.testing.assert_allclose(a.obsm["X_pca"][1:5], a.obsm["X_pca"][[0] * 4], atol=1e-5)  # one input, one point
    assert tl.cluster(counts_adata, method="pca", n_top_genes=40, progress=False)["n_cells_without_features"] == 0


def test_pca_survives_arpack_failure(counts_adata, monkeypatch):
    """Cells identical over their genes give a matrix without variance, on which ARPACK stops ("starting vector is
    zero"): the PCA falls back to the covariance eigendecomposition with a warning; where ARPACK is made to fail on
    ordinary data, the fallback finds the same components up to sign."""
    import scanpy as sc
    from scipy.sparse.linalg import ArpackError

    from omics_cl.data.components import principal_components

    same = ad.AnnData(sp.csr_matrix(np.tile(counts_adata.X[:1].toarray(), (60, 1))))
    with pytest.warns(UserWarning, match="ARPACK failed"):
        tl.cluster(same, method="pca", progress=False)
    assert np.all(same.obsm["X_pca"] == 0) and same.obs["pca_cluster"].nunique() == 1
    assert any("ARPACK failed" in taken for taken in same.uns["omics_cl"]["pca"]["fallbacks"])

    x = sp.csr_matrix(np.log1p(counts_adata.X.toarray().astype(np.float32)))
    arpack = principal_components(x, 10, 0, standardize=True)
    pca = sc.pp.pca

    def failing(data, svd_solver, **kw):
        if svd_solver == "arpack":
            raise ArpackError(-9)
        return pca(data, svd_solver=svd_solver, **kw)

    monkeypatch.setattr(sc.pp, "pca", failing)
    with pytest.warns(UserWarning, match="ARPACK failed"):
        fallback = principal_components(x, 10, 0, standardize=True)
    np.testing.assert_allclose(np.abs(fallback), np.abs(arpack), atol=1e-3)
