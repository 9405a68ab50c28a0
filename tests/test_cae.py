"""cae / ae options: standardised input (statistics of the training cells, the same on every input path, no
labels read) and the fusion of the latent with the PCA views under fixed weights (the fused embedding written, the
latent kept)."""
from dataclasses import replace

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from omics_cl import models, tl
from omics_cl.data.components import principal_components
from omics_cl.data.preprocess import prepare_counts
from omics_cl.data.sources import KEYS
from omics_cl.data.streaming import StreamingCountsSource
from omics_cl.models import common
from omics_cl.models.cae import DEFAULT_FUSION_WEIGHTS
from omics_cl.models.common import pca_view
from omics_cl.models.method import Context

FAST = {"hidden": [32], "latent": 8, "epochs": 2, "batch_size": 64, "progress": False}


def test_standardized_input_is_scaled_clipped_and_equal_on_every_path(counts_adata, tmp_path):
    prepared = prepare_counts(counts_adata, n_top_genes=50)
    plain = prepared.lognorm_sparse().toarray()
    standardized = prepared.standardized(max_value=1.5)
    x = standardized.lognorm_sparse().toarray()
    mean, sd = plain.mean(0), plain.std(0)
    expected = np.minimum(plain, mean + 1.5 * sd) / np.where(sd > 0, sd, np.inf)
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-6)
    assert (plain > mean + 1.5 * sd).any() and np.array_equal(x == 0, plain == 0)  # clipped, not centred
    cells = np.array([5, 299, 0, 17])
    np.testing.assert_array_equal(standardized.source().get(cells)[KEYS.X], x[cells])
    path = tmp_path / "counts.h5ad"
    counts_adata.write_h5ad(path)
    backed = prepare_counts(ad.read_h5ad(path, backed="r"), n_top_genes=50).standardized(max_value=1.5)
    np.testing.assert_array_equal(backed.normalizer.scale, standardized.normalizer.scale)
    streamed = StreamingCountsSource(backed.counts, backed.normalizer, chunk_rows=32, window=3)
    np.testing.assert_array_equal(streamed.get(cells)[KEYS.X], x[cells])


def test_standardizing_refuses_a_bad_clip_and_a_later_gene_selection(counts_adata):
    prepared = prepare_counts(counts_adata, n_top_genes=50)
    with pytest.raises(ValueError, match="max_value must be > 0"):
        prepared.standardized(max_value=0)
    with pytest.raises(ValueError, match="select genes before standardising"):
        prepared.standardized().with_detected_genes(0.1)


@pytest.mark.parametrize("method", ["cae", "ae"])
def test_options_read_no_labels(counts_adata, method):
    """Same embedding with the labels permuted: the statistics and the fusion read expression only."""
    a, b = counts_adata.copy(), counts_adata.copy()
    b.obs["group"] = np.random.default_rng(0).permutation(b.obs["group"].to_numpy())
    params = {**FAST, "standardize": True, "fusion": "wnn"}
    tl.cluster(a, method=method, n_clusters=3, **params)
    tl.cluster(b, method=method, n_clusters=3, **params)
    np.testing.assert_array_equal(a.obsm[f"X_{method}"], b.obsm[f"X_{method}"])
    np.testing.assert_array_equal(a.obs[f"{method}_cluster"], b.obs[f"{method}_cluster"])


def test_defaults_cae_standardises_and_fuses_ae_neither(counts_adata):
    cae, _ = models.configure(models.METHODS["cae"])
    ae, _ = models.configure(models.METHODS["ae"])
    assert (cae.standardize, cae.fusion) == (True, "wnn") and (ae.standardize, ae.fusion) == (False, "none")
    a, b = counts_adata.copy(), counts_adata.copy()
    tl.cluster(a, method="cae", fusion="none", standardize=False, **FAST)
    tl.cluster(b, method="cae", fusion="none", **FAST)
    assert not np.allclose(a.obsm["X_cae"], b.obsm["X_cae"], atol=1e-3)  # standardising changes the training input


def test_fusion_writes_the_fused_embedding_and_keeps_the_latent(counts_adata):
    a, b = counts_adata.copy(), counts_adata.copy()
    rec = tl.cluster(a, method="cae", fusion="wnn", pca_comps=10, views_agree=None, **FAST)  # the fixed weights
    tl.cluster(b, method="cae", fusion="none", **FAST)
    latent = b.obsm["X_cae"]
    np.testing.assert_array_equal(a.obsm["X_cae_latent"], latent)  # the same training either way
    assert "X_cae_latent" not in b.obsm
    fused = a.obsm["X_cae"]
    assert fused.shape == (300, 10 + 10 + latent.shape[1])  # the log and the Pearson PCA views, then the latent
    prepared = prepare_counts(counts_adata)
    pcs = principal_components(prepared.lognorm_sparse(), 10, 0, standardize=True)
    pearson_pcs = pca_view(prepared.counts, prepared.normalizer, 10, "pearson", 0)
    assert rec["params"]["fusion_weights"] == pytest.approx({"pca": 0.425, "pca_pearson": 0.15, "latent": 0.425})
    # each block is its view's unit rows times sqrt(the view's fixed weight), the weights summing to 1
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, rtol=1e-5)
    blocks = ((fused[:, :10], pcs, 0.425), (fused[:, 10:20], pearson_pcs, 0.15), (fused[:, 20:], latent, 0.425))
    for block, view, weight in blocks:
        np.testing.assert_allclose(np.linalg.norm(block, axis=1), np.sqrt(weight), rtol=1e-4)
        cosine = np.sum(block * view, 1) / np.linalg.norm(block, axis=1) / np.linalg.norm(view, axis=1)
        np.testing.assert_allclose(cosine, 1.0, rtol=1e-4)


def test_views_agreement_picks_the_weights(counts_adata, monkeypatch):
    """Where the two PCA views' own clusters agree (ARI >= views_agree) the WNN weights shrunk by agree_shrinkage;
    else the fixed weights; the record says which; views_agree=None never compares them."""
    seen = []

    def agreement(value):
        def views_agreement(pcs, ctx):
            seen.append((sorted(pcs), ctx.n_clusters))
            return value
        return views_agreement

    monkeypatch.setattr(common, "views_agreement", agreement(0.79))
    rec = tl.cluster(counts_adata.copy(), method="cae", n_clusters=3, pca_comps=10, **FAST)
    assert seen == [(["pca", "pca_pearson"], 3)]
    assert rec["params"]["fusion_weighting"] == "fixed" and rec["params"]["views_agreement"] == 0.79
    assert rec["params"]["fusion_weights"] == pytest.approx(DEFAULT_FUSION_WEIGHTS)
    monkeypatch.setattr(common, "views_agreement", agreement(0.8))
    agree = tl.cluster(counts_adata.copy(), method="cae", n_clusters=3, pca_comps=10, **FAST)
    equal = tl.cluster(counts_adata.copy(), method="cae", n_clusters=3, pca_comps=10, agree_shrinkage=1.0, **FAST)
    assert agree["params"]["fusion_weighting"] == "wnn_shrunk"
    assert agree["params"]["fusion_weights"] != pytest.approx(DEFAULT_FUSION_WEIGHTS)
    assert equal["params"]["fusion_weights"] == pytest.approx({"pca": 1 / 3, "pca_pearson": 1 / 3, "latent": 1 / 3})
    seen.clear()
    off = tl.cluster(counts_adata.copy(), method="cae", n_clusters=3, pca_comps=10, views_agree=None, **FAST)
    one_view = tl.cluster(counts_adata.copy(), method="cae", n_clusters=3, pca_comps=10, pca_residuals="log", **FAST)
    assert not seen and "views_agreement" not in off["params"] and "views_agreement" not in one_view["params"]
    assert off["params"]["fusion_weights"] == pytest.approx(DEFAULT_FUSION_WEIGHTS)
    for bad in ({"views_agree": 1.5}, {"agree_shrinkage": -0.1}, {"agree_shrinkage": 2.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            models.configure(models.METHODS["cae"], **bad)


def test_views_agreement_compares_the_views_own_clusters():
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1, 2], 60)
    log_view = (rng.normal(size=(3, 10)) * 4)[groups] + rng.normal(size=(180, 10))
    ctx = Context(seed=0, n_clusters=3)
    assert common.views_agreement({"pca": log_view, "pca_pearson": log_view * 2.0}, ctx) == pytest.approx(1.0)
    noise = rng.normal(size=log_view.shape)
    assert common.views_agreement({"pca": log_view, "pca_pearson": noise}, ctx) < 0.2


def test_fusion_weights_are_checked_before_training_and_follow_the_views(counts_adata):
    spec = models.METHODS["cae"]
    for bad, match in (({"pca": 1.0, "latent": 1.0}, "pca_pearson"), ({**DEFAULT_FUSION_WEIGHTS, "atac": 1.0}, "atac"),
                       ({"pca": -1.0, "pca_pearson": 1.0, "latent": 1.0}, "non-negative"),
                       ({"pca": 0.0, "pca_pearson": 0.0, "latent": 0.0}, "not all 0")):
        with pytest.raises(ValueError, match=match):
            models.configure(spec, fusion_weights=bad)
    with pytest.raises(TypeError, match="fusion_weights"):
        models.configure(spec, fusion_weight={"pca": 1.0})
    # one PCA view: the default weights of the views fused (0.425 each) give equal weights
    rec = tl.cluster(counts_adata.copy(), method="cae", pca_residuals="log", pca_comps=10, **FAST)
    assert rec["params"]["fusion_weights"] == pytest.approx({"pca": 0.5, "latent": 0.5})
    rec = tl.cluster(counts_adata.copy(), method="cae", pca_residuals="log", fusion_shrinkage=0.0, pca_comps=10, **FAST)
    assert rec["params"]["fusion_weights"]["pca"] != pytest.approx(0.5)  # the WNN weights, the default before


def test_pca_view_reuses_the_input_standardisation_and_matches_the_pca_method(counts_adata, monkeypatch):
    spec = models.METHODS["cae"]
    config, _ = models.configure(spec, pca_comps=10)
    source = spec.source(prepare_counts(counts_adata), config, models.Context())
    x = prepare_counts(counts_adata).lognorm_sparse()
    given = []

    def recorded(*args, **kwargs):
        given.append(kwargs["statistics"])
        return principal_components(*args, **kwargs)

    monkeypatch.setattr(common.components, "principal_components", recorded)
    np.testing.assert_array_equal(common.pca_view(source.x, source.transform, 10, "log", 0),
                                  principal_components(x, 10, 0, standardize=True))
    assert given[0][1] is source.transform.scale  # not computed again
    clip, scale = source.transform.clip, source.transform.scale
    doubled = principal_components(x, 10, 0, standardize=True, statistics=(clip, 2 * scale))
    np.testing.assert_allclose(np.abs(doubled), 2 * np.abs(principal_components(x, 10, 0, standardize=True)),
                               rtol=1e-4, atol=1e-4)  # the statistics given are the ones used
    with pytest.raises(ValueError, match="with standardize=True"):
        principal_components(x, 10, 0, statistics=(clip, scale))
    with pytest.raises(ValueError, match="one clip and one scale per column"):
        principal_components(x, 10, 0, standardize=True, statistics=(clip[1:], scale[1:]))


def test_fusion_does_not_stream_and_unknown_names_are_refused(counts_adata, tmp_path):
    path = tmp_path / "counts.h5ad"
    counts_adata.write_h5ad(path)
    with pytest.raises(models.StreamingError, match="cannot stream its input with these parameters") as refused:
        tl.cluster(ad.read_h5ad(path, backed="r"), method="cae", fusion="wnn", stream=True, **FAST)
    assert refused.value.method == "cae" and refused.value.by_config  # fusion="none" streams
    with pytest.warns(UserWarning, match="pass fusion='none' to stream it"):
        assert tl.cluster(ad.read_h5ad(path, backed="r"), method="cae", fusion="wnn", **FAST)["stream"] is False
    spec = models.METHODS["cae"]
    config, _ = models.configure(spec, fusion="wnn")
    prepared = replace(prepare_counts(ad.read_h5ad(path, backed="r"), n_top_genes=50), stream=True)
    with pytest.raises(ValueError, match="cannot stream; pass fusion='none'"):
        spec.source(prepared, config, models.Context())
    record = tl.cluster(ad.read_h5ad(path, backed="r"), method="cae", fusion="none", standardize=True, **FAST)
    assert record["stream"] is True
    with pytest.raises(ValueError, match="fusion must be one of"):
        models.configure(spec, fusion="concat")


def test_a_dense_count_matrix_works_with_both_options(counts_adata):
    dense = ad.AnnData(counts_adata.X.toarray(), obs=counts_adata.obs, var=counts_adata.var)
    tl.cluster(dense, method="cae", standardize=True, fusion="wnn", **FAST)
    tl.cluster(counts_adata, method="cae", standardize=True, fusion="wnn", **FAST)
    assert sp.issparse(counts_adata.X)
    np.testing.assert_allclose(dense.obsm["X_cae"], counts_adata.obsm["X_cae"], rtol=1e-4, atol=1e-5)
