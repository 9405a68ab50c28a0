import anndata as ad
import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp

from omics_cl import datasets
from omics_cl.data import counts as counts_module
from omics_cl.data.counts import nonempty_counts
from omics_cl.data.preprocess import LogNormalizer, fit_lognormalizer, prepare_counts
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


@pytest.mark.parametrize("standardized", [False, True])
@pytest.mark.parametrize("genes", ["all", "subset"])
def test_sparse_rows_normalise_as_their_dense_form(standardized, genes):
    """The normaliser works on a sparse batch's stored values; the result equals the dense batch's to the bit,
    also for a matrix holding duplicate entries (summed as counts), and the input is left as it was."""
    rng = np.random.default_rng(0)
    dense = rng.poisson(0.3, (40, 25)).astype(np.float32)
    library = dense.sum(1) + 1.0
    kept = np.arange(25) if genes == "all" else np.array([1, 4, 5, 9, 20])
    normalizer = LogNormalizer(kept, library)
    if standardized:
        normalizer = LogNormalizer(kept, library, clip=rng.uniform(0.5, 2, len(kept)).astype(np.float32),
                                   scale=rng.uniform(0.5, 2, len(kept)).astype(np.float32))
    idx = np.arange(40)
    expected = normalizer(dense, idx)
    assert np.array_equal(normalizer(sp.csr_matrix(dense), idx), expected)
    csr = sp.csr_matrix(dense)
    halves = np.floor(csr.data / 2)  # each stored count split into two entries of the same column
    doubled = sp.csr_matrix((np.ravel(np.c_[halves, csr.data - halves]), np.repeat(csr.indices, 2), 2 * csr.indptr),
                            shape=dense.shape)
    assert not doubled.has_canonical_format
    stored = doubled.data.copy()
    assert np.array_equal(normalizer(doubled, idx), expected)
    assert np.array_equal(doubled.data, stored)


def test_all_genes_kept_when_fewer_than_n_top():
    x = sp.csr_matrix(np.random.default_rng(0).poisson(1.0, size=(50, 30)) + np.eye(50, 30, dtype=int))
    assert len(fit_lognormalizer(x, n_top_genes=2000).genes) == 30


def test_nonempty_counts_checks_and_counts_in_one_pass(monkeypatch, tmp_path):
    counts = sp.csr_matrix(np.random.default_rng(0).poisson(1.0, size=(40, 12)).astype(np.float32))
    counts[[3, 17, 39]] = 0
    counts.data[counts.indptr[5]:counts.indptr[6]] = 0  # a row of stored zeros is a cell without counts
    path = tmp_path / "counts.h5ad"
    ad.AnnData(counts).write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    passes = []
    real = counts_module.row_chunks
    monkeypatch.setattr(counts_module, "row_chunks", lambda x, *a, **k: passes.append(1) or real(x, 7))
    x, empty = nonempty_counts(backed)
    assert (empty, len(passes), x.shape) == (4, 1, (40, 12))
    counts.data[counts.indptr[30]] = np.nan
    with pytest.raises(ValueError, match="NaN/inf"):
        nonempty_counts(ad.AnnData(counts))
    with pytest.raises(ValueError, match="no count at all"):
        nonempty_counts(ad.AnnData(sp.csr_matrix((5, 3), dtype=np.float32)))


def test_pbmc_demo_counts_equal_registered_file():
    bundled = datasets.pbmc68k_reduced_counts()
    registered = datasets.load("pbmc68k_reduced")
    assert list(bundled.var_names) == list(registered.var_names)
    assert (bundled.X != registered.X).nnz == 0
