"""Principal components with a covariate regressed out (omics_cl.data.regress, components.fit_principal_components)."""
import numpy as np
import pytest
import scipy.sparse as sp

from omics_cl.data.components import fit_principal_components


def _data(seed=0, n=300, p=40):
    rng = np.random.default_rng(seed)
    depth = rng.lognormal(7, 0.5, n)
    x = rng.poisson(np.outer(depth / depth.mean(), rng.gamma(1.0, 1.0, p)) + rng.integers(0, 2, (n, 1)) * 2.0)
    return sp.csr_matrix(np.log1p(x).astype(np.float32)), np.log1p(depth)


def test_matches_dense_regress_out_then_pca():
    x, covariate = _data()
    pcs, projection = fit_principal_components(x, 5, seed=0, covariate=covariate)
    dense = x.toarray().astype(np.float64)
    design = np.column_stack([np.ones_like(covariate), covariate])
    residual = dense - design @ np.linalg.lstsq(design, dense, rcond=None)[0]
    u, s, _ = np.linalg.svd(residual - residual.mean(0), full_matrices=False)
    expected = u[:, :5] * s[:5]
    for j in range(5):  # equal up to each component's sign
        assert min(np.abs(pcs[:, j] - expected[:, j]).max(), np.abs(pcs[:, j] + expected[:, j]).max()) < 1e-3
    assert max(abs(np.corrcoef(pcs[:, j], covariate)[0, 1]) for j in range(5)) < 1e-4
    assert projection.coef.shape == (40,) and projection.covariate_center.shape == (1,)


def test_projection_reproduces_the_fit_and_needs_the_covariate():
    x, covariate = _data(1)
    pcs, projection = fit_principal_components(x, 5, seed=0, standardize=True, covariate=covariate)
    np.testing.assert_allclose(projection.transform(x, covariate), pcs, atol=1e-3 * np.abs(pcs).max())
    with pytest.raises(ValueError, match="pass its value for each new row"):
        projection.transform(x)
    again, _ = fit_principal_components(x, 5, seed=0, standardize=True, covariate=covariate)
    assert np.array_equal(again, pcs)


def test_constant_or_misshapen_covariate_is_refused():
    x, covariate = _data()
    with pytest.raises(ValueError, match="constant"):
        fit_principal_components(x, 5, seed=0, covariate=np.ones(x.shape[0]))
    with pytest.raises(ValueError, match="299 values for 300 cells"):
        fit_principal_components(x, 5, seed=0, covariate=covariate[1:])


def test_arpack_failure_falls_back_to_the_covariance_eigendecomposition(monkeypatch):
    """Where ARPACK raises (forced here; a residual matrix without variance does it), the components come from the
    cross-product's eigendecomposition: the same as ARPACK's where both run, and zeros where nothing is left."""
    from scipy.sparse.linalg import ArpackError

    from omics_cl.data import regress

    x, covariate = _data()
    same = sp.csr_matrix(np.tile(x[:1].toarray(), (50, 1)))  # standardised: all zero
    with pytest.warns(UserWarning, match="ARPACK failed"):
        zero, _ = fit_principal_components(same, 5, 0, standardize=True, covariate=covariate[:50])
    np.testing.assert_allclose(zero, 0, atol=1e-6)
    pcs, projection = fit_principal_components(x, 5, seed=0, covariate=covariate)

    def failing(*args, **kwargs):
        raise ArpackError(-9)

    monkeypatch.setattr(regress, "svds", failing)
    with pytest.warns(UserWarning, match="ARPACK failed"):
        fallback, fallback_projection = fit_principal_components(x, 5, seed=0, covariate=covariate)
    np.testing.assert_allclose(fallback, pcs, atol=1e-4)
    np.testing.assert_allclose(fallback_projection.components, projection.components, atol=1e-5)
