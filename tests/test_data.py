import anndata as ad
import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp

from omics_cl import datasets
from omics_cl.data.preprocess import fit_lognormalizer, prepare_counts
from omics_cl.data.sources import KEYS


@pytest.fixture(scope="module")
def zeisel():
    return datasets.load("zeisel_cortex")


def test_hvg_matches_scanpy_seurat_v3(zeisel):
    ours = fit_lognormalizer(zeisel.X, n_top_genes=2000).genes
    ref = sc.pp.highly_variable_genes(zeisel, flavor="seurat_v3", n_top_genes=2000, inplace=False)
    assert set(ours) == set(np.flatnonzero(ref["highly_variable"].to_numpy()))


def test_batches_match_scanpy_recipe(zeisel):
    prepared = prepare_counts(zeisel, n_top_genes=2000)
    ref = zeisel.copy()
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    expected = ref.X[:, prepared.normalizer.genes].toarray()
    idx = np.array([17, 3, 2999, 40])
    assert np.allclose(prepared.source().get(idx)[KEYS.X], expected[idx], atol=1e-5)
    assert np.allclose(prepared.lognorm_sparse().toarray(), expected, atol=1e-5)


def test_backed_anndata_gives_the_same_batches(zeisel):
    backed = datasets.load("zeisel_cortex", backed=True)
    a, b = prepare_counts(zeisel), prepare_counts(backed)
    assert np.array_equal(a.normalizer.genes, b.normalizer.genes)
    idx = np.array([5, 1, 2000, 9])
    assert np.array_equal(a.source().get(idx)[KEYS.X], b.source().get(idx)[KEYS.X])
    assert isinstance(backed.X, ad.abc.CSRDataset)  # stayed on disk


def test_all_genes_kept_when_fewer_than_n_top():
    x = sp.csr_matrix(np.random.default_rng(0).poisson(1.0, size=(50, 30)) + np.eye(50, 30, dtype=int))
    assert len(fit_lognormalizer(x, n_top_genes=2000).genes) == 30


def test_pbmc_demo_counts_equal_registered_file():
    bundled = datasets.pbmc68k_reduced_counts()
    registered = datasets.load("pbmc68k_reduced")
    assert list(bundled.var_names) == list(registered.var_names)
    assert (bundled.X != registered.X).nnz == 0
