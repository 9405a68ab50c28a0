"""Method 5: scNCL, RNA -> ATAC label transfer with neighbourhood contrastive regularisation.

One encoder f (linear, or a 2-layer MLP) shared by RNA and gene-activity inputs, latent 64, and a
linear classifier g. Per step, with a labelled RNA batch A, an ATAC batch B and one random kNN
neighbour of each ATAC cell (neighbours from the ATAC peak-space graph):

    L = w_ce CE(g(f(A)), y_A) + w_nndr [NNDR_rna(f(A)) + NNDR_atac(f(B))] + w_align FA(f(B), f(A))
        + w_ncl NTXent(f(B), f(B_nb), tau) + w_l1 sum|W|

NNDR (from scJoint) is asymmetric: RNA gets centring + decorrelation, ATAC also the variance term.
Centring is ``mean_j |mean_i F_ij|`` (the batch mean of each latent dimension kept near zero, as the
seed describes it); decorrelation ``mean |upper triangle of cov(F)|``; variance ``1 / mean |F - mean(F)|``.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from omics_cl.core import losses
from omics_cl.core.layers import MLP, dropout_keys
from omics_cl.core.train import Stage, TrainConfig, predict
from omics_cl.data.sources import KEYS, TransferSource, dense_source
from omics_cl.models.method import Method


@dataclass(frozen=True)
class SCNCLConfig:
    """Loss weights and model sizes. ``ncl_weight`` 0.3, not 1: on benchmark seeds 0-1 (MOp, closed set)
    weights 0 / 0.1 / 0.3 / 0.5 / 1 gave accuracy about .53 / .59 / .60 / .57 / .52 (the record is in
    benchmarks/README.md); the other weights are 1 as in the seed."""

    encoder: str = "mlp"
    hidden: int = 256
    latent: int = 64
    dropout: float = 0.0
    ce_weight: float = 1.0
    nndr_weight: float = 1.0
    align_weight: float = 1.0
    ncl_weight: float = 0.3
    l1_weight: float = 1e-5
    align_fraction: float = 0.8
    temperature: float = 0.4
    symmetric_nndr: bool = False


class SCNCL(nnx.Module):
    def __init__(self, n_features: int, n_classes: int, config: SCNCLConfig, *, rngs: nnx.Rngs):
        if config.encoder not in ("linear", "mlp"):
            raise ValueError(f"encoder must be 'linear' or 'mlp', got {config.encoder!r}")
        dims = [n_features, config.latent] if config.encoder == "linear" else [n_features, config.hidden,
                                                                                config.latent]
        self.encoder = MLP(dims, config.dropout, rngs=rngs)
        self.classifier = nnx.Linear(config.latent, n_classes, rngs=rngs)


def l1_penalty(model: SCNCL) -> jax.Array:
    kernels = [leaf for path, leaf in nnx.to_flat_state(nnx.state(model, nnx.Param)) if path[-1] == "kernel"]
    return sum(jnp.sum(jnp.abs(k[...])) for k in kernels)


def make_loss(config: SCNCLConfig):
    def loss_fn(model: SCNCL, batch, key, train: bool):
        drop = dropout_keys(key, train)
        rna, atac = batch[KEYS.RNA], batch[KEYS.ATAC]
        h_rna = model.encoder(rna[KEYS.X], drop(0))
        h_atac = model.encoder(atac[KEYS.X], drop(1))
        h_nb = model.encoder(atac[KEYS.NEIGHBOR_X], drop(2))
        ce = losses.cross_entropy(model.classifier(h_rna), rna[KEYS.LABEL])
        reg = losses.nndr(h_rna, config.symmetric_nndr) + losses.nndr(h_atac, True)
        align = losses.feature_alignment(h_atac, h_rna, config.align_fraction)
        ncl = losses.nt_xent(h_atac, h_nb, config.temperature) if config.ncl_weight > 0 else jnp.zeros(())
        l1 = l1_penalty(model)
        total = (config.ce_weight * ce + config.nndr_weight * reg + config.align_weight * align
                 + config.ncl_weight * ncl + config.l1_weight * l1)
        return total, {"ce": ce, "nndr": reg, "align": align, "ncl": ncl}

    return loss_fn


def transfer_source(inputs, config: SCNCLConfig, ctx) -> TransferSource:
    """Batches from ``omics_cl.data.transfer.TransferInputs``."""
    return TransferSource(inputs.rna_x, inputs.rna_y.astype(np.int32), inputs.atac_x, inputs.neighbors,
                          inputs.n_classes, ctx.seed)


def embed(model: SCNCL, source: TransferSource, config: SCNCLConfig, train: TrainConfig, ctx):
    """Embeddings of every reference and query cell, and the query's class probabilities."""
    rna_rows, atac_rows = dense_source(source.rna_x), dense_source(source.atac_x)
    encode = lambda m, b: m.encoder(b[KEYS.X])  # noqa: E731
    return {"rna_embedding": predict(encode, model, rna_rows), "atac_embedding": predict(encode, model, atac_rows),
            "probabilities": predict(lambda m, b: jax.nn.softmax(m.classifier(m.encoder(b[KEYS.X]))), model,
                                     atac_rows)}, {}


METHOD = Method(
    name="scncl", job="transfer", config=SCNCLConfig(), train=TrainConfig(epochs=50, batch_size=256),
    source=transfer_source,
    init=lambda source, config, ctx: SCNCL(source.n_features, source.n_classes, config, rngs=nnx.Rngs(ctx.seed)),
    stages=lambda config, train, source, ctx: [Stage("train", train.epochs, make_loss(config))],
    embed=embed, summary="scNCL: RNA -> ATAC label transfer with neighbourhood contrastive regularisation")
