"""scI2CL's network (per-modality ZINB autoencoders, attention across masked views, cross-attention between the
modalities, the pair matcher) and its training loss; the method, its config and its read-offs are in
:mod:`omics_cl.models.sci2cl`, whose docstring describes the model."""
from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
from flax import nnx

from omics_cl.core import augment, losses
from omics_cl.core.layers import MLP, dropout_keys, encoder
from omics_cl.data.sources import KEYS

if TYPE_CHECKING:
    from omics_cl.models.sci2cl import SCI2CLConfig


class CountAutoEncoder(nnx.Module):
    """Encoder -> latent; decoder -> a count likelihood: ``"zinb"`` (mean times the cell's size factor,
    dropout, feature-wise dispersion) or ``"bernoulli"`` (whether each feature is non-zero, PeakVI's model of
    peaks; the mean head gives the logits)."""

    def __init__(self, n_features: int, config: SCI2CLConfig, likelihood: str = "zinb", *, rngs: nnx.Rngs):
        if not config.hidden:
            raise ValueError("hidden needs at least one layer size")
        self.likelihood = likelihood
        self.encoder = encoder(n_features, config.hidden, config.latent, config.dropout, rngs=rngs)
        self.decoder = MLP([config.latent, *reversed(config.hidden)], config.dropout, rngs=rngs)
        self.mean = nnx.Linear(config.hidden[0], n_features, rngs=rngs)
        if likelihood == "zinb":
            self.dropout_logit = nnx.Linear(config.hidden[0], n_features, rngs=rngs)
            self.log_theta = nnx.Param(jnp.zeros(n_features))

    def nll(self, z: jax.Array, batch: dict, ridge: float, key: jax.Array | None) -> jax.Array:
        h = jax.nn.gelu(self.decoder(z, key))
        if self.likelihood == "bernoulli":
            return losses.bernoulli_nll(self.mean(h), batch[KEYS.COUNTS] > 0)
        mu = losses.scaled_mean(self.mean(h), batch[KEYS.SIZE_FACTOR])
        theta = jnp.clip(jnp.exp(self.log_theta[...]), 1e-4, 1e4)
        return losses.zinb_nll(batch[KEYS.COUNTS], mu, theta, jax.nn.sigmoid(self.dropout_logit(h)), ridge)


class ViewAttention(nnx.Module):
    """Self-attention across the T views of each cell, max-pool over views, FFN."""

    def __init__(self, config: SCI2CLConfig, *, rngs: nnx.Rngs):
        self.attention = nnx.MultiHeadAttention(config.n_heads, config.latent, decode=False, rngs=rngs)
        self.ffn = MLP([config.latent, 2 * config.latent, config.latent], rngs=rngs)

    def __call__(self, views: jax.Array) -> jax.Array:  # (B, T, k) -> (B, k)
        return self.ffn(jnp.max(self.attention(views), axis=1))


class CrossAttention(nnx.Module):
    """``LayerNorm(Z_q + softmax((Z_q W^Q)(Z_kv W^K)^T / sqrt(d)) Z_kv W^V)`` over a set of cells."""

    def __init__(self, latent: int, *, rngs: nnx.Rngs):
        self.query = nnx.Linear(latent, latent, rngs=rngs)
        self.key = nnx.Linear(latent, latent, rngs=rngs)
        self.value = nnx.Linear(latent, latent, rngs=rngs)
        self.norm = nnx.LayerNorm(latent, rngs=rngs)

    def __call__(self, z_query: jax.Array, z_context: jax.Array) -> jax.Array:
        scores = self.query(z_query) @ self.key(z_context).T / jnp.sqrt(z_query.shape[-1])
        return self.norm(z_query + jax.nn.softmax(scores, axis=-1) @ self.value(z_context))


class SCI2CL(nnx.Module):
    def __init__(self, n_genes: int, n_peaks: int, config: SCI2CLConfig, *, rngs: nnx.Rngs):
        self.rna = CountAutoEncoder(n_genes, config, rngs=rngs)
        self.atac = CountAutoEncoder(n_peaks, config, config.atac_likelihood, rngs=rngs)
        self.rna_views = ViewAttention(config, rngs=rngs)
        self.atac_views = ViewAttention(config, rngs=rngs)
        self.rna_to_atac = CrossAttention(config.latent, rngs=rngs)
        self.atac_to_rna = CrossAttention(config.latent, rngs=rngs)
        self.matcher = MLP([2 * config.latent, config.latent, 1], rngs=rngs)
        self.cross_attention = config.cross_attention

    def fuse(self, z_rna, z_atac, context_rna, context_atac) -> tuple[jax.Array, jax.Array]:
        """``(Z_{r->a}, Z_{a->r})``, or ``(Z_r, Z_a)`` without cross-attention."""
        if not self.cross_attention:
            return z_rna, z_atac
        return self.rna_to_atac(z_rna, context_atac), self.atac_to_rna(z_atac, context_rna)


def hard_negatives(key: jax.Array, z_rna: jax.Array, z_atac: jax.Array, tau: float) -> jax.Array:
    """For each cell i, one index j != i drawn with probability proportional to exp(cos(Z_r[i], Z_a[j]) / tau).

    Only the embeddings are read (no labels); the true pair is excluded by construction.
    """
    za = jax.lax.stop_gradient(losses.l2_normalize(z_rna))
    zb = jax.lax.stop_gradient(losses.l2_normalize(z_atac))
    logits = za @ zb.T / tau
    logits = jnp.where(jnp.eye(z_rna.shape[0], dtype=bool), -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=1)


def view_loss(ae: CountAutoEncoder, views: ViewAttention, x: jax.Array, z: jax.Array, n_views: int,
              mask_rate: float, key: jax.Array, drop) -> jax.Array:
    """``mean ||sg(Z) - Z_hat||^2`` on L2-normalised embeddings, Z_hat from T column-masked views through the
    shared encoder. Two deviations from the seed, both measured on MOp: on raw embeddings the loss is minimised
    by shrinking every embedding to zero (MOC stuck at log(batch size), ARI 0); normalised but with gradients
    into Z too, embeddings collapse in direction (3 epochs: ARI .18 vs .27 with the stop-gradient)."""
    masked = jnp.stack([augment.column_mask(jax.random.fold_in(key, t), x, mask_rate) for t in range(n_views)], 1)
    b, t, d = masked.shape
    z_views = ae.encoder(masked.reshape(b * t, d), drop).reshape(b, t, -1)
    diff = losses.l2_normalize(jax.lax.stop_gradient(z)) - losses.l2_normalize(views(z_views))
    return jnp.mean(jnp.sum(diff**2, axis=-1))


def make_loss(config: SCI2CLConfig, stage: str = "joint"):
    """Loss ``(model, batch, key, train)``; ``stage="pretrain"`` is the per-modality ZINB reconstruction only."""

    def loss_fn(model: SCI2CL, batch, key, train: bool):
        keys = jax.random.split(key, 6)
        drop = dropout_keys(keys[0], train)
        rna, atac = batch[KEYS.RNA], batch[KEYS.ATAC]
        x_rna, x_atac = rna[KEYS.X], atac[KEYS.X]
        if train and config.input_dropout > 0:
            x_rna = augment.gene_dropout(keys[4], x_rna, config.input_dropout)
            x_atac = augment.gene_dropout(keys[5], x_atac, config.input_dropout)
        z_rna = model.rna.encoder(x_rna, drop(0))
        z_atac = model.atac.encoder(x_atac, drop(1))
        rec_rna = model.rna.nll(z_rna, rna, config.zinb_ridge, drop(2))
        rec_atac = model.atac.nll(z_atac, atac, config.zinb_ridge, drop(3))
        metrics = {"zinb_rna": rec_rna, f"{config.atac_likelihood}_atac": rec_atac}
        total = config.rec_weight * (rec_rna + rec_atac)
        if stage == "pretrain":
            return total, metrics
        if config.mse_weight > 0:
            mse = (view_loss(model.rna, model.rna_views, rna[KEYS.X], z_rna, config.n_views, config.mask_rate,
                             keys[1], drop(4))
                   + view_loss(model.atac, model.atac_views, atac[KEYS.X], z_atac, config.n_views,
                               config.mask_rate, keys[2], drop(5)))
            total, metrics["mse"] = total + config.mse_weight * mse, mse
        if config.moc_weight > 0:
            moc = losses.clip_loss(z_rna, z_atac, config.clip_temperature)
            total, metrics["moc"] = total + config.moc_weight * moc, moc
        if config.mom_weight > 0:
            f_rna, f_atac = model.fuse(z_rna, z_atac, z_rna, z_atac)
            neg = hard_negatives(keys[3], z_rna, z_atac, config.negative_temperature)
            pos_logit = model.matcher(jnp.concatenate([f_rna, f_atac], 1))[:, 0]
            neg_logit = model.matcher(jnp.concatenate([f_rna, f_atac[neg]], 1))[:, 0]
            mom = 0.5 * (jnp.mean(jax.nn.softplus(-pos_logit)) + jnp.mean(jax.nn.softplus(neg_logit)))
            total, metrics["mom"] = total + config.mom_weight * mom, mom
        return total, metrics

    return loss_fn
