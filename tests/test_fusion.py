import numpy as np
import pytest

from omics_cl.core import fusion


def _views(n_per=60, seed=0):
    """An informative view (3 tight groups) and a pure-noise view of the same cells."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 10)) * 4
    groups = np.repeat(np.arange(3), n_per)
    informative = centres[groups] + rng.normal(size=(3 * n_per, 10)) * 0.3
    noise = rng.normal(size=(3 * n_per, 10))
    return informative, noise, groups


def test_weights_favour_the_view_that_predicts_its_own_neighbourhood():
    informative, noise, _ = _views()
    w = fusion.wnn_weights([informative, noise], n_neighbors=10)
    assert w.shape == (180, 2)
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-6)
    assert np.median(w[:, 0]) > 0.7  # measured ~0.99; equal views would give 0.5
    w_swapped = fusion.wnn_weights([noise, informative], n_neighbors=10)
    np.testing.assert_allclose(w_swapped[:, ::-1], w, rtol=1e-5, atol=1e-6)


def test_fused_cosine_is_the_weighted_sum_of_view_cosines():
    informative, noise, _ = _views(n_per=20)
    fused, w = fusion.wnn_fuse([informative, noise], n_neighbors=5)
    a, b = fusion.unit_rows(informative), fusion.unit_rows(noise)
    i, j = 3, 41
    expected = (np.sqrt(w[i, 0] * w[j, 0]) * a[i] @ a[j] + np.sqrt(w[i, 1] * w[j, 1]) * b[i] @ b[j])
    assert fused[i] @ fused[j] == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, rtol=1e-5)


def test_bad_views_are_refused():
    informative, noise, _ = _views(n_per=10)
    with pytest.raises(ValueError, match="at least 2 views"):
        fusion.wnn_weights([informative])
    with pytest.raises(ValueError, match="same cells"):
        fusion.wnn_weights([informative, noise[:-1]])


def test_standardized_sparse_pca_matches_scanpy_scale_then_pca():
    import scanpy as sc
    import scipy.sparse as sp

    from omics_cl.data.components import principal_components

    rng = np.random.default_rng(0)
    x = rng.poisson(rng.gamma(0.5, 1.0, size=(1, 40)) * rng.gamma(2.0, 1.0, size=(300, 1)), size=(300, 40))
    x[:, 5] = 0  # a constant column stays zero
    x[0, 7] = 400  # an outlier the clip at 10 sd must tame
    dense = np.log1p(x.astype(np.float32))
    dense[:, 0] *= 20  # a loud column: PC1 without scaling, nothing special once standardised
    ours = principal_components(sp.csr_matrix(dense), 5, seed=0, standardize=True)
    ref = sc.pp.pca(sc.pp.scale(dense, max_value=10, copy=True), n_comps=5, random_state=0, svd_solver="arpack")
    for c in range(3):  # leading components agree up to sign (scanpy's scale uses ddof=1 and clips both sides)
        assert abs(np.corrcoef(ours[:, c], ref[:, c])[0, 1]) > 0.99
    plain = principal_components(sp.csr_matrix(dense), 5, seed=0)
    assert abs(np.corrcoef(plain[:, 0], ref[:, 0])[0, 1]) < 0.9  # standardising changes the answer here


def test_shrinkage_pulls_weights_toward_equal_and_keeps_every_pair_similarity():
    informative, noise, _ = _views(n_per=20)
    _, w = fusion.wnn_fuse([informative, noise], n_neighbors=5)
    _, half = fusion.wnn_fuse([informative, noise], n_neighbors=5, shrinkage=0.5)
    np.testing.assert_allclose(half, 0.5 * w + 0.25, rtol=1e-6)
    fused, equal = fusion.wnn_fuse([informative, noise], shrinkage=1.0)
    np.testing.assert_array_equal(equal, np.full((60, 2), 0.5, np.float32))
    a, b = fusion.unit_rows(informative), fusion.unit_rows(noise)
    np.testing.assert_allclose(fused @ fused.T, 0.5 * (a @ a.T + b @ b.T), atol=1e-5)
    with pytest.raises(ValueError, match="shrinkage"):
        fusion.wnn_fuse([informative, noise], shrinkage=1.5)
    with pytest.raises(ValueError, match="same cells"):
        fusion.wnn_fuse([informative, noise[:-1]], shrinkage=1.0)


def test_fixed_target_weights_replace_equal_ones():
    informative, noise, _ = _views(n_per=20)
    fused, fixed = fusion.wnn_fuse([informative, noise], shrinkage=1.0, target=[3.0, 1.0])
    np.testing.assert_array_equal(fixed, np.tile(np.float32([0.75, 0.25]), (60, 1)))
    a, b = fusion.unit_rows(informative), fusion.unit_rows(noise)
    np.testing.assert_allclose(fused @ fused.T, 0.75 * (a @ a.T) + 0.25 * (b @ b.T), atol=1e-5)
    _, w = fusion.wnn_fuse([informative, noise], n_neighbors=5)
    _, half = fusion.wnn_fuse([informative, noise], n_neighbors=5, shrinkage=0.5, target=[3.0, 1.0])
    np.testing.assert_allclose(half, 0.5 * w + 0.5 * np.float32([0.75, 0.25]), rtol=1e-6)
    for bad in ([1.0], [1.0, -1.0], [0.0, 0.0], [np.nan, 1.0]):
        with pytest.raises(ValueError, match="target weights must be 2 finite non-negative"):
            fusion.wnn_fuse([informative, noise], shrinkage=1.0, target=bad)
