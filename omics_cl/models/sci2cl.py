"""Method 4: scI2CL, paired RNA + ATAC integration by intra- and inter-omics contrastive learning.

Per modality m (RNA, ATAC) an autoencoder: encoder -> global embedding Z_m; decoder -> ZINB mean (times the
cell's size factor), dropout pi; gene-wise dispersion theta. On ATAC the default (``atac_likelihood``) models
instead whether each peak is open (Bernoulli, as PeakVI); the seed's ZINB is ``atac_likelihood="zinb"``. Intra-omics: T sub-views of the
batch, each with one random set of input columns zeroed (prob ``mask_rate``), go through the same
encoder; multi-head self-attention across the T views of each cell, max-pool over views, an FFN gives
Z_hat_m and ``L_MSE = mean ||Z_m - Z_hat_m||^2`` (L2-normalised, Z_m a fixed target; see ``view_loss``). Inter-omics: cross-attention over the cells of the
batch in both directions, ``Z_{r->a} = LayerNorm(Z_r + softmax(Q_r K_a^T / sqrt(d)) V_a)`` and
``Z_{a->r}`` likewise. MOC = symmetric CLIP loss on (Z_r, Z_a), true pairs positive. MOM = binary
cross-entropy of a classifier on ``concat(Z_{r->a}[i], Z_{a->r}[j])``: j = i matched, and for each i
one negative j != i drawn with probability proportional to ``exp(cos(Z_r[i], Z_a[j]) / tau_neg)`` (hard
negatives from the embeddings, never from labels). MOC's temperature is ``clip_temperature``, the hard-negative
sampling temperature ``negative_temperature`` (one ``temperature`` did both jobs before; both 0.1).

    L = w_rec (ZINB_rna + NLL_atac) + w_mse (MSE_rna + MSE_atac) + w_moc MOC + w_mom MOM

The seed's joint embedding (``fusion="xattn"``): ``concat(Z_{r->a}, Z_{a->r})``. Cross-attention reads
other cells, so at inference every cell attends to one fixed, seeded set of ``context_size`` cells (all cells
when there are fewer) instead of its minibatch: a cell's embedding does not depend on how cells are ordered or
batched. With ``cross_attention=False`` (ablation) it is ``concat(Z_r, Z_a)`` and MOM reads it.

Default joint embedding (``fusion="wnn"``, ours): weighted fusion (``omics_cl.core.fusion``) of the views named in
``fusion_views``: ``pca`` (the first ``pca_comps`` principal components of the RNA input, log library size regressed
out of each gene with ``pca_regress_depth`` and genes standardised with ``pca_standardize``), ``rna`` (Z_r), ``atac``
(Z_a), ``xattn`` (the seed's joint embedding). Each cell's weights are WNN-like (each view's own neighbourhood
prediction) shrunk by ``fusion_shrinkage`` toward the fixed ``fusion_weights`` (None: equal). Default since
2026-12-04: the fixed weights themselves, 0.8 on the PCA view and 0.2 on Z_r, for every cell (``fusion_shrinkage=1``):
on MOp the per-cell weights shrunk halfway to equal (the default before) scored below the PCA view alone, with the
RNA counts halved by .08 ARI on the median (up to .14 on a seed); the fixed weights are level with it on the full
data and above it in NMI with RNA halved. Measured choices in benchmarks/integration.md. A trained model maps new cells
with :func:`map_query` (saved state: :func:`query_state`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from omics_cl.core import fusion
from omics_cl.core.train import Stage, TrainConfig, predict
from omics_cl.data import components
from omics_cl.data.paired import PairedQuery
from omics_cl.data.sources import KEYS, ArraySource, PairedSource
from omics_cl.models.common import context_cells
from omics_cl.models.method import Method
from omics_cl.models.sci2cl_network import SCI2CL, make_loss

FUSIONS = ("wnn", "xattn")
LIKELIHOODS = ("zinb", "bernoulli")
VIEWS = ("pca", "rna", "atac", "xattn")
# the seed: intra-omics MSE on, cross-attention output, no input dropout, ZINB on both modalities
SEED_RECIPE = {"mse_weight": 1.0, "fusion": "xattn", "input_dropout": 0.0, "atac_likelihood": "zinb"}
DEFAULT_FUSION_WEIGHTS = {"pca": 0.8, "rna": 0.2}  # the same for every cell (fusion_shrinkage=1), since 2026-12-04


@dataclass(frozen=True)
class SCI2CLConfig:
    """Sizes and loss weights (METHODS.md: weights 1). ``input_dropout`` (gene dropout on both inputs while
    training, ours) and 20 epochs: without it MOC learns to match each cell's own pair (top-1 retrieval
    1.0) and clustering suffers; on MOp seed 0 (n_clusters ARI of the joint embedding) 20 epochs gave
    .25 without it and .36 with 0.5 (.30 with 0.7). ``mse_weight`` 1 (the seed's intra-omics views): with them
    the fused joint embedding scored higher on each of 5 seeds (n_clusters ARI median .444 vs .427 with
    ``mse_weight=0``). ``pca_regress_depth`` (on by default since 2026-12-03): the PCA view with log RNA library size
    regressed out of every gene (on MOp the standardised view's second component follows depth, r = .78). Scored
    as the mean of 5 clusterings per seed, the fused embedding gained .018 on seeds 0-2 (n_clusters ARI .466 vs
    .448) and .030 with RNA counts halved, and its clusterings no longer flip between partitions. The record is
    in benchmarks/integration.md. ``atac_likelihood`` "bernoulli" (since 2026-12-03): the ATAC decoder models whether
    each peak is open instead of ZINB counts; on MOp (5 seeds, mean of 5 clusterings) n_clusters ARI is level
    (median .461 vs .463, seeds 0-2 mean .463 vs .466) and the default run takes 274 s instead of 426 s on 2 cores
    (the ATAC ZINB term, two output heads and log-gamma functions over 10,000 peaks, took 0.13 s of each step's
    0.44-0.54 s; the Bernoulli term takes 0.04 s)."""

    hidden: tuple[int, ...] = (256,)
    latent: int = 32
    dropout: float = 0.1
    n_views: int = 4
    mask_rate: float = 0.4
    n_heads: int = 4
    rec_weight: float = 1.0
    mse_weight: float = 1.0
    moc_weight: float = 1.0
    mom_weight: float = 1.0
    clip_temperature: float = 0.1
    negative_temperature: float = 0.1
    input_dropout: float = 0.5
    cross_attention: bool = True
    zinb_ridge: float = 0.0
    atac_likelihood: str = "bernoulli"
    pretrain_epochs: int = 0
    context_size: int = 4096
    fusion: str = "wnn"
    fusion_views: tuple[str, ...] = ("pca", "rna")
    fusion_neighbors: int = 20
    fusion_shrinkage: float = 1.0  # WNN weights shrunk toward fusion_weights (1: those weights; 0: WNN weights)
    fusion_weights: dict[str, float] | None = field(default_factory=lambda: dict(DEFAULT_FUSION_WEIGHTS))
    pca_comps: int = 50
    pca_standardize: bool = True
    pca_regress_depth: bool = True

    def __post_init__(self):
        if self.atac_likelihood not in LIKELIHOODS:
            raise ValueError(f"atac_likelihood must be one of {LIKELIHOODS}, got {self.atac_likelihood!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        unknown = sorted(set(self.fusion_views) - set(VIEWS))
        if self.fusion == "wnn" and (unknown or len(set(self.fusion_views)) < 2):
            raise ValueError(f"fusion_views needs at least 2 distinct views from {VIEWS}, got {self.fusion_views}")
        fusion.check_shrinkage(self.fusion_shrinkage)
        if self.fusion == "wnn" and self.fusion_weights is not None:
            missing = [v for v in self.fusion_views if v not in self.fusion_weights]
            if missing or set(self.fusion_weights) - set(VIEWS):
                raise ValueError(f"fusion_weights needs a weight for each of fusion_views {self.fusion_views} and no "
                                 f"other names than {VIEWS} (None: equal weights); got {sorted(self.fusion_weights)}")
            fusion.target_weights([self.fusion_weights[v] for v in self.fusion_views], len(self.fusion_views),
                                  "fusion_weights")


def stages(config: SCI2CLConfig, train: TrainConfig, source: PairedSource, ctx) -> list[Stage]:
    """Optional per-modality ZINB pre-training (never stopped early), then the joint loss."""
    joint = Stage("joint", train.epochs, make_loss(config))
    if config.pretrain_epochs > 0:
        return [Stage("pretrain", config.pretrain_epochs, make_loss(config, "pretrain"), early_stopping=False), joint]
    return [joint]


def uses_pca(config: SCI2CLConfig) -> bool:
    """Whether the joint embedding reads the RNA PCA view."""
    return config.fusion == "wnn" and "pca" in config.fusion_views


def log_depth(source: PairedSource, config: SCI2CLConfig) -> np.ndarray | None:
    """Each cell's log1p RNA library size when the PCA view regresses it out (``pca_regress_depth``), else None."""
    return np.log1p(source.rna.normalizer.library_size) if config.pca_regress_depth else None


def fit_pca_view(source: PairedSource, config: SCI2CLConfig, ctx) -> tuple[np.ndarray, components.PCAProjection]:
    """The RNA PCA view: the first ``pca_comps`` principal components of the log-normalised kept genes
    (standardised with ``pca_standardize``; log library size regressed out with ``pca_regress_depth``), and the
    fitted projection that puts new cells on its axes."""
    x = source.rna.normalizer.sparse(source.rna.counts)
    return components.fit_principal_components(x, config.pca_comps, ctx.seed, config.pca_standardize,
                                               covariate=log_depth(source, config))


def pca_view(source: PairedSource, config: SCI2CLConfig, ctx,
             projection: components.PCAProjection | None = None) -> np.ndarray:
    """The RNA PCA view of :func:`fit_pca_view`, or these cells on a fitted ``projection``'s axes."""
    if projection is None:
        return fit_pca_view(source, config, ctx)[0]
    return projection.transform(source.rna.normalizer.sparse(source.rna.counts), log_depth(source, config))


def modality_batch(model: SCI2CL, batch) -> jax.Array:
    """A batch's ``Z_r`` and ``Z_a`` side by side."""
    z_rna, z_atac = model.rna.encoder(batch[KEYS.RNA][KEYS.X]), model.atac.encoder(batch[KEYS.ATAC][KEYS.X])
    return jnp.concatenate([z_rna, z_atac], 1)


def fused_batch(model: SCI2CL, batch, context_rna: jax.Array, context_atac: jax.Array) -> jax.Array:
    """A batch's cross-attention outputs against the context cells, side by side."""
    return jnp.concatenate(model.fuse(batch[KEYS.RNA], batch[KEYS.ATAC], context_rna, context_atac), 1)


def encode(model: SCI2CL, source: PairedSource, config: SCI2CLConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-modality embeddings ``(Z_r, Z_a)`` of every cell."""
    modality = predict(modality_batch, model, source)
    return modality[:, :config.latent], modality[:, config.latent:]


def fuse_views(views: dict[str, np.ndarray], config: SCI2CLConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(joint embedding, per-cell weights)``: ``views[name]`` for each of ``config.fusion_views`` fused as
    ``config`` says (``fusion_shrinkage`` toward ``fusion_weights``)."""
    target = None if config.fusion_weights is None else [config.fusion_weights[v] for v in config.fusion_views]
    return fusion.wnn_fuse([views[v] for v in config.fusion_views], config.fusion_neighbors, seed,
                           config.fusion_shrinkage, target)


def outputs(model: SCI2CL, z_rna, z_atac, context: tuple, pcs: np.ndarray | None, config: SCI2CLConfig, ctx):
    """Cross-attention against ``context`` (the context cells' Z_r, Z_a), then the joint embedding; ``pcs``: the
    RNA PCA view (None when not read)."""
    joint = predict(fused_batch, model, ArraySource(**{KEYS.RNA: z_rna, KEYS.ATAC: z_atac}), constants=context)
    as32 = lambda a: np.asarray(a, dtype=np.float32)
    out = {"rna": as32(z_rna), "atac": as32(z_atac), "xattn": as32(joint)}
    if config.fusion == "xattn":
        return {"joint": out["xattn"], **out}, {}
    if pcs is not None:
        out["pca"] = pcs
    out["joint"], weights = fuse_views(out, config, ctx.seed)
    notes = {"view_weights_median": {view: round(float(w), 3) for view, w in
                                     zip(config.fusion_views, np.median(weights, 0), strict=True)}}
    return {**out, "view_weights": weights}, notes


def embed(model: SCI2CL, source: PairedSource, config: SCI2CLConfig, train: TrainConfig, ctx):
    """Per-modality embeddings, the cross-attention fusion with every cell attending to one fixed context,
    then the joint embedding (``config.fusion``); the state is the PCA view's fitted projection (``pca_*``)
    when the joint embedding reads it."""
    z_rna, z_atac = encode(model, source, config)
    cells = context_cells(source.n_obs, config.context_size, ctx.seed)
    pcs, state = None, {}
    if uses_pca(config):
        pcs, projection = fit_pca_view(source, config, ctx)
        state = projection.arrays("pca_")
    return *outputs(model, z_rna, z_atac, (z_rna[cells], z_atac[cells]), pcs, config, ctx), state


def query_state(arrays: dict, state: dict, config: SCI2CLConfig, ctx) -> dict:
    """What :func:`map_query` needs besides the parameters: the context cells' Z_r and Z_a and :func:`embed`'s
    state (the PCA view's projection, when the joint embedding reads it)."""
    cells = context_cells(len(arrays["rna"]), config.context_size, ctx.seed)
    return {"context_rna": arrays["rna"][cells], "context_atac": arrays["atac"][cells], **state}


def map_query(model: SCI2CL, query: PairedQuery, config: SCI2CLConfig, ctx):
    """:func:`embed`'s arrays for new cells, without training: every cell attends to the training run's context
    cells; the PCA view projects the new cells onto the training run's loadings (``query.refit_pca``: a PCA of
    the new cells); per-cell fusion weights (``fusion_shrinkage`` below 1) come from the new cells' own
    neighbourhoods."""
    source = PairedSource(query.rna, query.atac)
    z_rna, z_atac = encode(model, source, config)
    projection = None if query.refit_pca else components.PCAProjection.from_arrays(query.state, "pca_")
    pcs = pca_view(source, config, ctx, projection) if uses_pca(config) else None
    return outputs(model, z_rna, z_atac, (query.state["context_rna"], query.state["context_atac"]), pcs, config, ctx)


METHOD = Method(
    name="sci2cl", job="integrate", config=SCI2CLConfig(), train=TrainConfig(epochs=20, batch_size=256),
    source=lambda modalities, config, ctx: PairedSource(*modalities),
    init=lambda source, config, ctx: SCI2CL(source.rna.n_features, source.atac.n_features, config,
                                           rngs=nnx.Rngs(ctx.seed)),
    stages=stages, embed=embed, variants={"seed": SEED_RECIPE}, map_query=map_query, query_state=query_state,
    saved_defaults={"fusion_shrinkage": 0.0, "fusion_weights": None, "pca_regress_depth": False, "atac_likelihood": "zinb"},
    summary="scI2CL: intra- and inter-omics contrastive integration of paired RNA + ATAC")
