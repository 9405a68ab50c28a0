"""The numpy port of UMAP's fuzzy simplicial set against umap's own (numba) implementation."""
import numpy as np
import scipy.sparse as sp
from umap.umap_ import fuzzy_simplicial_set
from umap.umap_ import smooth_knn_dist as umap_smooth_knn_dist

from omics_cl.core import fuzzy
from omics_cl.core.neighbors import knn


def umap_connectivities(idx, dist):
    n, k = idx.shape
    result, _, _ = fuzzy_simplicial_set(sp.coo_matrix((n, 1)), k, None, None, knn_indices=idx, knn_dists=dist,
                                        set_op_mix_ratio=1.0, local_connectivity=1.0)
    return sp.csr_matrix(result)


def knn_of(seed: int, metric: str):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, 8)).astype(np.float32)
    x[:40] = x[40:80]  # duplicated cells: zero distances besides a cell's own
    return knn(x, 15, metric, seed)


def test_weights_match_umap():
    for seed, metric in ((0, "euclidean"), (1, "cosine")):
        idx, dist = knn_of(seed, metric)
        ours, theirs = fuzzy.connectivities(idx, dist), umap_connectivities(idx, dist)
        ours.sort_indices()
        theirs.sort_indices()
        assert ours.dtype == theirs.dtype == np.float32
        assert np.array_equal(ours.indptr, theirs.indptr) and np.array_equal(ours.indices, theirs.indices)
        np.testing.assert_allclose(ours.data, theirs.data, rtol=2e-5, atol=1e-7)
        assert (ours.data == theirs.data).mean() > 0.9  # most weights bit for bit; the rest differ in libm's expf


def test_smooth_knn_dist_matches_umap():
    idx, dist = knn_of(2, "euclidean")
    sigma, rho = fuzzy.smooth_knn_dist(dist, 15.0)
    their_sigma, their_rho = umap_smooth_knn_dist(dist, 15.0, local_connectivity=1.0)
    assert np.array_equal(rho, their_rho)
    np.testing.assert_allclose(sigma, their_sigma, rtol=2e-5)


def test_graph_is_a_fuzzy_union():
    idx, dist = knn_of(3, "cosine")
    conn = fuzzy.connectivities(idx, dist)
    assert abs(conn - conn.T).max() == 0 and conn.diagonal().max() == 0
    assert conn.data.min() > 0 and conn.data.max() <= 1
    # every cell keeps an edge of weight 1 to its nearest other cell (distance rho)
    assert np.allclose(conn.max(axis=1).toarray().ravel(), 1.0)
