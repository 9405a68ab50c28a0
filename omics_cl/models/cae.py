"""Method 1: contrastive autoencoder (CAE) clustering, and the plain AE baseline (no contrastive term).

Loss ``MSE(decoder(z1), x) + weight * NTXent(z1, z2, tau)`` on log-normalised HVGs, where
``views="clean"`` pairs the clean cell (z1) with one augmented view (z2), as the reference
code does, and ``views="two"`` uses two independently augmented views.

Options, both on for cae and off for ae (ablations in benchmarks/clustering.md; ``standardize=False, fusion="none"`` is
cae before 2026-12-01): ``standardize`` scales each input gene to unit variance, clipped at ``max_value`` sd, with
statistics of the training cells (``LogNormalizer.standardized``; not centred); ``fusion="wnn"`` writes as the
embedding the weighted fusion (``omics_cl.core.fusion``) of the latent with ``pca_comps`` principal components of
the HVGs and keeps the latent as ``latent``; ``fusion="none"``: the latent is the embedding. The PCA views
(``pca_residuals``, ``models.common.pca_views``): ``"both"`` (default) the standardised log-normalised HVGs' (the
``pca`` baseline's view) and their Pearson residuals', ``"log"`` or ``"pearson"`` one of them. The weights: WNN
weights shrunk by ``fusion_shrinkage`` toward ``fusion_weights`` (fixed weights by view name; default
``DEFAULT_FUSION_WEIGHTS``, reached with ``fusion_shrinkage=1``), except where the two PCA views tell the same story:
with both views and ``views_agree`` set, the log view's and the Pearson view's own clusters are compared (consensus
Leiden at the requested K, no labels; ``models.common.views_agreement``) and, where their ARI is at least
``views_agree``, the weights are the WNN weights shrunk by ``agree_shrinkage`` toward equal (the record says which:
``views_agreement``, ``fusion_weighting``). ``views_agree=None`` is the default before 2026-12-05. The default before
2026-12-02's sixteenth session, ``pca_residuals="log", fusion_shrinkage=0``, fused the log view with WNN weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import jax
import numpy as np
from flax import nnx

from omics_cl.core import augment, fusion, losses
from omics_cl.core.layers import decoder, dropout_keys, encoder
from omics_cl.core.train import Stage, TrainConfig, predict
from omics_cl.data import pearson
from omics_cl.data.sources import KEYS
from omics_cl.models.common import (
    FIXED_VIEW_WEIGHTS,
    agreement_weighting,
    check_fusion_weights,
    check_members,
    encoder_latent,
    fused_with_pca,
    pca_views,
)
from omics_cl.models.method import Method

FUSIONS = ("none", "wnn")
DEFAULT_FUSION_WEIGHTS = FIXED_VIEW_WEIGHTS
# where the two PCA views' own clusters agree this well (ARI), WNN weights shrunk halfway to equal instead (measured:
# benchmarks/clustering.md, "The views' agreement picks cae's weights")
VIEWS_AGREE = 0.8


@dataclass(frozen=True)
class CAEConfig:
    hidden: tuple[int, ...] = (1024, 1024)
    latent: int = 128
    dropout: float = 0.1
    contrastive_weight: float = 1.0
    temperature: float = 0.05
    views: str = "clean"
    gene_dropout: float = 0.2
    noise_sigma: float = 0.05
    scale_low: float = 0.9
    scale_high: float = 1.1
    standardize: bool = True
    max_value: float = 10.0
    fusion: str = "wnn"
    fusion_neighbors: int = 20
    fusion_shrinkage: float = 1.0  # WNN weights shrunk toward fusion_weights (1: those weights; 0: WNN weights)
    fusion_weights: dict[str, float] | None = field(default_factory=lambda: dict(DEFAULT_FUSION_WEIGHTS))
    views_agree: float | None = VIEWS_AGREE  # both views' clusters agree at least this well: agree_shrinkage instead
    agree_shrinkage: float = 0.5  # WNN weights shrunk toward equal weights where the views agree
    pca_comps: int = 50
    pca_residuals: str = "both"  # the PCA views' input (``models.common.pca_views``)
    n_members: int = 1  # models trained with derived seeds, their graphs averaged (``omics_cl.models.members``)

    def __post_init__(self):
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        pearson.check_residuals(self.pca_residuals, pearson.FUSED_RESIDUALS)
        fusion.check_shrinkage(self.fusion_shrinkage)
        if not 0.0 <= self.agree_shrinkage <= 1.0:
            raise ValueError(f"agree_shrinkage must be between 0 (WNN weights) and 1 (equal weights), "
                             f"got {self.agree_shrinkage}")
        if self.views_agree is not None and not -1.0 <= self.views_agree <= 1.0:
            raise ValueError(f"views_agree is an ARI threshold in [-1, 1] (or None), got {self.views_agree}")
        check_fusion_weights(self.fusion_weights, self.pca_residuals)
        check_members(self.n_members)


class AutoEncoder(nnx.Module):
    def __init__(self, n_features: int, config: CAEConfig, *, rngs: nnx.Rngs):
        self.encoder = encoder(n_features, config.hidden, config.latent, config.dropout, rngs=rngs)
        self.decoder = decoder(config.latent, config.hidden, n_features, config.dropout, rngs=rngs)


def make_augment(config: CAEConfig) -> augment.Augment:
    return augment.compose(
        lambda k, x: augment.gene_dropout(k, x, config.gene_dropout),
        lambda k, x: augment.gaussian_noise(k, x, config.noise_sigma),
        lambda k, x: augment.library_scaling(k, x, config.scale_low, config.scale_high),
    )


def make_loss(config: CAEConfig):
    if config.views not in ("clean", "two"):
        raise ValueError(f"views must be 'clean' or 'two', got {config.views!r}")
    aug = make_augment(config)

    def loss_fn(model: AutoEncoder, batch, key, train: bool):
        x = batch[KEYS.X]
        k_view1, k_view2, k_drop = jax.random.split(key, 3)
        drop = dropout_keys(k_drop, train)
        if config.contrastive_weight == 0:
            rec = losses.mse(model.decoder(model.encoder(x, drop(0)), drop(1)), x)
            return rec, {"reconstruction": rec}
        view1 = x if config.views == "clean" else aug(k_view1, x)
        z1 = model.encoder(view1, drop(0))
        z2 = model.encoder(aug(k_view2, x), drop(1))
        rec = losses.mse(model.decoder(z1, drop(2)), x)
        con = losses.nt_xent(z1, z2, config.temperature)
        return rec + config.contrastive_weight * con, {"reconstruction": rec, "contrastive": con}

    return loss_fn


def make_source(prepared, config: CAEConfig, ctx):
    """Batches of log-normalised HVG rows, standardised with ``config.standardize``; ``fusion="wnn"`` reads the
    whole matrix after training (the PCA view), so it cannot stream."""
    if prepared.stream and config.fusion != "none":
        raise ValueError(f"fusion={config.fusion!r} needs the whole matrix for its PCA view and cannot stream; "
                         "pass fusion='none' (or stream=False)")
    return (prepared.standardized(config.max_value) if config.standardize else prepared).source()


def embed(model: AutoEncoder, source, config: CAEConfig, train, ctx):
    z = np.asarray(predict(encoder_latent, model, source), dtype=np.float32)
    if config.fusion == "none":
        return {"embedding": z}, {}
    pcs = pca_views(source.x, source.transform, config.pca_comps, config.pca_residuals, ctx.seed, config.max_value)
    shrinkage, weights, notes = agreement_weighting(pcs, ctx, config.fusion_shrinkage, config.fusion_weights,
                                                    config.views_agree, config.agree_shrinkage)
    arrays, fused_notes = fused_with_pca(pcs, z, config.fusion_neighbors, ctx.seed, shrinkage, weights)
    return arrays, {**fused_notes, **notes}


CAE = Method(
    name="cae", job="cluster", config=CAEConfig(), train=TrainConfig(),
    source=make_source,
    init=lambda source, config, ctx: AutoEncoder(source.n_features, config, rngs=nnx.Rngs(ctx.seed)),
    stages=lambda config, train, source, ctx: [Stage("train", train.epochs, make_loss(config))],
    embed=embed, streams=lambda config: config.fusion == "none",
    summary="contrastive autoencoder; Leiden on its 128-d latent fused with the log and Pearson PCA views")
AE = replace(CAE, name="ae", config=CAEConfig(contrastive_weight=0.0, standardize=False, fusion="none"),
             summary="plain autoencoder (CAE without the contrastive term), Leiden on its latent")
