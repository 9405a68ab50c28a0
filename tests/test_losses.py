import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats
from scipy.special import logsumexp

from omics_cl.core import losses


def _normalize(z):
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def test_nt_xent_matches_naive_loop():
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    tau = 0.3
    z = _normalize(np.vstack([z1, z2]))
    total = 0.0
    for i in range(12):
        partner = (i + 6) % 12
        others = [z[i] @ z[j] / tau for j in range(12) if j != i]
        total += -(z[i] @ z[partner] / tau - logsumexp(others))
    assert np.isclose(float(losses.nt_xent(jnp.array(z1), jnp.array(z2), tau)), total / 12, rtol=1e-5)


def test_clip_loss_matches_naive():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    tau = 0.5
    logits = _normalize(a) @ _normalize(b).T / tau
    rows = np.mean([-(logits[i, i] - logsumexp(logits[i])) for i in range(5)])
    cols = np.mean([-(logits[i, i] - logsumexp(logits[:, i])) for i in range(5)])
    assert np.isclose(float(losses.clip_loss(jnp.array(a), jnp.array(b), tau)), (rows + cols) / 2, rtol=1e-5)


def test_mse():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    assert np.isclose(float(losses.mse(jnp.array(a), jnp.array(b))), np.mean((a - b) ** 2), rtol=1e-6)


def _nb_case():
    rng = np.random.default_rng(3)
    x = rng.poisson(3.0, size=(8, 6)).astype(np.float64)
    x[0, :3] = 0
    mu = rng.uniform(0.5, 6.0, size=x.shape)
    theta = rng.uniform(0.5, 4.0, size=x.shape)
    pi = rng.uniform(0.05, 0.6, size=x.shape)
    return x, mu, theta, pi


def test_nb_nll_matches_scipy():
    x, mu, theta, _ = _nb_case()
    ref = -stats.nbinom.logpmf(x, theta, theta / (theta + mu)).mean()
    got = float(losses.nb_nll(jnp.array(x), jnp.array(mu), jnp.array(theta)))
    assert np.isclose(got, ref, rtol=1e-4)


def test_zinb_nll_matches_scipy_mixture():
    x, mu, theta, pi = _nb_case()
    nb = stats.nbinom(theta, theta / (theta + mu))
    ll = np.where(x == 0, np.log(pi + (1 - pi) * nb.pmf(0)), np.log(1 - pi) + nb.logpmf(x))
    ridge = 0.1
    ref = (-ll + ridge * pi**2).mean()
    got = float(losses.zinb_nll(jnp.array(x), jnp.array(mu), jnp.array(theta), jnp.array(pi), ridge))
    assert np.isclose(got, ref, rtol=1e-4)


def test_bernoulli_nll_matches_scipy():
    rng = np.random.default_rng(0)
    logits, y = rng.normal(0, 3, (20, 7)), rng.random((20, 7)) < 0.3
    ref = -stats.bernoulli.logpmf(y, 1 / (1 + np.exp(-logits))).mean()
    assert np.isclose(float(losses.bernoulli_nll(jnp.array(logits), jnp.array(y))), ref, rtol=1e-5)


def test_scaled_mean_clamps_and_scales():
    mu = losses.scaled_mean(jnp.array([[-100.0, 0.0, 100.0]]), jnp.array([2.0]))
    assert np.allclose(np.asarray(mu), [[2e-5, 2.0, 2e6]], rtol=1e-5)


def test_cross_entropy_and_dec_kl_agree_with_optax():
    import jax
    import optax

    logits = jax.random.normal(jax.random.key(0), (64, 7)) * 3
    labels = jax.random.randint(jax.random.key(1), (64,), 0, 7)
    expected = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    assert np.isclose(float(losses.cross_entropy(logits, labels)), float(expected), rtol=1e-5)
    q = jax.nn.softmax(jax.random.normal(jax.random.key(2), (64, 5)))
    p = losses.dec_target(q)
    expected = jnp.mean(optax.kl_divergence(jnp.log(q), p))  # summed over classes per row
    assert np.isclose(float(losses.dec_kl(p, q)), float(expected), rtol=1e-4)


def test_student_t_and_dec_target_rows_sum_to_one_and_sharpen():
    rng = np.random.default_rng(0)
    z, centres = rng.normal(size=(40, 6)), rng.normal(size=(4, 6))
    q = np.asarray(losses.student_t(jnp.asarray(z), jnp.asarray(centres)))
    p = np.asarray(losses.dec_target(jnp.asarray(q)))
    assert np.allclose(q.sum(1), 1, atol=1e-6) and np.allclose(p.sum(1), 1, atol=1e-6)
    assert (p.max(1) >= q.max(1) - 1e-7).all()
    cos = _normalize(z) @ _normalize(centres).T
    assert (q.argmax(1) == cos.argmax(1)).all()


def test_l2_normalize_keeps_zero_rows():
    out = np.asarray(losses.l2_normalize(jnp.asarray([[3.0, 4.0], [0.0, 0.0]])))
    assert np.allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def test_l2_normalize_gradient_is_finite_at_a_zero_row_and_unchanged_elsewhere():
    """A zero row (an encoder's output for an all-zero input at initialisation) once made every gradient NaN."""
    z = jnp.asarray(np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32))
    other = jnp.asarray(np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32))

    def loss(normalize, z):
        return jnp.sum(normalize(z) @ normalize(other).T)

    def before(z):  # the formula before 2026-12-06's forty-ninth session
        return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)

    assert np.array_equal(losses.l2_normalize(z), before(z))
    assert np.array_equal(jax.grad(lambda z: loss(losses.l2_normalize, z))(z), jax.grad(lambda z: loss(before, z))(z))
    zeroed = z.at[2].set(0.0)
    assert np.isnan(jax.grad(lambda z: loss(before, z))(zeroed)).any()
    grad = jax.grad(lambda z: loss(losses.l2_normalize, z))(zeroed)
    assert np.isfinite(grad).all()
    unit_other = np.asarray(other) / np.linalg.norm(other, axis=1, keepdims=True)
    assert np.allclose(grad[2], unit_other.sum(0) / np.sqrt(z.shape[1]))  # the zero row divided by a ones row's norm
