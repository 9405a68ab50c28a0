import jax
import jax.numpy as jnp
import numpy as np

from omics_cl.core import augment

KEY = jax.random.key(0)
X = jnp.asarray(np.random.default_rng(0).uniform(1.0, 2.0, size=(400, 300)), dtype=jnp.float32)


def test_gene_dropout_zeroes_about_p_and_keeps_the_rest():
    out = np.asarray(augment.gene_dropout(KEY, X, 0.2))
    zero = out == 0
    assert abs(zero.mean() - 0.2) < 0.01
    assert np.array_equal(out[~zero], np.asarray(X)[~zero])


def test_gaussian_noise_moments():
    d = np.asarray(augment.gaussian_noise(KEY, X, 0.05) - X)
    assert abs(d.mean()) < 1e-3 and abs(d.std() - 0.05) < 1e-3


def test_library_scaling_one_factor_per_cell_within_range():
    ratio = np.asarray(augment.library_scaling(KEY, X, 0.9, 1.1) / X)
    assert np.allclose(ratio, ratio[:, :1], rtol=1e-5)
    assert ratio.min() >= 0.9 and ratio.max() <= 1.1 and ratio[:, 0].std() > 0.03


def test_uniform_noise_bounded():
    d = np.asarray(augment.uniform_noise(KEY, X, 0.3) - X)
    assert np.abs(d).max() <= 0.3 + 1e-6 and abs(d.mean()) < 5e-3 and d.max() > 0.29


def test_column_mask_same_columns_for_every_cell():
    out = np.asarray(augment.column_mask(KEY, X, 0.4))
    masked = (out == 0).all(axis=0)
    assert ((out == 0) == masked[None, :]).all()
    assert 0.3 < masked.mean() < 0.5
    assert np.array_equal(out[:, ~masked], np.asarray(X)[:, ~masked])


def test_multiplicative_noise_moments():
    r = np.asarray(augment.multiplicative_noise(KEY, X, 0.1) / X)
    assert abs(r.mean() - 1) < 1e-3 and abs(r.std() - 0.1) < 1e-3


def test_drop_edges_fraction_and_shape():
    w = jnp.ones((1000, 15))
    out = np.asarray(augment.drop_edges(KEY, w, 0.1))
    assert out.shape == (1000, 15) and abs((out == 0).mean() - 0.1) < 0.01


def test_same_key_same_view_different_key_different_view():
    aug = augment.compose(lambda k, x: augment.gene_dropout(k, x, 0.2),
                          lambda k, x: augment.gaussian_noise(k, x, 0.05))
    assert np.array_equal(np.asarray(aug(KEY, X)), np.asarray(aug(KEY, X)))
    assert not np.array_equal(np.asarray(aug(KEY, X)), np.asarray(aug(jax.random.key(1), X)))
