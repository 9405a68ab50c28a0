"""HVG selection survives skmisc loess failures (issue 16): retry wider spans, then Pearson residuals."""
import warnings
from types import SimpleNamespace

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp

from omics_cl import datasets, tl
from omics_cl.data import hvg
from omics_cl.data.hvg import gene_stats, pearson_residual_variance, select_hvg
from omics_cl.data.preprocess import prepare_counts


def flat_counts(flat_fraction: float, pattern: tuple[int, ...], seed: int = 0, n_cells: int = 200,
                n_genes: int = 300) -> sp.csr_matrix:
    """Integer counts where ``flat_fraction`` of the genes each hold only ``pattern`` (one or two nonzero
    counts in random cells): many genes share one low mean and variance, as in scanpy #1504 / #2669."""
    rng = np.random.default_rng(seed)
    n_flat = int(flat_fraction * n_genes)
    x = rng.poisson(rng.gamma(0.5, 2.0, size=n_genes - n_flat), size=(n_cells, n_genes - n_flat))
    flat = np.zeros((n_cells, n_flat), dtype=np.int64)
    for g in range(n_flat):
        flat[rng.choice(n_cells, len(pattern), replace=False), g] = pattern
    x = np.hstack([x, flat])
    x[:, 0] += 1  # no empty cells
    return sp.csr_matrix(x)


def select_recording(x, n_top):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        genes, flavor = select_hvg(x, n_top)
    return genes, flavor, [w for w in record if issubclass(w.category, UserWarning)]


def scanpy_seurat_v3(x, n_top, span=0.3):
    df = sc.pp.highly_variable_genes(ad.AnnData(x), flavor="seurat_v3", n_top_genes=n_top, span=span, inplace=False)
    return set(np.flatnonzero(df["highly_variable"].to_numpy())), df["variances_norm"].to_numpy()


# (a) the real failure, reproduced ------------------------------------------------------------------------------

def test_reciprocal_condition_number_failure_retries_a_wider_span():
    x = flat_counts(0.25, (1, 1))
    with pytest.raises(ValueError, match="reciprocal condition number"):
        sc.pp.highly_variable_genes(ad.AnnData(x), flavor="seurat_v3", n_top_genes=100)
    genes, flavor, warned = select_recording(x, 100)
    assert flavor == "seurat_v3_span0.5"
    assert len(warned) == 1 and "reciprocal condition number" in str(warned[0].message)
    assert "seurat_v3_span0.5" in str(warned[0].message)
    # the retry is plain seurat_v3 at span 0.5: the top 100 scores (79 flat genes tie at the cut, which
    # scanpy breaks in another order)
    score = scanpy_seurat_v3(x, 100, span=0.5)[1]
    assert np.allclose(np.sort(score[genes]), np.sort(score)[-100:], rtol=1e-12, atol=0)


def test_loess_failing_at_every_span_falls_back_to_pearson_residuals():
    x = flat_counts(0.8, (1,))
    for span in hvg.SPANS:
        with pytest.raises(ValueError, match="svddc failed"):
            sc.pp.highly_variable_genes(ad.AnnData(x), flavor="seurat_v3", n_top_genes=100, span=span)
    genes, flavor, warned = select_recording(x, 30)
    assert flavor == "pearson_residuals"
    assert len(warned) == 1 and "pearson_residuals" in str(warned[0].message)
    ref = sc.experimental.pp.highly_variable_genes(ad.AnnData(x.astype(np.float64)), flavor="pearson_residuals",
                                                   n_top_genes=30, inplace=False)
    gene_sum, _, library = gene_stats(x)
    var = pearson_residual_variance(x, gene_sum, library)
    assert np.allclose(var, ref["residual_variances"].to_numpy(), rtol=1e-10, atol=1e-12)
    assert set(genes) == set(np.flatnonzero(ref["highly_variable"].to_numpy()))


@pytest.mark.parametrize("flat_fraction, pattern, flavor", [(0.25, (1, 1), "seurat_v3_span0.5"),
                                                            (0.8, (1,), "pearson_residuals")])
def test_cluster_succeeds_warns_and_records_the_flavor(flat_fraction, pattern, flavor):
    adata = ad.AnnData(flat_counts(flat_fraction, pattern))
    with pytest.warns(UserWarning, match="loess") as record:
        rec = tl.cluster(adata, method="pca", n_top_genes=100, n_comps=20, graph_comps=10, progress=False)
    assert sum("loess" in str(w.message) for w in record) == 1
    assert rec["hvg_flavor"] == flavor
    assert adata.uns["omics_cl"]["pca"]["hvg_flavor"] == flavor
    assert rec["n_features"] == 100 and adata.obsm["X_pca"].shape[0] == adata.n_obs
    assert len(rec["fallbacks"]) == 1 and "loess" in rec["fallbacks"][0]
    assert list(adata.uns["omics_cl"]["pca"]["fallbacks"]) == rec["fallbacks"]
    assert "fallbacks" not in tl.cluster(adata, method="pca", n_top_genes=None, n_comps=20, graph_comps=10,
                                         progress=False)  # all genes kept: no loess, nothing left from the first run


def test_pearson_fallback_on_backed_and_dense_counts(tmp_path):
    x = flat_counts(0.8, (1,))
    ad.AnnData(x).write_h5ad(tmp_path / "flat.h5ad")
    backed = ad.read_h5ad(tmp_path / "flat.h5ad", backed="r")
    results = [select_recording(m, 30)[:2] for m in (x, x.toarray(), backed.X)]
    for genes, flavor in results:
        assert flavor == "pearson_residuals" and np.array_equal(genes, results[0][0])


# (b) retry / fallback order, with the loess forced to fail -----------------------------------------------------

@pytest.mark.parametrize("fail, calls, flavor", [
    ((), [0.3], "seurat_v3"),
    ((0.3,), [0.3, 0.5], "seurat_v3_span0.5"),
    ((0.3, 0.5), [0.3, 0.5, 0.8], "seurat_v3_span0.8"),
    ((0.3, 0.5, 0.8), [0.3, 0.5, 0.8], "pearson_residuals"),
])
def test_retry_and_fallback_order(monkeypatch, counts_adata, fail, calls, flavor):
    real_fit, real_pearson = hvg.loess_log_fit, hvg.pearson_residual_variance
    seen, pearson_calls = [], []

    def fake_fit(log_mean, log_var, span):
        seen.append(span)
        if span in fail:
            raise ValueError(f"b'reciprocal condition number  1e-15' (forced at {span})")
        return real_fit(log_mean, log_var, span)

    def spy_pearson(*args, **kwargs):
        pearson_calls.append(1)
        return real_pearson(*args, **kwargs)

    monkeypatch.setattr(hvg, "loess_log_fit", fake_fit)
    monkeypatch.setattr(hvg, "pearson_residual_variance", spy_pearson)
    genes, got, warned = select_recording(counts_adata.X, 40)
    assert seen == calls and got == flavor and len(genes) == 40
    assert len(pearson_calls) == (flavor == "pearson_residuals")
    assert len(warned) == (1 if fail else 0)
    if fail:
        msg = str(warned[0].message)
        assert all(f"forced at {s}" in msg for s in fail) and repr(flavor) in msg
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_counts(counts_adata, n_top_genes=40)
    assert prepared.hvg_flavor == flavor and np.array_equal(prepared.normalizer.genes, genes)


def test_non_finite_loess_fit_counts_as_a_failure(monkeypatch, counts_adata):
    import skmisc.loess

    real = skmisc.loess.loess

    def nan_at_default_span(x, y, span, degree):
        if span == 0.3:
            return SimpleNamespace(fit=lambda: None, outputs=SimpleNamespace(fitted_values=np.full(len(x), np.nan)))
        return real(x, y, span=span, degree=degree)

    monkeypatch.setattr(skmisc.loess, "loess", nan_at_default_span)
    flavor, warned = select_recording(counts_adata.X, 40)[1:]
    assert flavor == "seurat_v3_span0.5" and "non-finite" in str(warned[0].message)


# (c) the normal path is plain seurat_v3 ---------------------------------------------------------------------

def test_normal_path_is_plain_seurat_v3(counts_adata):
    genes, flavor, warned = select_recording(counts_adata.X, 40)
    assert flavor == "seurat_v3" and not warned
    assert set(genes) == scanpy_seurat_v3(counts_adata.X, 40)[0]


@pytest.mark.parametrize("name, n_top", [("pbmc68k_reduced", 200), ("cbmc_citeseq_rna500", 250)])
def test_normal_path_matches_scanpy_on_registry_data(name, n_top):
    adata = datasets.load(name, modality="rna")
    genes, flavor, warned = select_recording(adata.X, n_top)
    assert flavor == "seurat_v3" and not warned
    assert set(genes) == scanpy_seurat_v3(adata.X, n_top)[0]


def test_all_genes_kept_records_all_genes(counts_adata):
    assert select_hvg(counts_adata.X, None)[1] == "all_genes"
    assert prepare_counts(counts_adata, n_top_genes=2000).hvg_flavor == "all_genes"
