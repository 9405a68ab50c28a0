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
    assert np.allclose(lsi.tfidf(sp.csr_matrix(x)).toarray(), np.log1p(tf * idf * 1e4), rtol=1e-5)


def test_lsi_on_mop_drops_depth_component_and_is_deterministic():
    atac = datasets.load("mop_snare_paired", modality="atac")[:3000]
    z, info = lsi.lsi(atac.X, n_components=30, seed=0)
    assert z.shape == (3000, 30) and info["dropped_first"] and abs(info["depth_r"]) > 0.5
    depth = np.log1p(np.asarray(atac.X.sum(1)).ravel())
    assert abs(np.corrcoef(z[:, 0], depth)[0, 1]) < abs(info["depth_r"])
    z2, _ = lsi.lsi(atac.X, n_components=30, seed=0)
    assert np.array_equal(z, z2)


def test_neighbors_exclude_self():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(200, 8))
    nn = lsi.neighbors(z, k=10)
    assert nn.shape == (200, 10)
    assert not (nn == np.arange(200)[:, None]).any()
    assert all(len(set(row)) == 10 for row in nn)
