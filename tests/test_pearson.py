"""Analytic Pearson residuals and their PCA (omics_cl.data.pearson, the ``pca_pearson`` method)."""
import anndata as ad
import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp

from omics_cl import models, tl
from omics_cl.data import counts, pearson, preprocess
from omics_cl.models.common import fused_with_pca, pca_view, pca_views
from omics_cl.models.pca import PCAConfig


def _counts(seed=0, n=400, p=60):
    """Two cell types (half the genes up 4x in type 1), each cell's depth drawn independently of its type."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 2, n)
    profile = rng.gamma(1.0, 1.0, (2, p))
    profile[1, : p // 2] *= 4
    profile /= profile.sum(1, keepdims=True)
    depth = rng.lognormal(6, 0.6, n)
    return sp.csr_matrix(rng.poisson(depth[:, None] * profile[kind]).astype(np.float32)), kind, depth


def test_residuals_match_scanpy():
    x, _, _ = _counts()
    x = x[np.asarray(x.sum(1)).ravel() > 0]
    expected = sc.experimental.pp.normalize_pearson_residuals(ad.AnnData(x.copy()), theta=100, inplace=False)["X"]
    library = np.asarray(x.sum(1)).ravel()
    fraction = np.asarray(x.sum(0)).ravel() / library.sum()
    np.testing.assert_allclose(pearson.residuals(x, library, fraction), expected, rtol=1e-5, atol=1e-5)


def test_components_match_a_dense_pca_and_do_not_depend_on_chunks(monkeypatch):
    x, _, _ = _counts(1)
    library = np.asarray(x.sum(1)).ravel()
    genes = np.arange(x.shape[1])
    pcs = pearson.principal_components(x, genes, library, 5)
    dense = pearson.residuals(x, library, np.asarray(x.sum(0)).ravel() / library.sum())
    u, s, _ = np.linalg.svd(dense - dense.mean(0), full_matrices=False)
    for j in range(5):  # equal up to each component's sign
        expected = u[:, j] * s[j]
        assert min(np.abs(pcs[:, j] - expected).max(), np.abs(pcs[:, j] + expected).max()) < 1e-3
    chunked = counts.row_chunks
    monkeypatch.setattr(pearson, "row_chunks", lambda counts: chunked(counts, chunk_rows=37))
    np.testing.assert_allclose(pearson.principal_components(x, genes, library, 5), pcs, atol=1e-4)


def test_depth_is_not_a_component_and_types_are():
    x, kind, depth = _counts(2)
    library = np.asarray(x.sum(1)).ravel()
    pcs = pearson.principal_components(x, np.arange(x.shape[1]), library, 3)
    assert abs(np.corrcoef(pcs[:, 0], kind)[0, 1]) > 0.9
    assert abs(np.corrcoef(pcs[:, 0], np.log(depth))[0, 1]) < 0.2


def test_pca_pearson_method_clusters_and_rejects_bad_settings():
    x, kind, _ = _counts(3)
    adata = ad.AnnData(x)
    tl.cluster(adata, method="pca_pearson", n_clusters=2, seed=0, progress=False)
    assert adata.obsm["X_pca_pearson"].shape == (400, 50)
    labels = adata.obs["pca_pearson_cluster"].to_numpy()
    agreement = np.mean((labels == labels[0]) == (kind == kind[0]))
    assert agreement > 0.95
    with pytest.raises(ValueError, match="not standardised"):
        PCAConfig(residuals="pearson")
    with pytest.raises(ValueError, match="residuals must be one of"):
        PCAConfig(residuals="sqrt")
    with pytest.raises(ValueError, match="theta must be positive"):
        pearson.principal_components(x, np.arange(5), np.ones(400), 2, theta=0)
    with pytest.raises(ValueError, match="theta must be positive"):
        PCAConfig(standardize=False, residuals="pearson", theta=-1.0)


@pytest.mark.parametrize("method", ["cae", "siamese", "scinno"])
def test_fused_methods_take_the_pearson_view(method):
    with pytest.raises(ValueError, match="residuals must be one of"):
        models.configure(models.METHODS[method], pca_residuals="sqrt")
    config, _ = models.configure(models.METHODS[method], pca_residuals="pearson")
    assert config.pca_residuals == "pearson"
    config, _ = models.configure(models.METHODS[method], pca_residuals="both")
    assert config.pca_residuals == "both"


def test_pca_view_reads_the_pearson_residuals():
    x, _, _ = _counts(4)
    prepared = preprocess.prepare_counts(ad.AnnData(x))
    normalizer = prepared.normalizer
    np.testing.assert_array_equal(pca_view(x, normalizer, 5, "pearson", 0),
                                  pearson.principal_components(x, normalizer.genes, normalizer.library_size, 5))


def test_both_views_are_the_log_and_the_pearson_view_and_each_gets_a_weight():
    x, _, _ = _counts(5)
    normalizer = preprocess.prepare_counts(ad.AnnData(x)).normalizer
    views = pca_views(x, normalizer, 5, "both", 0)
    assert list(views) == ["pca", "pca_pearson"]
    np.testing.assert_array_equal(views["pca"], pca_view(x, normalizer, 5, "log", 0))
    np.testing.assert_array_equal(views["pca_pearson"], pca_view(x, normalizer, 5, "pearson", 0))
    assert list(pca_views(x, normalizer, 5, "pearson", 0)) == ["pca"]
    latent = np.random.default_rng(0).normal(size=(x.shape[0], 8)).astype(np.float32)
    arrays, notes = fused_with_pca(views, latent, 15, 0, shrinkage=1.0)
    assert arrays["embedding"].shape == (x.shape[0], 5 + 5 + 8)
    assert notes["fusion_weights"] == pytest.approx({"pca": 1 / 3, "pca_pearson": 1 / 3, "latent": 1 / 3})
    _, notes = fused_with_pca(views, latent, 15, 0)
    assert list(notes["fusion_weights"]) == ["pca", "pca_pearson", "latent"]
    with pytest.raises(ValueError, match="residuals must be one of"):
        pca_views(x, normalizer, 5, "all", 0)
    with pytest.raises(ValueError, match="residuals must be one of"):
        PCAConfig(standardize=False, residuals="both")  # one view per PCA baseline
    with pytest.raises(ValueError, match="shrinkage"):
        models.configure(models.METHODS["cae"], fusion_shrinkage=1.5)
