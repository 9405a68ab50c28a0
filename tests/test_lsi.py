import numpy as np
import scipy.sparse as sp

from omics_cl import datasets
from omics_cl.data import lsi


def test_tfidf_matches_dense_formula():
    rng = np.random.default_rng(0)
    x = rng.poisson(0.3, size=(40, 30)).astype(float)
    x[0] = 0  # an empty cell stays zero
    x[:, 1] = 0  # an empty peak stays zero
    tf = np.divide(x, x.sum(1, keepdims=True), out=np.zeros_like(x), where=x.sum(1, keepdims=True) > 0)
    idf = np.divide(40, x.sum(0), out=np.zeros(30), where=x.sum(0) > 0)
    assert np.allclose(lsi.tfidf(sp.csr_matrix(x), scale=1e4).toarray(), np.log1p(tf * idf * 1e4), rtol=1e-5)
    stored = (tf * idf)[x > 0]
    scale = 10 / np.median(stored)  # adaptive: the median stored value becomes 10
    assert np.isclose(lsi.adaptive_scale(sp.csr_matrix(x)), scale)
    assert np.allclose(lsi.tfidf(sp.csr_matrix(x)).toarray(), np.log1p(tf * idf * scale), rtol=1e-5)
    assert lsi.adaptive_scale(sp.csr_matrix((3, 4))) == 1.0


def sparse_product_tfidf(counts, scale=1e4):
    """The formula as sparse products in float64 (the implementation before 2026-12-04)."""
    x = sp.csr_matrix(counts, dtype=np.float64)
    cell_total, peak_total = np.asarray(x.sum(1)).ravel(), np.asarray(x.sum(0)).ravel()
    idf = np.divide(x.shape[0], peak_total, out=np.zeros_like(peak_total), where=peak_total > 0)
    inv_total = np.divide(1.0, cell_total, out=np.zeros_like(cell_total), where=cell_total > 0)
    out = sp.csr_matrix(sp.diags(inv_total) @ x @ sp.diags(idf * scale))
    out.data = np.log1p(out.data)
    return out.astype(np.float32)


def test_tfidf_in_chunks_equals_the_sparse_products_bit_for_bit():
    rng = np.random.default_rng(3)
    x = sp.random(300, 80, density=0.1, random_state=4, format="csr", dtype=np.float32)
    x.data = np.ceil(x.data * 3)
    x = sp.vstack([x, sp.csr_matrix((2, 80), dtype=np.float32)]).tocsr()  # empty cells at the end
    x.data[rng.choice(x.nnz, 5, replace=False)] = 0  # stored zeros are dropped
    expected = sparse_product_tfidf(x)
    for chunk_values in (7, 100, 1 << 24):
        got = lsi.tfidf(x, scale=1e4, chunk_values=chunk_values)
        assert got.nnz == expected.nnz == x.nnz - 5
        for part in ("data", "indices", "indptr"):
            assert np.array_equal(getattr(got, part), getattr(expected, part)), (chunk_values, part)
    duplicated = sp.csr_matrix((np.array([1.0, 2.0, 3.0]), np.array([2, 2, 0]), np.array([0, 2, 3])), shape=(2, 4))
    assert np.array_equal(lsi.tfidf(duplicated, scale=1e4).toarray(), sparse_product_tfidf(duplicated).toarray())


def test_lsi_on_mop_drops_depth_component_and_is_deterministic():
    atac = datasets.load("mop_snare_paired", modality="atac")[:3000]
    z, info = lsi.lsi(atac.X, n_components=30, seed=0)
    assert z.shape == (3000, 30) and info["dropped_first"] and abs(info["depth_r"]) > 0.5
    depth = np.log1p(np.asarray(atac.X.sum(1)).ravel())
    assert abs(np.corrcoef(z[:, 0], depth)[0, 1]) < abs(info["depth_r"])
    z2, _ = lsi.lsi(atac.X, n_components=30, seed=0)
    assert np.array_equal(z, z2)


def test_unstandardized_lsi_keeps_the_components_weights():
    """``standardize=False``: the same centred components, each divided by their mean standard deviation instead of
    its own, so their spread follows the singular values (decreasing); the projection reproduces it."""
    atac = datasets.load("mop_snare_paired", modality="atac")[:1500]
    z, info, _ = lsi.fit_lsi(atac.X, n_components=12, seed=0)
    raw, raw_info, projection = lsi.fit_lsi(atac.X, n_components=12, seed=0, standardize=False)
    assert info["standardized"] and not raw_info["standardized"]
    sd = raw.std(0)
    assert np.allclose(z * sd, raw, atol=1e-4)
    assert np.isclose(sd.mean(), 1.0, atol=1e-4) and sd[0] > sd[-1] + 0.05
    assert np.allclose(lsi.project_lsi(atac.X, projection), raw, atol=1e-3)


def test_adaptive_scale_is_a_strided_sample_median(monkeypatch):
    """Duplicate entries are summed first; on many stored values the scale's median comes from an evenly strided
    sample: close to the full median, the same on every call; the TF-IDF does not depend on the sequencing depth
    of all cells together."""
    x = sp.random(2000, 300, density=0.05, random_state=5, format="csr", dtype=np.float32)
    x.data = np.ceil(x.data * 4)
    full = lsi.adaptive_scale(x)
    rows = [(np.tile(x.indices[a:b], 2), np.tile(x.data[a:b] / 2, 2)) for a, b in zip(x.indptr[:-1], x.indptr[1:])]
    halves = sp.csr_matrix((np.concatenate([d for _, d in rows]), np.concatenate([i for i, _ in rows]),
                            2 * x.indptr), shape=x.shape)  # each count stored twice, as two halves
    assert not halves.has_canonical_format and np.isclose(lsi.adaptive_scale(halves), full)
    monkeypatch.setattr(lsi, "SCALE_SAMPLE", 997)
    sampled = lsi.adaptive_scale(x)
    assert sampled == lsi.adaptive_scale(x) and abs(sampled / full - 1) < 0.1
    deeper = x * 7
    assert np.allclose(lsi.tfidf(deeper).toarray(), lsi.tfidf(x).toarray())


def test_projection_reproduces_the_fitted_cells():
    """``project_lsi`` of the cells ``fit_lsi`` was fitted on gives their embedding, at the fitted TF-IDF scale."""
    atac = datasets.load("mop_snare_paired", modality="atac")[:1500]
    z, info, projection = lsi.fit_lsi(atac.X, n_components=12, seed=0)
    assert float(projection["scale"]) == info["tfidf_scale"] == lsi.adaptive_scale(atac.X)
    assert np.allclose(lsi.project_lsi(atac.X, projection), z, atol=1e-3)
    at_signac, signac_info, _ = lsi.fit_lsi(atac.X, n_components=12, seed=0, tfidf_scale=lsi.SIGNAC_SCALE)
    assert signac_info["tfidf_scale"] == lsi.SIGNAC_SCALE and not np.allclose(at_signac, z)


def test_neighbors_exclude_self():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(200, 8))
    nn = lsi.neighbors(z, k=10)
    assert nn.shape == (200, 10)
    assert not (nn == np.arange(200)[:, None]).any()
    assert all(len(set(row)) == 10 for row in nn)
