"""Method 2: SCINNO — denoising contrastive autoencoder + multi-head attention + fuzzy clustering.

Training has two stages on log-normalised HVGs (genes detected in fewer than ``min_detection``
of cells dropped first):

1. warm-up: a noisy view ``x + U(-0.3, 0.3)`` and the clean cell go through one encoder; the
   decoder reconstructs the clean cell from both latents (MSE, dual path) and InfoNCE pairs
   each cell's clean and noisy latents (tau 0.5);
2. clustering: 4-head self-attention across the cells of a minibatch refines the latent
   (residual; output projection zero-initialised so the refined latent starts equal to the
   encoder's); centres start as the mean normalised warm-up latent of K Leiden clusters
   (``models.common.leiden_centres_init``) and the fuzzy loss
   ``mean_i sum_k u_ik^m d_ik + alpha sum_k u_bar_k log u_bar_k`` is added with a weight ramped
   linearly from 0 to ``clustering_weight`` over ``ramp_epochs``.

Deviations from METHODS.md (tried on zeisel, seed 0; see benchmarks/clustering.md): as specified, the
clustering stage collapsed every cell into one cluster or into uniform memberships (the attention
can map all cells to one point, and centres can coincide). So: ``d_ik`` is the squared distance
between the L2-normalised refined latent and centre (on raw latents the encoder shrank until the
softmax was flat), with ``gamma = 20`` on that scale (2 left memberships near uniform); memberships
are held fixed (stop-gradient) in the first term, as in fuzzy c-means' alternating updates; the
clustering loss does not reach the attention, which is trained by InfoNCE between the *refined*
clean and noisy latents. Zeisel ARI (n_clusters, seed 0) went from 0.00-0.34 to 0.71. With those
changes and 60 epochs, the specified clustering weight 0.5 left the fuzzy term too weak to shape
the latent (zeisel / pbmc seed 0: 0.48 / 0.42; Leiden on the same latent 0.68); 2 gave 0.83 / 0.58
and 5 merged clusters (0.63 / 0.54), so ``clustering_weight`` = 2. Centres start from Leiden
clusters rather than k-means (at weight 2, seed 0: zeisel 0.83 vs 0.81, pbmc 0.58 vs 0.40).
Without ``n_clusters``, K is estimated by Leiden (resolution ``resolution``) on a kNN graph of the
warm-up latent; no labels are involved. The seed's prediction (``readout="argmax"``) is the argmax
membership; the default read-off (``readout="leiden"``, as siamese's: ``models.common.leiden_readout``) is
Leiden on the encoder's latent (``readout_latent="encoder"``; the attention-refined latent, ``"refined"``, was the
default before 2026-12-03: on the same trained models it moved far more with the seed, MOp 5-seed spread .143 vs
.039, and scored lower on pbmc68k_reduced and MOp; benchmarks/clustering.md) fused with two PCA
views of all HVGs (not only the detected genes:
that view scored MOp .33 / .29 instead of .39 / .37, seeds 0-1), the ``pca`` baseline's and the Pearson residuals'
(``pca_residuals="both"``; with the log view alone, the default before 2026-12-02, the 5-seed medians were lower on
all four registry sets), under the fixed ``fusion_weights`` (cae's: log view and latent .425 each, Pearson view
.15; ``None`` is equal weights, the default before 2026-12-05: their MOp partition flipped between .42 and .59 ARI
with Leiden's seed or noise of 1e-6 of the embedding's sd, where the fixed weights' 5-seed median held .555-.557 over
five Leiden streams; benchmarks/clustering.md, "scinno's MOp figure: a read-off on a knife edge"), and gives no
memberships. The
argmax can leave centres without cells: cluster sizes churn while the clustering weight ramps up, as the
attention-refined latent moves under the centres. ``reseed_empty`` moves such a centre onto the cell of the
largest cluster farthest from its centre after every clustering epoch, so K clusters come out; it is off
because it lowered ARI (pbmc68k_reduced 5 seeds: median 0.495 vs 0.562, spread 0.103 vs 0.199;
benchmarks/clustering.md).

Read-offs over 5 seeds (benchmarks/clustering.md, "Fusion weights and read-offs"): the fused read-off is higher and
steadier on cbmc and MOp and lower on pbmc68k_reduced and zeisel.

Inference does not depend on how cells are ordered or batched: every cell attends to itself and one
fixed, seeded set of ``batch_size - 1`` cells (the same number of keys as in training), never to its
batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from omics_cl.core import augment, losses
from omics_cl.core.layers import decoder, dropout_keys, encoder
from omics_cl.core.train import SCHEDULE, Stage, TrainConfig, predict
from omics_cl.data.sources import KEYS, ArraySource, CountsSource
from omics_cl.models.common import (
    FIXED_VIEW_WEIGHTS,
    ReadoutConfig,
    context_cells,
    leiden_centres_init,
    leiden_readout,
    reseed_empty_centres,
)
from omics_cl.models.method import Method

READOUT_LATENTS = ("encoder", "refined")


@dataclass(frozen=True)
class SCINNOConfig(ReadoutConfig):
    hidden: tuple[int, ...] = (1024,)
    latent: int = 512
    dropout: float = 0.0
    noise: float = 0.3
    temperature: float = 0.5
    contrastive_weight: float = 0.1
    n_heads: int = 4
    gamma: float = 20.0
    fuzziness: float = 2.0
    balance_weight: float = 0.1
    clustering_weight: float = 2.0
    warmup_epochs: int | None = None  # None: half of the epochs
    ramp_epochs: int = 10
    min_detection: float = 0.05
    reseed_empty: bool = False  # True: re-seed centres left without cells after every clustering epoch
    pca_residuals: str = "both"  # the read-off fuses the latent with the log and the Pearson PCA views
    fusion_weights: dict[str, float] | None = field(default_factory=lambda: dict(FIXED_VIEW_WEIGHTS))  # None: equal
    readout_latent: str = "encoder"  # the Leiden read-off's latent; "refined": after the cell attention

    def __post_init__(self):
        super().__post_init__()
        if self.readout_latent not in READOUT_LATENTS:
            raise ValueError(f"readout_latent must be one of {READOUT_LATENTS}, got {self.readout_latent!r}")


class DetectedGenesSource(CountsSource):
    """Log-normalised rows of the genes detected in ``min_detection`` of cells (the model's input);
    ``hvg_normalizer`` reads all the recipe's HVGs (the read-off's PCA view)."""

    def __init__(self, prepared, min_detection: float):
        detected = prepared.with_detected_genes(min_detection)
        super().__init__(detected.counts, detected.normalizer)
        self.hvg_normalizer = prepared.normalizer


class CellAttention(nnx.Module):
    """Multi-head attention of query cells over key cells; the output projection starts at zero."""

    def __init__(self, dim: int, n_heads: int, *, rngs: nnx.Rngs):
        if dim % n_heads:
            raise ValueError(f"latent size {dim} is not divisible by n_heads={n_heads}")
        self.q, self.k, self.v = (nnx.Linear(dim, dim, rngs=rngs) for _ in range(3))
        self.out = nnx.Linear(dim, dim, kernel_init=nnx.initializers.zeros, rngs=rngs)
        self.n_heads = n_heads

    def __call__(self, z: jax.Array, z_keys: jax.Array, self_in_keys: bool) -> jax.Array:
        """Each row of ``z`` attends to the rows of ``z_keys``, plus to itself unless ``self_in_keys``."""
        heads = lambda a: a.reshape(a.shape[0], self.n_heads, -1).transpose(1, 0, 2)  # noqa: E731
        q, k, v = heads(self.q(z)), heads(self.k(z_keys)), heads(self.v(z_keys))
        scale = 1.0 / jnp.sqrt(q.shape[-1])
        scores = q @ k.transpose(0, 2, 1) * scale  # (H, B, C)
        if self_in_keys:
            mixed = jax.nn.softmax(scores, -1) @ v
        else:  # keys = context cells + the query cell itself (last column)
            k_self, v_self = heads(self.k(z)), heads(self.v(z))
            weights = jax.nn.softmax(jnp.concatenate([scores, jnp.sum(q * k_self, -1, keepdims=True) * scale], -1))
            mixed = weights[..., :-1] @ v + weights[..., -1:] * v_self
        return self.out(mixed.transpose(1, 0, 2).reshape(z.shape[0], -1))


class SCINNO(nnx.Module):
    def __init__(self, n_features: int, n_clusters: int, config: SCINNOConfig, *, rngs: nnx.Rngs):
        act = jax.nn.leaky_relu
        self.encoder = encoder(n_features, config.hidden, config.latent, config.dropout, act, rngs=rngs)
        self.decoder = decoder(config.latent, config.hidden, n_features, config.dropout, act, rngs=rngs)
        self.attention = CellAttention(config.latent, config.n_heads, rngs=rngs)
        self.centres = nnx.Param(jnp.zeros((n_clusters, config.latent)))

    def embed(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        return jax.nn.leaky_relu(self.encoder(x, key))

    def refine(self, z: jax.Array, z_context: jax.Array | None = None) -> jax.Array:
        """Training: the cells of a batch attend to each other. Inference: each cell attends to itself and
        the fixed ``z_context`` cells (residual in both)."""
        if z_context is None:
            return z + self.attention(z, z, self_in_keys=True)
        return z + self.attention(z, z_context, self_in_keys=False)


def make_loss(config: SCINNOConfig, stage: str):
    def loss_fn(model: SCINNO, batch, key, train: bool):
        x = batch[KEYS.X]
        k_noise, k_drop = jax.random.split(key)
        drop = dropout_keys(k_drop, train)
        z_clean = model.embed(x, drop(0))
        z_noise = model.embed(augment.uniform_noise(k_noise, x, config.noise), drop(1))
        rec = 0.5 * (losses.mse(model.decoder(z_clean, drop(2)), x) + losses.mse(model.decoder(z_noise, drop(3)), x))
        if stage == "warmup":
            con = losses.nt_xent(z_clean, z_noise, config.temperature)
            return rec + config.contrastive_weight * con, {"reconstruction": rec, "infonce": con}
        z_attn = model.refine(z_clean)
        con = losses.nt_xent(z_attn, model.refine(z_noise), config.temperature)
        # the clustering loss reaches the encoder and centres but not the attention (see module docstring)
        z_attn = z_clean + jax.lax.stop_gradient(z_attn - z_clean)
        u, d = losses.fuzzy_memberships(z_attn, model.centres[...], config.gamma)
        clu = losses.fuzzy_loss(u, d, config.fuzziness, config.balance_weight)
        total = rec + config.contrastive_weight * con + batch[SCHEDULE]["clustering_weight"] * clu
        return total, {"reconstruction": rec, "infonce": con, "clustering": clu, "balance": losses.balance(u)}

    return loss_fn


def stages(config: SCINNOConfig, train: TrainConfig, source, ctx) -> list[Stage]:
    """Warm-up, then clustering from Leiden centres of the warm-up latent with the ramped fuzzy term."""
    warmup = warmup_epochs(config, train)
    if not 0 < warmup < train.epochs:
        raise ValueError(f"warmup_epochs must be between 1 and epochs - 1 ({train.epochs - 1}), got {warmup}")

    def ramp(epoch):
        return {"clustering_weight": config.clustering_weight * min(1.0, (epoch + 1) / max(config.ramp_epochs, 1))}

    def build(n_clusters):
        return SCINNO(source.n_features, n_clusters, config, rngs=nnx.Rngs(ctx.seed))

    def reseed(model):
        z_attn = refined(model, source, train, ctx)

        def assign(centres):
            return np.asarray(losses.fuzzy_memberships(jnp.asarray(z_attn), jnp.asarray(centres), config.gamma)[0]).argmax(1)

        model.centres[...] = jnp.asarray(reseed_empty_centres(np.asarray(model.centres[...]), assign, z_attn)[0])
        return model

    centres = leiden_centres_init(build, lambda model: latent(model, source), ctx, config.trained_centres_per_cluster)
    return [Stage("warmup", warmup, make_loss(config, "warmup")),
            Stage("cluster", train.epochs - warmup, make_loss(config, "cluster"), schedule=ramp, init=centres,
                  after_epoch=reseed if config.reseed_empty else None)]


def warmup_epochs(config: SCINNOConfig, train: TrainConfig) -> int:
    return train.epochs // 2 if config.warmup_epochs is None else config.warmup_epochs


def embed_batch(model: SCINNO, batch) -> jax.Array:
    return model.embed(batch[KEYS.X])


def refine_batch(model: SCINNO, batch, z_context: jax.Array) -> jax.Array:
    return model.refine(batch[KEYS.X], z_context)


def latent(model: SCINNO, source) -> np.ndarray:
    return predict(embed_batch, model, source)


def refined(model: SCINNO, source, train: TrainConfig, ctx) -> np.ndarray:
    """The refined latent of every cell: each attends to itself and a fixed, seeded context."""
    z = latent(model, source)
    z_context = jnp.asarray(z[context_cells(len(z), train.batch_size - 1, ctx.seed)])
    return predict(refine_batch, model, ArraySource(**{KEYS.X: z}), constants=(z_context,))


def embed(model: SCINNO, source: DetectedGenesSource, config: SCINNOConfig, train: TrainConfig, ctx):
    """The refined latent (each cell attends to itself and a fixed context) and its fuzzy memberships
    (``readout="argmax"``), or :func:`models.common.leiden_readout` of the encoder's latent
    (``readout_latent="encoder"``) or of the refined one."""
    notes = {"n_genes_used": source.n_features, "warmup_epochs": warmup_epochs(config, train)}
    if config.readout == "leiden":
        z = latent(model, source) if config.readout_latent == "encoder" else refined(model, source, train, ctx)
        arrays, fused = leiden_readout(z.astype(np.float32), source.x, source.hvg_normalizer, config, ctx.seed)
        return arrays, {**notes, **fused}
    z_attn = refined(model, source, train, ctx).astype(np.float32)
    u = np.asarray(losses.fuzzy_memberships(jnp.asarray(z_attn), model.centres[...], config.gamma)[0])
    return {"embedding": z_attn, "memberships": u.astype(np.float32)}, notes


METHOD = Method(
    name="scinno", job="cluster", config=SCINNOConfig(), train=TrainConfig(epochs=60, batch_size=128),
    source=lambda prepared, config, ctx: DetectedGenesSource(prepared, config.min_detection),
    init=lambda source, config, ctx: SCINNO(source.n_features, 1, config, rngs=nnx.Rngs(ctx.seed)),
    stages=stages, embed=embed, self_clustering=True, variants={"seed": {"readout": "argmax", "n_members": 1}},
    summary="denoising contrastive AE + cell attention + fuzzy clustering; Leiden on its latent fused with the PCA "
            "view")
