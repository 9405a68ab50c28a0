"""Losses as functions of arrays: contrastive (NT-Xent, symmetric CLIP) and likelihoods (MSE, NB, ZINB)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

EPS = 1e-8


def _l2_normalize(z: jax.Array) -> jax.Array:
    return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)


def nt_xent(z1: jax.Array, z2: jax.Array, tau: float) -> jax.Array:
    """SimCLR NT-Xent: 2B rows, diagonal masked, each row's target is its partner (i <-> i+B)."""
    b = z1.shape[0]
    z = _l2_normalize(jnp.concatenate([z1, z2], axis=0))
    sim = z @ z.T / tau
    sim = jnp.where(jnp.eye(2 * b, dtype=bool), -jnp.inf, sim)
    partner = jnp.concatenate([jnp.arange(b, 2 * b), jnp.arange(b)])
    log_prob = jax.nn.log_softmax(sim, axis=1)
    return -jnp.mean(log_prob[jnp.arange(2 * b), partner])


def clip_loss(za: jax.Array, zb: jax.Array, tau: float) -> jax.Array:
    """Symmetric CLIP loss: mean of row-wise and column-wise CE against the diagonal."""
    logits = _l2_normalize(za) @ _l2_normalize(zb).T / tau
    diag = jnp.arange(za.shape[0])
    rows = -jax.nn.log_softmax(logits, axis=1)[diag, diag]
    cols = -jax.nn.log_softmax(logits, axis=0)[diag, diag]
    return 0.5 * (jnp.mean(rows) + jnp.mean(cols))


def mse(x_hat: jax.Array, x: jax.Array) -> jax.Array:
    return jnp.mean((x_hat - x) ** 2)


def scaled_mean(log_mean: jax.Array, size_factor: jax.Array) -> jax.Array:
    """Mean of the count model: ``exp(log_mean)`` clamped to [1e-5, 1e6], times the cell's size factor."""
    return jnp.clip(jnp.exp(log_mean), 1e-5, 1e6) * size_factor.reshape(-1, 1)


def _nb_terms(x: jax.Array, mu: jax.Array, theta: jax.Array) -> jax.Array:
    """Elementwise NB negative log-likelihood (DCA form)."""
    t1 = gammaln(theta + EPS) + gammaln(x + 1.0) - gammaln(x + theta + EPS)
    t2 = (theta + x) * jnp.log1p(mu / (theta + EPS)) + x * (jnp.log(theta + EPS) - jnp.log(mu + EPS))
    return t1 + t2


def nb_nll(x: jax.Array, mu: jax.Array, theta: jax.Array) -> jax.Array:
    """Mean NB negative log-likelihood of counts ``x`` with mean ``mu`` and dispersion ``theta``."""
    return jnp.mean(_nb_terms(x, mu, theta))


def zinb_nll(x: jax.Array, mu: jax.Array, theta: jax.Array, pi: jax.Array, ridge: float = 0.0) -> jax.Array:
    """Mean ZINB negative log-likelihood (DCA form) with optional ridge ``ridge * pi^2``.

    Nonzero counts: NB term minus log(1 - pi); zeros: -log(pi + (1 - pi) * NB(0)).
    """
    nb_case = _nb_terms(x, mu, theta) - jnp.log(1.0 - pi + EPS)
    nb_zero = jnp.exp(theta * (jnp.log(theta + EPS) - jnp.log(theta + mu + EPS)))
    zero_case = -jnp.log(pi + (1.0 - pi) * nb_zero + EPS)
    nll = jnp.where(x < 1e-8, zero_case, nb_case) + ridge * pi**2
    return jnp.mean(nll)
