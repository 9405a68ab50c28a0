"""Losses as functions of arrays, grouped by family.

- geometry: :func:`l2_normalize`
- contrastive: :func:`nt_xent` (SimCLR), :func:`clip_loss` (symmetric CLIP)
- likelihood: :func:`mse`, :func:`nb_nll`, :func:`zinb_nll` (with :func:`scaled_mean`)
- classification: :func:`cross_entropy` (integer labels)
- clustering: Student-t / DEC (:func:`student_t`, :func:`dec_target`, :func:`dec_kl`) and fuzzy
  c-means style (:func:`fuzzy_memberships`, :func:`balance`, :func:`fuzzy_loss`)
- domain alignment: NNDR (:func:`centring`, :func:`decorrelation`, :func:`inverse_variance`, :func:`nndr`)
  and :func:`feature_alignment`

optax has cross-entropy and KL too; its forms round differently in the last bit (measured: other
gradients), so these stay as the seeds wrote them and the tests check them against optax.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

EPS = 1e-8


# geometry
def l2_normalize(z: jax.Array) -> jax.Array:
    """Rows scaled to unit L2 norm. A zero row (an encoder's output for an all-zero input row, at initialisation)
    stays zero and gets a finite gradient: it is divided by the norm of a row of ones, as the norm's gradient at 0 is
    NaN. Other rows get the values and gradients of the formula before 2026-12-06 (inside a larger jitted step XLA
    may round them otherwise: scncl's training moved in its last bits)."""
    nonzero = jnp.any(z != 0, axis=-1, keepdims=True)
    return z / jnp.maximum(jnp.linalg.norm(jnp.where(nonzero, z, 1.0), axis=-1, keepdims=True), 1e-12)


# contrastive
def nt_xent(z1: jax.Array, z2: jax.Array, tau: float) -> jax.Array:
    """SimCLR NT-Xent: 2B rows, diagonal masked, each row's target is its partner (i <-> i+B)."""
    b = z1.shape[0]
    z = l2_normalize(jnp.concatenate([z1, z2], axis=0))
    sim = z @ z.T / tau
    sim = jnp.where(jnp.eye(2 * b, dtype=bool), -jnp.inf, sim)
    partner = jnp.concatenate([jnp.arange(b, 2 * b), jnp.arange(b)])
    log_prob = jax.nn.log_softmax(sim, axis=1)
    return -jnp.mean(log_prob[jnp.arange(2 * b), partner])


def clip_loss(za: jax.Array, zb: jax.Array, tau: float) -> jax.Array:
    """Symmetric CLIP loss: mean of row-wise and column-wise CE against the diagonal."""
    logits = l2_normalize(za) @ l2_normalize(zb).T / tau
    diag = jnp.arange(za.shape[0])
    rows = -jax.nn.log_softmax(logits, axis=1)[diag, diag]
    cols = -jax.nn.log_softmax(logits, axis=0)[diag, diag]
    return 0.5 * (jnp.mean(rows) + jnp.mean(cols))


# likelihood
def mse(x_hat: jax.Array, x: jax.Array) -> jax.Array:
    return jnp.mean((x_hat - x) ** 2)


def scaled_mean(log_mean: jax.Array, size_factor: jax.Array) -> jax.Array:
    """Mean of the count model: ``exp(log_mean)`` clamped to [1e-5, 1e6], times the cell's size factor."""
    return jnp.clip(jnp.exp(log_mean), 1e-5, 1e6) * size_factor.reshape(-1, 1)


def nb_terms(x: jax.Array, mu: jax.Array, theta: jax.Array) -> jax.Array:
    """Elementwise NB negative log-likelihood (DCA form)."""
    t1 = gammaln(theta + EPS) + gammaln(x + 1.0) - gammaln(x + theta + EPS)
    t2 = (theta + x) * jnp.log1p(mu / (theta + EPS)) + x * (jnp.log(theta + EPS) - jnp.log(mu + EPS))
    return t1 + t2


def nb_nll(x: jax.Array, mu: jax.Array, theta: jax.Array) -> jax.Array:
    """Mean NB negative log-likelihood of counts ``x`` with mean ``mu`` and dispersion ``theta``."""
    return jnp.mean(nb_terms(x, mu, theta))


def zinb_nll(x: jax.Array, mu: jax.Array, theta: jax.Array, pi: jax.Array, ridge: float = 0.0) -> jax.Array:
    """Mean ZINB negative log-likelihood (DCA form) with optional ridge ``ridge * pi^2``.

    Nonzero counts: NB term minus log(1 - pi); zeros: -log(pi + (1 - pi) * NB(0)).
    """
    nb_case = nb_terms(x, mu, theta) - jnp.log(1.0 - pi + EPS)
    nb_zero = jnp.exp(theta * (jnp.log(theta + EPS) - jnp.log(theta + mu + EPS)))
    zero_case = -jnp.log(pi + (1.0 - pi) * nb_zero + EPS)
    nll = jnp.where(x < 1e-8, zero_case, nb_case) + ridge * pi**2
    return jnp.mean(nll)


def bernoulli_nll(logits: jax.Array, nonzero: jax.Array) -> jax.Array:
    """Mean Bernoulli negative log-likelihood of the 0/1 targets ``nonzero`` under ``sigmoid(logits)``."""
    return jnp.mean(jax.nn.softplus(logits) - nonzero * logits)


# classification
def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy against integer ``labels``."""
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))


# clustering: Student-t / DEC
def student_t(z: jax.Array, centres: jax.Array) -> jax.Array:
    """DEC soft assignments ``q_ik ~ (1 + ||z_i - mu_k||^2)^-1`` on L2-normalised rows and centres, rows
    summing to 1."""
    cos = l2_normalize(z) @ l2_normalize(centres).T
    q = 1.0 / (1.0 + jnp.maximum(2.0 - 2.0 * cos, 0.0))  # squared distance of unit vectors, no n x K x d tensor
    return q / jnp.sum(q, 1, keepdims=True)


def dec_target(q: jax.Array) -> jax.Array:
    """Sharpened target ``p_ik ~ q_ik^2 / sum_i q_ik`` (rows summing to 1)."""
    p = q**2 / jnp.sum(q, 0, keepdims=True)
    return p / jnp.sum(p, 1, keepdims=True)


def dec_kl(p: jax.Array, q: jax.Array) -> jax.Array:
    """Mean over cells of ``KL(p_i || q_i)``."""
    return jnp.mean(jnp.sum(p * (jnp.log(p + EPS) - jnp.log(q + EPS)), 1))


# clustering: fuzzy memberships
def fuzzy_memberships(z: jax.Array, centres: jax.Array, gamma: float) -> tuple[jax.Array, jax.Array]:
    """``u_ik = softmax_k(-gamma * d_ik)`` and ``d_ik``, with d the squared distance of L2-normalised rows."""
    d = jnp.maximum(2.0 - 2.0 * l2_normalize(z) @ l2_normalize(centres).T, 0.0)
    return jax.nn.softmax(-gamma * d, axis=1), d


def balance(u: jax.Array) -> jax.Array:
    """``sum_k u_bar_k log u_bar_k`` of the batch-mean membership: -log K when balanced, 0 when one cluster."""
    u_bar = jnp.mean(u, axis=0)
    return jnp.sum(u_bar * jnp.log(u_bar + EPS))


def fuzzy_loss(u: jax.Array, d: jax.Array, m: float, alpha: float) -> jax.Array:
    """``mean_i sum_k sg(u_ik)^m d_ik + alpha * balance(u)``: as in fuzzy c-means, memberships are held fixed
    in the first term (otherwise uniform memberships from coinciding centres minimise it)."""
    return jnp.mean(jnp.sum(jax.lax.stop_gradient(u) ** m * d, axis=1)) + alpha * balance(u)


# domain alignment: NNDR (scJoint) and feature alignment
def centring(f: jax.Array) -> jax.Array:
    """``mean_j |mean_i F_ij|``: the batch mean of each dimension kept near zero."""
    return jnp.mean(jnp.abs(jnp.mean(f, axis=0)))


def decorrelation(f: jax.Array) -> jax.Array:
    """Mean absolute upper-triangle covariance of the dimensions."""
    centred = f - jnp.mean(f, axis=0)
    cov = centred.T @ centred / (f.shape[0] - 1)
    upper = jnp.triu(jnp.ones_like(cov, dtype=bool), k=1)
    return jnp.sum(jnp.where(upper, jnp.abs(cov), 0.0)) / jnp.sum(upper)


def inverse_variance(f: jax.Array) -> jax.Array:
    """``1 / mean |F - mean(F)|``: keeps the embedding from collapsing."""
    return 1.0 / (jnp.mean(jnp.abs(f - jnp.mean(f, axis=0))) + 1e-8)


def nndr(f: jax.Array, with_variance: bool) -> jax.Array:
    """Centring + decorrelation (+ inverse variance)."""
    out = centring(f) + decorrelation(f)
    return out + inverse_variance(f) if with_variance else out


def feature_alignment(h_query: jax.Array, h_reference: jax.Array, fraction: float) -> jax.Array:
    """-mean cos between each query cell and its most similar reference cell, over the top ``fraction`` of
    query cells by that similarity (matching and selection without gradient)."""
    a, r = l2_normalize(h_query), l2_normalize(h_reference)
    sims = jax.lax.stop_gradient(a @ r.T)
    match = jnp.argmax(sims, axis=1)
    best = jnp.max(sims, axis=1)
    n_keep = max(1, int(round(fraction * h_query.shape[0])))
    keep = jnp.argsort(-best)[:n_keep]
    return -jnp.mean(jnp.sum(a[keep] * r[match[keep]], axis=1))
