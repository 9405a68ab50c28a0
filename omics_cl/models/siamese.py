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
  pretrained embedding of K Leiden clusters (``models.common.leiden_centres``).
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
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from omics_cl.core import augment, graph, losses
from omics_cl.core.layers import decoder, encoder
from omics_cl.core.train import TrainConfig, fit, predict
from omics_cl.models.common import configure, leiden_centres


@dataclass(frozen=True)
class SiameseConfig:
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


def student_t(z: jax.Array, centres: jax.Array) -> jax.Array:
    """DEC soft assignments ``q_ik ~ (1 + ||z_i - mu_k||^2)^-1`` on L2-normalised rows and centres, rows
    summing to 1."""
    cos = losses._l2_normalize(z) @ losses._l2_normalize(centres).T
    q = 1.0 / (1.0 + jnp.maximum(2.0 - 2.0 * cos, 0.0))  # squared distance of unit vectors, no n x K x d tensor
    return q / jnp.sum(q, 1, keepdims=True)


def dec_target(q: jax.Array) -> jax.Array:
    """Sharpened target ``p_ik ~ q_ik^2 / sum_i q_ik`` (rows summing to 1)."""
    p = q**2 / jnp.sum(q, 0, keepdims=True)
    return p / jnp.sum(p, 1, keepdims=True)


def view(key: jax.Array, batch: dict, config: SiameseConfig) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One augmented view: masked genes (cell and neighbours), a random ``n_sampled`` neighbours, edges dropped."""
    k_gene, k_nb, k_sample, k_edge = jax.random.split(key, 4)
    x = augment.gene_dropout(k_gene, batch["x"], config.gene_mask)
    x_nb = augment.gene_dropout(k_nb, batch["neighbors"], config.gene_mask)
    rank = jnp.argsort(jnp.argsort(jax.random.uniform(k_sample, batch["valid"].shape), 1), 1)
    kept = augment.drop_edges(k_edge, (rank < config.n_sampled).astype(x.dtype), config.edge_drop)
    return x, x_nb, (kept > 0) & batch["valid"]


def make_loss(config: SiameseConfig, stage: str):
    def loss_fn(model: Siamese, batch, key, train: bool):
        k1, k2, k_drop = jax.random.split(key, 3)
        drop = (lambda i: jax.random.fold_in(k_drop, i)) if train else (lambda i: None)
        z1 = model.joint(*view(k1, batch, config), drop(0))
        if stage == "pretrain":
            rec = losses.mse(model.decoder(z1, drop(1)), batch["x"])
            return rec, {"reconstruction": rec}
        z2 = model.joint(*view(k2, batch, config), drop(2))
        con = losses.nt_xent(z1, z2, config.temperature)
        q1, q2 = student_t(z1, model.centres[...]), student_t(z2, model.centres[...])
        p = jax.lax.stop_gradient(dec_target(0.5 * (q1 + q2)))
        kl = lambda q: jnp.mean(jnp.sum(p * (jnp.log(p + losses.EPS) - jnp.log(q + losses.EPS)), 1))  # noqa: E731
        clu = 0.5 * (kl(q1) + kl(q2))
        return con + config.clustering_weight * clu, {"contrastive": con, "clustering": clu}

    return loss_fn


class GraphSource:
    """Batches of cells with their graph neighbours' features: ``{"x", "neighbors", "valid"}``."""

    def __init__(self, rows, neighbors: np.ndarray):
        self.rows, self.neighbors = rows, neighbors
        self.n_obs = rows.n_obs

    def get(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        nb = self.neighbors[indices]
        x = self.rows.get(np.concatenate([indices, nb.ravel()]))["x"]
        return {"x": x[:len(indices)], "neighbors": x[len(indices):].reshape(*nb.shape, -1),
                "valid": np.ones(nb.shape, dtype=bool)}


def cell_graph(prepared, n_pcs: int, n_neighbors: int, seed: int) -> np.ndarray:
    """Neighbour indices (cells x n_neighbors, self excluded) of a cosine kNN on PCA of the log-normalised HVGs."""
    import scanpy as sc

    x = prepared.lognorm_sparse()
    n_pcs = min(n_pcs, min(x.shape) - 1)
    pcs = sc.pp.pca(x, n_comps=n_pcs, random_state=seed, svd_solver="arpack")
    idx, _ = graph.knn(pcs, n_neighbors + 1, "cosine", seed)
    return idx[:, 1:]


def embed_siamese(prepared, seed: int = 0, progress: bool = True, n_clusters: int | None = None,
                  resolution: float = 1.0, n_neighbors: int = 15, **params):
    """Train the siamese gene+graph model; returns the joint embedding and run info with ``labels`` and
    ``memberships`` (q)."""
    config, train = configure(SiameseConfig(), TrainConfig(epochs=40, batch_size=256), **params)
    if config.pretrain_epochs is None:
        config = replace(config, pretrain_epochs=train.epochs // 2)
    if not 0 < config.pretrain_epochs < train.epochs:
        raise ValueError(f"pretrain_epochs must be between 1 and epochs - 1 ({train.epochs - 1}), "
                         f"got {config.pretrain_epochs}")
    if prepared.n_obs <= config.n_neighbors_graph:
        raise ValueError(f"the cell graph needs more cells ({prepared.n_obs}) than n_neighbors_graph "
                         f"({config.n_neighbors_graph})")
    train = replace(train, progress=progress and train.progress)
    source = GraphSource(prepared.source(), cell_graph(prepared, config.n_pcs, config.n_neighbors_graph, seed))

    def checkpoint(stage):
        return train.checkpoint_path and f"{train.checkpoint_path}.{stage}"

    def embed(model):
        return predict(lambda m, b: m.joint(b["x"], b["neighbors"], b["valid"]), model, source, batch_size=512)

    n_features = prepared.normalizer.n_features
    pre = fit(Siamese(n_features, 1, config, rngs=nnx.Rngs(seed)), make_loss(config, "pretrain"), source,
              replace(train, epochs=config.pretrain_epochs, checkpoint_path=checkpoint("pretrain")), seed,
              desc="siamese pretrain")
    z = embed(pre.model)
    k_estimated = n_clusters is None
    centres = leiden_centres(z, n_clusters, n_neighbors, resolution, seed)
    n_clusters = len(centres)
    model = Siamese(n_features, n_clusters, config, rngs=nnx.Rngs(seed))
    nnx.update(model, nnx.state(pre.model, nnx.Not(nnx.PathContains("centres"))))
    model.centres[...] = jnp.asarray(centres)
    result = fit(model, make_loss(config, "cluster"), source,
                 replace(train, epochs=train.epochs - config.pretrain_epochs, checkpoint_path=checkpoint("cluster")),
                 seed, desc="siamese clustering")
    z = embed(result.model)
    q = np.asarray(student_t(jnp.asarray(z), result.model.centres[...]))
    history = {**{f"pretrain_{k}": v for k, v in pre.history.items()}, **result.history}
    info = {**asdict(config), **{k: v for k, v in asdict(train).items() if k != "progress"}, "history": history,
            "epochs_run": pre.epochs_run + result.epochs_run,
            "epoch_seconds": {"pretrain": pre.epoch_seconds, "clustering": result.epoch_seconds}, "n_clusters": n_clusters, "k_estimated": k_estimated,
            "labels": q.argmax(1), "memberships": q.astype(np.float32)}
    return np.asarray(z, dtype=np.float32), info
