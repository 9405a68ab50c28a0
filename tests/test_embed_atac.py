"""tl.embed_atac: LSI of the peaks, and a saved transfer model's learned latent (synthetic data)."""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score
from test_save_load import FAST, synthetic

from omics_cl import tl


@pytest.fixture(scope="module")
def data():
    return synthetic(seed=3)


def test_lsi_only_writes_lsi_and_record(data):
    _, atac, _ = data
    out = atac.copy()
    record = tl.embed_atac(out, n_components=8)
    assert out.obsm["X_lsi"].shape[0] == out.n_obs and out.obsm["X_lsi"].shape[1] in (7, 8)
    assert record["learned"] is None and out.uns["omics_cl"]["embed_atac"]["n_components"] == 8
    assert list(out.obs.columns) == list(atac.obs.columns)  # nothing else written
    tl.cluster_embedding(out, "X_lsi", n_clusters=3)
    # the three synthetic types have their own peaks: LSI separates them
    assert adjusted_rand_score(out.obs["cell_type"], out.obs["lsi_cluster"]) > 0.8


def test_model_latent_is_the_transfer_latent_and_writes_no_labels(data, tmp_path):
    rna, atac, activity = data
    transferred = atac.copy()
    tl.transfer_labels(rna.copy(), transferred, "cell_type", gene_activity=activity, save_model=tmp_path / "m",
                       **FAST)
    out = atac.copy()
    record = tl.embed_atac(out, model=tmp_path / "m", gene_activity=activity)
    assert record["learned"] == "X_scncl"
    assert np.array_equal(out.obsm["X_scncl"], transferred.obsm["X_scncl"])
    assert "omics_cl_label" not in out.obs and "scncl" not in out.uns["omics_cl"]


def test_bad_input_refused_before_anything_is_written(data, tmp_path):
    _, atac, _ = data
    out = atac.copy()
    for bad_count in (0, True, 2.0):
        with pytest.raises(ValueError, match="n_components must be a positive integer"):
            tl.embed_atac(out, n_components=bad_count)
    for bad_scale in (0, -1.0, float("nan"), "10"):
        with pytest.raises(ValueError, match="tfidf_scale must be None or a positive number"):
            tl.embed_atac(out, tfidf_scale=bad_scale)
    with pytest.raises(ValueError, match="gene activity"):
        tl.embed_atac(out, model=tmp_path / "missing")
    bad = atac.copy()
    bad.X = bad.X.copy()
    bad.X.data[0] = -1
    with pytest.raises(ValueError):
        tl.embed_atac(bad)
    empty = atac.copy()
    empty.X = sp.csr_matrix(empty.shape, dtype=np.float32)
    with pytest.raises(ValueError, match="hold no count at all"):
        tl.embed_atac(empty)
    one = atac[:1].copy()
    with pytest.raises(ValueError, match="LSI needs at least 2 cells and 2 peaks, got 1 x"):
        tl.embed_atac(one)
    assert "X_lsi" not in out.obsm and "omics_cl" not in out.uns
    assert "X_lsi" not in empty.obsm and "omics_cl" not in empty.uns and "X_lsi" not in one.obsm


def test_cells_without_counts_are_warned_about_and_counted(data):
    _, atac, _ = data
    out = atac.copy()
    x = out.X.tolil()
    x[:4] = 0
    out.X = x.tocsr()
    with pytest.warns(UserWarning, match="4 of .* cells have no ATAC count"):
        record = tl.embed_atac(out, n_components=8)
    assert record["n_cells_without_counts"] == 4
    assert np.isfinite(out.obsm["X_lsi"]).all() and np.ptp(out.obsm["X_lsi"][:4], axis=0).max() < 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tl.embed_atac(atac.copy(), n_components=8)["n_cells_without_counts"] == 0
