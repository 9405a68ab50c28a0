"""Method 3: siamese gene + graph clustering (scSiameseClu-style).

- Cell graph: cosine kNN (``n_neighbors_graph``) on ``n_pcs`` principal components of the
  log-normalised HVGs. Built from expression alone, never from labels.
- Two views of every cell, each with its own randomness: genes masked (p = ``gene_mask``, on the cell
  and its neighbours) and graph edges dropped (p = ``edge_drop``).
- Shared-weight dual branch: an MLP gene encoder and a graph-attention (GAT) encoder; the joint
  embedding is their concatenation.
- Stage 1 (``pretrain_epochs``): reconstruction (MSE) of the cell from its joint embedding.
  Stage 2: NT-Xent between the two views' joint embeddings + ``clustering_weight`` x a DEC clustering
  loss: Student-t soft assignments q to K centres, target p = q^2 / cluster frequency (per batch,
  no gradient), KL(p || q). Prediction = argmax q. Centres start as the mean normalised
  pretrained embedding of K Leiden clusters (``models.common.leiden_centres_init``).
  q is computed on L2-normalised embeddings and centres, the geometry NT-Xent trains; on the raw
  embedding (whose norms NT-Xent leaves free) centres were abandoned and zeisel's 7 clusters
  fell to 5 (argmax ARI 0.29 vs 0.56, seed 0). On unit vectors q is flat (at most 5:1 between
  centres), and with ``clustering_weight`` 1 NT-Xent's uniformity won: cluster sizes evened out
  and argmax ARI fell during training (zeisel seed 0: 0.72 after one clustering epoch, 0.52 after
  20, while Leiden on the final embedding scored 0.84). Hence ``clustering_weight`` = 10
  (zeisel / cbmc / pbmc / MOp seed 0: 0.81 / 0.67 / 0.49 / 0.33; 20 emptied clusters on pbmc).

The GAT runs on minibatches: a batch carries each cell's ``n_neighbors_graph`` neighbours' features,
and each training step attends to a random ``n_sampled`` of them, so memory per step is
O(batch x neighbours x genes) whatever the number of cells. Inference attends to all neighbours,
so a cell's embedding depends only on itself and its graph neighbours, not on batching or order.
Without ``n_clusters``, K is the number of Leiden clusters at ``resolution`` on a kNN graph of the
pretrained embedding (no labels involved).

Read-off (``readout``): ``"argmax"`` (the seed) writes argmax q as the clusters, and q as memberships;
``"leiden"`` (ours) writes as the embedding the fusion (``omics_cl.core.fusion``, weights shrunk by
``fusion_shrinkage``; 1: equal) of the joint embedding with ``pca_comps`` principal components of the HVGs'
analytic Pearson residuals (``pca_residuals="pearson"``, the ``pca_pearson`` view; ``"log"``: of the standardised
log-normalised HVGs, the ``pca`` baseline's view and the default before 2026-12-01's tenth session), keeps the
joint embedding as ``latent``, and the clusters are Leiden on the fused embedding (``n_clusters``, else
``resolution``), as for cae. Measured in benchmarks/clustering.md ("Fusion weights and read-offs", "The Pearson
residuals' view"). With the Leiden read-off and a given ``n_clusters``, DEC trains ``centres_per_cluster`` (3)
x K centres from as many Leiden clusters (ours): with K centres, DEC hardened whatever the initial partition got
wrong (zeisel seeds 3-4 split oligodendrocytes and merged three glial types, ARI .74 against .85-.87), and the
read-off kept it; with more, a split costs no merge and the read-off's Leiden picks the K clusters (5-seed medians
[spreads], zeisel / cbmc / pbmc68k_reduced / MOp: 3K .875 [.020] / .755 [.065] / .524 [.024] / .478 [.029], 2K .889
[.058] / .750 [.020] / .524 [.089] / .455 [.036], K .810 [.133] / .740 [.084] / .523 [.021] / .436 [.019];
benchmarks/clustering.md, "Two DEC centres per cluster" and "Three centres per cluster").
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from omics_cl.core import augment, losses
from omics_cl.core.layers import decoder, dropout_keys, encoder
from omics_cl.core.train import Stage, TrainConfig, predict
from omics_cl.data.sources import KEYS, GraphSource, cell_graph
from omics_cl.models.common import ReadoutConfig, leiden_centres_init, leiden_readout
from omics_cl.models.method import Method


@dataclass(frozen=True)
class SiameseConfig(ReadoutConfig):
    n_pcs: int = 30
    n_neighbors_graph: int = 15
    n_sampled: int = 10
    hidden: tuple[int, ...] = (512,)
    latent: int = 64
    gat_heads: int = 4
    gat_dim: int = 64
    dropout: float = 0.1
    gene_mask: float = 0.2
    edge_drop: float = 0.1
    temperature: float = 0.5
    clustering_weight: float = 10.0
    pretrain_epochs: int | None = None  # None: half of the epochs
    pca_residuals: str = "pearson"
    centres_per_cluster: int = 3


class GAT(nnx.Module):
    """One multi-head graph-attention layer (self loop included) followed by ELU and a linear map."""

    def __init__(self, n_features: int, heads: int, dim: int, n_out: int, *, rngs: nnx.Rngs):
        self.project = nnx.Linear(n_features, heads * dim, use_bias=False, rngs=rngs)
        init = nnx.initializers.glorot_uniform()
        self.att_self = nnx.Param(init(rngs.params(), (heads, dim)))
        self.att_neighbour = nnx.Param(init(rngs.params(), (heads, dim)))
        self.out = nnx.Linear(heads * dim, n_out, rngs=rngs)
        self.heads, self.dim = heads, dim

    def _heads(self, h: jax.Array) -> jax.Array:
        return h.reshape(*h.shape[:-1], self.heads, self.dim)

    def attend(self, h_self: jax.Array, h_nb: jax.Array, mask: jax.Array) -> jax.Array:
        """``h_self`` (B, H, D), ``h_nb`` (B, k, H, D), ``mask`` (B, k) of kept edges -> (B, n_out)."""
        src = jnp.sum(h_self * self.att_self[...], -1)  # (B, H)
        e_self = jax.nn.leaky_relu(src + jnp.sum(h_self * self.att_neighbour[...], -1), 0.2)
        e_nb = jax.nn.leaky_relu(src[:, None] + jnp.sum(h_nb * self.att_neighbour[...], -1), 0.2)  # (B, k, H)
        e_nb = jnp.where(mask[..., None], e_nb, -jnp.inf)
        alpha = jax.nn.softmax(jnp.concatenate([e_self[:, None], e_nb], 1), axis=1)  # (B, 1 + k, H)
        mixed = alpha[:, 0, :, None] * h_self + jnp.sum(alpha[:, 1:, :, None] * h_nb, 1)
        return self.out(jax.nn.elu(mixed.reshape(mixed.shape[0], -1)))

    def __call__(self, x: jax.Array, x_nb: jax.Array, mask: jax.Array) -> jax.Array:
        """Minibatch path: features of the batch cells (B, d) and of their neighbours (B, k, d)."""
        return self.attend(self._heads(self.project(x)), self._heads(self.project(x_nb)), mask)

    def full(self, x_all: jax.Array, neighbors: jax.Array, mask: jax.Array) -> jax.Array:
        """Full-graph path: all cells (n, d) with neighbour indices (n, k); projects each cell once."""
        h = self._heads(self.project(x_all))
        return self.attend(h, h[neighbors], mask)


class Siamese(nnx.Module):
    def __init__(self, n_features: int, n_clusters: int, config: SiameseConfig, *, rngs: nnx.Rngs):
        self.gene = encoder(n_features, config.hidden, config.latent, config.dropout, rngs=rngs)
        self.gat = GAT(n_features, config.gat_heads, config.gat_dim, config.latent, rngs=rngs)
        self.decoder = decoder(2 * config.latent, config.hidden, n_features, config.dropout, rngs=rngs)
        self.centres = nnx.Param(jnp.zeros((n_clusters, 2 * config.latent)))

    def joint(self, x: jax.Array, x_nb: jax.Array, mask: jax.Array, key: jax.Array | None = None) -> jax.Array:
        return jnp.concatenate([self.gene(x, key), self.gat(x, x_nb, mask)], axis=1)


def view(key: jax.Array, batch: dict, config: SiameseConfig) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One augmented view: masked genes (cell and neighbours), a random ``n_sampled`` neighbours, edges dropped."""
    k_gene, k_nb, k_sample, k_edge = jax.random.split(key, 4)
    x = augment.gene_dropout(k_gene, batch[KEYS.X], config.gene_mask)
    x_nb = augment.gene_dropout(k_nb, batch[KEYS.NEIGHBOR_X], config.gene_mask)
    valid = batch[KEYS.NEIGHBOR_MASK]
    rank = jnp.argsort(jnp.argsort(jax.random.uniform(k_sample, valid.shape), 1), 1)
    kept = augment.drop_edges(k_edge, (rank < config.n_sampled).astype(x.dtype), config.edge_drop)
    return x, x_nb, (kept > 0) & valid


def make_loss(config: SiameseConfig, stage: str):
    def loss_fn(model: Siamese, batch, key, train: bool):
        k1, k2, k_drop = jax.random.split(key, 3)
        drop = dropout_keys(k_drop, train)
        z1 = model.joint(*view(k1, batch, config), drop(0))
        if stage == "pretrain":
            rec = losses.mse(model.decoder(z1, drop(1)), batch[KEYS.X])
            return rec, {"reconstruction": rec}
        z2 = model.joint(*view(k2, batch, config), drop(2))
        con = losses.nt_xent(z1, z2, config.temperature)
        q1, q2 = losses.student_t(z1, model.centres[...]), losses.student_t(z2, model.centres[...])
        p = jax.lax.stop_gradient(losses.dec_target(0.5 * (q1 + q2)))
        clu = 0.5 * (losses.dec_kl(p, q1) + losses.dec_kl(p, q2))
        return con + config.clustering_weight * clu, {"contrastive": con, "clustering": clu}

    return loss_fn


def graph_source(prepared, config: SiameseConfig, ctx) -> GraphSource:
    """Log-normalised rows with their neighbours in a cosine kNN graph of PCA of the same rows."""
    if prepared.n_obs <= config.n_neighbors_graph:
        raise ValueError(f"the cell graph needs more cells ({prepared.n_obs}) than n_neighbors_graph "
                         f"({config.n_neighbors_graph})")
    rows = prepared.source()
    return GraphSource(rows, cell_graph(rows, config.n_pcs, config.n_neighbors_graph, ctx.seed))


def pretrain_epochs(config: SiameseConfig, train: TrainConfig) -> int:
    return train.epochs // 2 if config.pretrain_epochs is None else config.pretrain_epochs


def joint_batch(model: Siamese, batch) -> jax.Array:
    return model.joint(batch[KEYS.X], batch[KEYS.NEIGHBOR_X], batch[KEYS.NEIGHBOR_MASK])


def joint_embedding(model: Siamese, source: GraphSource) -> np.ndarray:
    """Each cell attends to all its graph neighbours (no sampling, no dropped edges)."""
    return predict(joint_batch, model, source, batch_size=512)


def stages(config: SiameseConfig, train: TrainConfig, source: GraphSource, ctx) -> list[Stage]:
    """Reconstruction pre-training, then NT-Xent + DEC from Leiden centres of the pre-trained embedding."""
    pretrain = pretrain_epochs(config, train)
    if not 0 < pretrain < train.epochs:
        raise ValueError(f"pretrain_epochs must be between 1 and epochs - 1 ({train.epochs - 1}), got {pretrain}")
    n_features = source.rows.n_features

    def build(n_clusters):
        return Siamese(n_features, n_clusters, config, rngs=nnx.Rngs(ctx.seed))

    centres = leiden_centres_init(build, lambda model: joint_embedding(model, source), ctx,
                                  config.trained_centres_per_cluster)
    return [Stage("pretrain", pretrain, make_loss(config, "pretrain")),
            Stage("cluster", train.epochs - pretrain, make_loss(config, "cluster"), init=centres)]


def embed(model: Siamese, source: GraphSource, config: SiameseConfig, train: TrainConfig, ctx):
    """``readout="argmax"``: the joint embedding and q; ``"leiden"``: :func:`models.common.leiden_readout`."""
    z = np.asarray(joint_embedding(model, source), dtype=np.float32)
    notes = {"pretrain_epochs": pretrain_epochs(config, train)}
    if config.readout == "leiden":
        arrays, fused = leiden_readout(z, source.rows.x, source.rows.transform, config, ctx.seed)
        return arrays, {**notes, **fused}
    q = np.asarray(losses.student_t(jnp.asarray(z), model.centres[...]))
    return {"embedding": z, "memberships": q.astype(np.float32)}, notes


METHOD = Method(
    name="siamese", job="cluster", config=SiameseConfig(), train=TrainConfig(epochs=40, batch_size=256),
    source=graph_source,
    init=lambda source, config, ctx: Siamese(source.rows.n_features, 1, config, rngs=nnx.Rngs(ctx.seed)),
    stages=stages, embed=embed, self_clustering=True, variants={"seed": {"readout": "argmax", "n_members": 1}},
    summary="siamese gene MLP + graph attention, NT-Xent + DEC; Leiden on its embedding fused with the PCA view")
