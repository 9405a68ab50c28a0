"""MLP encoder / decoder blocks (flax.nnx).

Dropout takes an explicit PRNG key at call time (``key=None`` means evaluation mode), so
a module holds only parameters and the training step stays a pure function.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx


def dropout_keys(key: jax.Array, train: bool) -> Callable[[int], jax.Array | None]:
    """``i -> key for the i-th dropout site`` while training; ``i -> None`` (no dropout) otherwise."""
    if train:
        return lambda i: jax.random.fold_in(key, i)
    return lambda i: None


def dropout(key: jax.Array, x: jax.Array, rate: float) -> jax.Array:
    """Inverted dropout: zero each entry with probability ``rate`` and rescale the rest."""
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


class MLP(nnx.Module):
    """Hidden blocks ``Linear -> LayerNorm -> activation (GELU) -> Dropout(p)``, then a plain ``Linear``."""

    def __init__(self, dims: Sequence[int], dropout_rate: float = 0.0,
                 activation: Callable[[jax.Array], jax.Array] = jax.nn.gelu, *, rngs: nnx.Rngs):
        if len(dims) < 2:
            raise ValueError(f"MLP needs at least input and output sizes, got {list(dims)}")
        self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-2], dims[1:-1])])
        self.norms = nnx.List([nnx.LayerNorm(b, rngs=rngs) for b in dims[1:-1]])
        self.out = nnx.Linear(dims[-2], dims[-1], rngs=rngs)
        self.dropout_rate = dropout_rate
        self.activation = activation

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        for i, (linear, norm) in enumerate(zip(self.hidden, self.norms)):
            x = self.activation(norm(linear(x)))
            if key is not None and self.dropout_rate > 0:
                x = dropout(jax.random.fold_in(key, i), x, self.dropout_rate)
        return self.out(x)


def encoder(n_in: int, hidden: Sequence[int], n_latent: int, dropout_rate: float,
            activation: Callable[[jax.Array], jax.Array] = jax.nn.gelu, *, rngs: nnx.Rngs) -> MLP:
    return MLP([n_in, *hidden, n_latent], dropout_rate, activation, rngs=rngs)


def decoder(n_latent: int, hidden: Sequence[int], n_out: int, dropout_rate: float,
            activation: Callable[[jax.Array], jax.Array] = jax.nn.gelu, *, rngs: nnx.Rngs) -> MLP:
    """The mirror of :func:`encoder` built with the same ``hidden`` sizes."""
    return MLP([n_latent, *reversed(hidden), n_out], dropout_rate, activation, rngs=rngs)
