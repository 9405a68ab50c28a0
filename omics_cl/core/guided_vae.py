"""Peak-gene guided VAE: an ATAC latent tied to an RNA reference through a guidance graph (after scGLUE, Cao &
Gao 2022, without its adversarial alignment, which collapsed the ATAC latent on MOp: benchmarks/label_transfer.md).

Variational encoders read the reference's PCA and the query's LSI; negative-binomial decoders reconstruct the RNA
counts and the peak counts as ``softplus(scale) * z . v + bias`` from feature embeddings ``v``: one GCN layer
over the guidance graph (``omics_cl.data.guidance``) of free vertex embeddings, trained with a link loss (edges
against random vertices). Genes and the peaks near them share embeddings, so the two latents share a space
without any cell pairing or label. Inputs are the batches of ``omics_cl.data.guidance.UnpairedSource``.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.scipy.special import gammaln

from omics_cl.core.layers import dropout
from omics_cl.data.guidance import GuidanceGraph


@dataclass(frozen=True)
class GuidedVAEConfig:
    n_latent: int = 50
    hidden: int = 256
    dropout_rate: float = 0.2
    n_pcs: int = 100  # RNA encoder input: PCA of the reference's scaled log-normalised counts
    n_lsi: int = 100  # ATAC encoder input: LSI of the query's peaks
    peak_subset: int = 2048  # peaks reconstructed per batch (0: all)
    edge_batch: int = 512  # graph edges per batch in the link loss
    negatives: int = 10  # random vertices per edge
    graph_weight: float = 0.02  # scGLUE's lam_graph
    kl_weight: float = 1.0
    epochs: int = 150
    batch_size: int = 512
    learning_rate: float = 4e-3


class VariationalEncoder(nnx.Module):
    """Two ``Linear -> LeakyReLU(0.2) -> Dropout`` blocks, then a mean and a softplus scale head."""

    def __init__(self, n_in: int, hidden: int, n_latent: int, dropout_rate: float, *, rngs: nnx.Rngs):
        init = jax.nn.initializers.he_normal()
        self.layers = nnx.List([nnx.Linear(n_in, hidden, kernel_init=init, rngs=rngs),
                                nnx.Linear(hidden, hidden, kernel_init=init, rngs=rngs)])
        self.mean = nnx.Linear(hidden, n_latent, kernel_init=init, rngs=rngs)
        self.scale = nnx.Linear(hidden, n_latent, kernel_init=init, rngs=rngs)
        self.dropout_rate = dropout_rate

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        for i, layer in enumerate(self.layers):
            x = jax.nn.leaky_relu(layer(x), 0.2)
            if key is not None:
                x = dropout(jax.random.fold_in(key, i), x, self.dropout_rate)
        return self.mean(x), jax.nn.softplus(self.scale(x)) + 1e-7


class GuidedVAE(nnx.Module):
    def __init__(self, n_rna_in: int, n_atac_in: int, graph: GuidanceGraph, config: GuidedVAEConfig, *,
                 rngs: nnx.Rngs):
        c = config
        self.rna_encoder = VariationalEncoder(n_rna_in, c.hidden, c.n_latent, c.dropout_rate, rngs=rngs)
        self.atac_encoder = VariationalEncoder(n_atac_in, c.hidden, c.n_latent, c.dropout_rate, rngs=rngs)
        self.vertices = nnx.Param(jax.random.normal(rngs.params(), (graph.n_vertices, c.n_latent)) * 0.1)
        self.gene_scale, self.gene_bias, self.gene_log_theta = (nnx.Param(jnp.zeros(graph.n_genes)) for _ in "sbt")
        self.peak_scale, self.peak_bias, self.peak_log_theta = (nnx.Param(jnp.zeros(graph.n_peaks)) for _ in "sbt")


def kl_normal(mean: jax.Array, scale: jax.Array) -> jax.Array:
    """Mean over cells of KL(N(mean, scale^2) || N(0, 1)), summed over latent dimensions."""
    return jnp.mean(jnp.sum(0.5 * (mean ** 2 + scale ** 2) - jnp.log(scale) - 0.5, 1))


def nb_reconstruction(z: jax.Array, embeddings: jax.Array, scale, bias, log_theta, counts, library) -> jax.Array:
    """NB negative log-likelihood of ``counts`` with mean ``softmax(softplus(scale) * z . v + bias) * library``,
    per count, without its ``log(counts!)`` term (no parameter in it); ``gammaln(theta)`` once per feature."""
    logits = jax.nn.softplus(scale) * (z @ embeddings.T) + bias
    log_mean = jax.nn.log_softmax(logits, 1) + jnp.log(library)[:, None]
    theta = jnp.exp(log_theta)
    log_total = jnp.logaddexp(log_theta, log_mean)  # log(theta + mean)
    log_likelihood = (gammaln(counts + theta) - gammaln(theta) + theta * (log_theta - log_total)
                      + counts * (log_mean - log_total))
    return -jnp.mean(log_likelihood)


def make_loss(graph: GuidanceGraph, config: GuidedVAEConfig):
    """``loss_fn(model, batch, key, train)`` for :func:`omics_cl.core.train.fit`: both ELBOs plus the link loss."""
    src, dst, weight = jnp.asarray(graph.src), jnp.asarray(graph.dst), jnp.asarray(graph.weight)
    n_genes, n_peaks, n_vertices = graph.n_genes, graph.n_peaks, graph.n_vertices

    def loss_fn(model: GuidedVAE, batch, key: jax.Array, train: bool):
        keys = jax.random.split(key, 4)
        rna_mean, rna_sd = model.rna_encoder(batch["rna_x"], keys[0] if train else None)
        atac_mean, atac_sd = model.atac_encoder(batch["atac_x"], keys[1] if train else None)
        z_rna = rna_mean + rna_sd * jax.random.normal(keys[2], rna_mean.shape)
        z_atac = atac_mean + atac_sd * jax.random.normal(keys[3], atac_mean.shape)
        v = jax.ops.segment_sum(weight[:, None] * model.vertices[...][src], dst, n_vertices)
        peaks = batch["peaks"]
        rna_nll = nb_reconstruction(z_rna, v[:n_genes], model.gene_scale[...], model.gene_bias[...],
                                    model.gene_log_theta[...], batch["rna_counts"], batch["rna_library"])
        atac_nll = nb_reconstruction(z_atac, v[n_genes:][peaks], model.peak_scale[...][peaks],
                                     model.peak_bias[...][peaks], model.peak_log_theta[...][peaks],
                                     batch["atac_counts"], batch["atac_library"])
        elbo = (rna_nll + config.kl_weight * kl_normal(rna_mean, rna_sd) / n_genes
                + atac_nll + config.kl_weight * kl_normal(atac_mean, atac_sd) / n_peaks)
        edges, negatives = batch["edges"], batch["negatives"]
        positive = jnp.sum(v[edges[:, 0]] * v[edges[:, 1]], 1)
        negative = jnp.sum(v[edges[:, 0]][:, None] * v[negatives], 2)
        link = -jnp.mean(jax.nn.log_sigmoid(positive)) - jnp.mean(jax.nn.log_sigmoid(-negative))
        prior = 0.5 * jnp.mean(jnp.sum(model.vertices[...] ** 2, 1)) / n_vertices
        loss = elbo + config.graph_weight * 2 * (link + prior)
        return loss, {"rna_nll": rna_nll, "atac_nll": atac_nll, "link": link}

    return loss_fn


def encode_means(encoder: VariationalEncoder, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """The encoder's means of ``x`` (no dropout), in batches."""
    apply = nnx.jit(lambda e, rows: e(rows)[0])
    return np.concatenate([np.asarray(apply(encoder, jnp.asarray(x[i:i + batch_size])))
                           for i in range(0, len(x), batch_size)])
