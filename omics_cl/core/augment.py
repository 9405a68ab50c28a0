"""Augmentations as pure functions ``aug(key, X, ...) -> X'`` on a minibatch (cells x features)."""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Augment = Callable[[jax.Array, jax.Array], jax.Array]


def gene_dropout(key: jax.Array, x: jax.Array, p: float) -> jax.Array:
    """Zero each entry independently with probability ``p``."""
    return jnp.where(jax.random.bernoulli(key, p, x.shape), 0.0, x)


def gaussian_noise(key: jax.Array, x: jax.Array, sigma: float) -> jax.Array:
    """Add N(0, sigma^2) to each entry."""
    return x + sigma * jax.random.normal(key, x.shape, x.dtype)


def library_scaling(key: jax.Array, x: jax.Array, low: float, high: float) -> jax.Array:
    """Multiply each row (cell) by one factor drawn from U(low, high)."""
    factor = jax.random.uniform(key, (x.shape[0], 1), x.dtype, low, high)
    return x * factor


def uniform_noise(key: jax.Array, x: jax.Array, eps: float) -> jax.Array:
    """Add U(-eps, eps) to each entry."""
    return x + jax.random.uniform(key, x.shape, x.dtype, -eps, eps)


def column_mask(key: jax.Array, x: jax.Array, p: float) -> jax.Array:
    """Zero one random set of features (each with probability ``p``) for the whole batch."""
    masked = jax.random.bernoulli(key, p, (1, x.shape[-1]))
    return jnp.where(masked, 0.0, x)


def multiplicative_noise(key: jax.Array, x: jax.Array, sigma: float) -> jax.Array:
    """Multiply each entry by N(1, sigma^2)."""
    return x * (1.0 + sigma * jax.random.normal(key, x.shape, x.dtype))


def drop_edges(key: jax.Array, edge_weights: jax.Array, p: float) -> jax.Array:
    """Drop each graph edge with probability ``p`` by zeroing its weight (any shape, e.g. n x k)."""
    return jnp.where(jax.random.bernoulli(key, p, edge_weights.shape), 0.0, edge_weights)


def compose(*augments: Augment) -> Augment:
    """Apply augmentations in order, each with its own sub-key."""

    def apply(key: jax.Array, x: jax.Array) -> jax.Array:
        for i, aug in enumerate(augments):
            x = aug(jax.random.fold_in(key, i), x)
        return x

    return apply
