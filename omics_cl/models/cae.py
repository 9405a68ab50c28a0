"""Method 1: contrastive autoencoder (CAE) clustering, and the plain AE baseline (no contrastive term).

Loss ``MSE(decoder(z1), x) + weight * NTXent(z1, z2, tau)`` on log-normalised HVGs, where
``views="clean"`` pairs the clean cell (z1) with one augmented view (z2), as the reference
code does, and ``views="two"`` uses two independently augmented views.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import jax
import numpy as np
from flax import nnx

from omics_cl.core import augment, losses
from omics_cl.core.layers import decoder, encoder
from omics_cl.core.train import TrainConfig, fit, predict
from omics_cl.models.common import configure


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
        x = batch["x"]
        k_view1, k_view2, k_drop = jax.random.split(key, 3)
        drop = (lambda i: jax.random.fold_in(k_drop, i)) if train else (lambda i: None)
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


def _embed(prepared, seed: int, progress: bool, config: CAEConfig, train: TrainConfig, name: str):
    train = replace(train, progress=progress and train.progress)
    model = AutoEncoder(prepared.normalizer.n_features, config, rngs=nnx.Rngs(seed))
    source = prepared.source()
    result = fit(model, make_loss(config), source, train, seed, desc=name)
    z = predict(lambda m, b: m.encoder(b["x"]), result.model, source)
    info = {**asdict(config), **{k: v for k, v in asdict(train).items() if k != "progress"},
            "history": result.history, "epochs_run": result.epochs_run, "stopped_early": result.stopped_early}
    return np.asarray(z, dtype=np.float32), info


def embed_cae(prepared, seed: int = 0, progress: bool = True, **params):
    config, train = configure(CAEConfig(), TrainConfig(), **params)
    return _embed(prepared, seed, progress, config, train, "cae")


def embed_ae(prepared, seed: int = 0, progress: bool = True, **params):
    config, train = configure(CAEConfig(contrastive_weight=0.0), TrainConfig(), **params)
    return _embed(prepared, seed, progress, config, train, "ae")
