"""PyTorch twin of omics_cl's cae training loop, for ``benchmarks/throughput.py`` (runs in the anchors environment,
without omics_cl).

The same network and loss as ``omics_cl.models.cae`` with ``views="clean"`` or ``"two"``: MLP blocks
``Linear -> LayerNorm(eps 1e-6) -> GELU(tanh) -> Dropout``, then a plain ``Linear`` (lecun-normal kernels, zero
biases, as flax's defaults); the encoder ``genes -> hidden -> latent``, the decoder its mirror; loss
``MSE(decoder(z1), x) + weight * NT-Xent(z1, z2, tau)`` with the augmentations gene dropout -> Gaussian noise ->
per-cell library scaling; Adam (lr 1e-3, betas .9/.999, eps 1e-8, as ``optax.adam``). Batches come from a
``torch.utils.data.DataLoader`` over the log-normalised CSR matrix (rows sliced and densified per batch, as the
host loop does); the epoch's batches are consecutive slices of a permutation, a final batch of one cell folded into
the previous one (``omics_cl.core.epochs.minibatches``).

    python torch_twin.py matrix.npz out.json --config '{"hidden": [1024, 1024], "latent": 128}' --epochs 3

One warm-up epoch is not timed; ``out.json`` gets the seconds and cells/s of each timed epoch. ``--device cuda``
puts model and batches on a GPU (a CUDA build of torch; the anchors environment installs the CPU build).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, fields
from itertools import pairwise

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler


@dataclass(frozen=True)
class TwinConfig:
    """The training-relevant fields of ``omics_cl.models.cae.CAEConfig`` plus the optimiser's learning rate, all
    given by ``throughput.py`` (no defaults here, so the twin cannot drift from cae's)."""

    hidden: tuple[int, ...]
    latent: int
    dropout: float
    contrastive_weight: float
    temperature: float
    views: str
    gene_dropout: float
    noise_sigma: float
    scale_low: float
    scale_high: float
    learning_rate: float

    @classmethod
    def from_json(cls, text: str) -> TwinConfig:
        given = json.loads(text)
        names = {f.name for f in fields(cls)}
        if set(given) != names:
            raise SystemExit(f"config fields must be exactly {sorted(names)}; unknown {sorted(set(given) - names)}, "
                             f"missing {sorted(names - set(given))}")
        config = cls(**{**given, "hidden": tuple(given["hidden"])})
        if config.views not in ("clean", "two"):
            raise SystemExit(f"views must be 'clean' or 'two', got {config.views!r}")
        return config


def lecun_normal_(weight: torch.Tensor) -> None:
    """flax's default kernel init: truncated normal (2 sd) with variance 1 / fan_in."""
    std = math.sqrt(1.0 / weight.shape[1]) / 0.87962566103423978
    nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


class MLP(nn.Module):
    """Hidden blocks ``Linear -> LayerNorm -> GELU (tanh) -> Dropout(p)``, then a plain ``Linear``."""

    def __init__(self, dims: list[int], dropout: float):
        super().__init__()
        blocks = []
        for a, b in pairwise(dims[:-1]):
            blocks += [nn.Linear(a, b), nn.LayerNorm(b, eps=1e-6), nn.GELU(approximate="tanh"), nn.Dropout(dropout)]
        self.net = nn.Sequential(*blocks, nn.Linear(dims[-2], dims[-1]))
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                lecun_normal_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AutoEncoder(nn.Module):
    def __init__(self, n_features: int, config: TwinConfig):
        super().__init__()
        self.encoder = MLP([n_features, *config.hidden, config.latent], config.dropout)
        self.decoder = MLP([config.latent, *reversed(config.hidden), n_features], config.dropout)


def augment(x: torch.Tensor, config: TwinConfig) -> torch.Tensor:
    """Gene dropout, Gaussian noise, then one library-size factor per cell."""
    x = torch.where(torch.rand_like(x) < config.gene_dropout, 0.0, x)
    x = x + config.noise_sigma * torch.randn_like(x)
    return x * torch.empty(x.shape[0], 1, device=x.device).uniform_(config.scale_low, config.scale_high)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """SimCLR NT-Xent: 2B rows, diagonal masked, each row's target is its partner (i <-> i+B)."""
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1, eps=1e-12)
    sim = (z @ z.T / tau).masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return F.cross_entropy(sim, partner)


def cae_loss(model: AutoEncoder, x: torch.Tensor, config: TwinConfig) -> torch.Tensor:
    if config.contrastive_weight == 0:
        return F.mse_loss(model.decoder(model.encoder(x)), x)
    z1 = model.encoder(x if config.views == "clean" else augment(x, config))
    z2 = model.encoder(augment(x, config))
    rec = F.mse_loss(model.decoder(z1), x)
    return rec + config.contrastive_weight * nt_xent(z1, z2, config.temperature)


class Minibatches(Sampler):
    """Each epoch a new permutation cut into ``batch_size`` slices; a final slice of one cell joins the previous."""

    def __init__(self, n_obs: int, batch_size: int, generator: torch.Generator):
        self.n_obs, self.batch_size, self.generator = n_obs, batch_size, generator
        starts = list(range(0, n_obs, batch_size))
        if len(starts) > 1 and n_obs - starts[-1] < 2:
            starts.pop()
        self.bounds = list(zip(starts, starts[1:] + [n_obs]))

    def __len__(self) -> int:
        return len(self.bounds)

    def __iter__(self):
        order = torch.randperm(self.n_obs, generator=self.generator).numpy()
        for start, stop in self.bounds:
            yield order[start:stop]


class CSRRows(Dataset):
    """Whole batches of rows of a CSR matrix, densified to float32 tensors."""

    def __init__(self, x: sp.csr_matrix):
        self.x = x

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.x[rows].toarray())


def train(x: sp.csr_matrix, config: TwinConfig, epochs: int, batch_size: int, seed: int, workers: int,
          device: torch.device) -> tuple[list[float], list[float]]:
    """Seconds and mean loss of each of ``epochs`` epochs after one untimed warm-up epoch (the loss is read back
    once per epoch, which also waits for an accelerator to finish the epoch)."""
    torch.manual_seed(seed)
    model = AutoEncoder(x.shape[1], config).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, betas=(0.9, 0.999), eps=1e-8)
    sampler = Minibatches(x.shape[0], batch_size, torch.Generator().manual_seed(seed))
    loader = DataLoader(CSRRows(x), sampler=sampler, batch_size=None, num_workers=workers,
                        persistent_workers=workers > 0)
    seconds, losses = [], []
    for _ in range(epochs + 1):
        started, total = time.perf_counter(), torch.zeros((), device=device)
        for batch in loader:
            batch = batch.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            loss = cae_loss(model, batch, config)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(batch)
        losses.append(float(total) / x.shape[0])  # reads the loss back: on an accelerator, waits for the epoch
        seconds.append(time.perf_counter() - started)
    return seconds[1:], losses[1:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("matrix", help=".npz of the log-normalised cells x genes matrix (scipy.sparse.save_npz)")
    p.add_argument("out", help="output JSON")
    p.add_argument("--config", required=True, help="JSON of all TwinConfig fields (cae's training-relevant config)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up epoch)")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (0: in the main process)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="torch device (cuda needs a CUDA build of torch)")
    args = p.parse_args()
    if args.epochs < 1 or args.batch_size < 2 or args.threads < 1:
        raise SystemExit("--epochs must be >= 1, --batch-size >= 2, --threads >= 1")
    config = TwinConfig.from_json(args.config)
    torch.set_num_threads(args.threads)
    x = sp.load_npz(args.matrix).tocsr().astype(np.float32)
    seconds, losses = train(x, config, args.epochs, args.batch_size, args.seed, args.workers,
                            torch.device(args.device))
    trained_until = time.time()  # the wall-clock end of the last epoch, for GPU utilisation windows
    result = {"torch": torch.__version__, "torch_threads": torch.get_num_threads(), "workers": args.workers,
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "device": args.device,
              "python": platform.python_version(), "cells": x.shape[0], "genes": x.shape[1], "config": asdict(config),
              "batch_size": args.batch_size, "epoch_seconds": seconds,
              "cells_per_s": [x.shape[0] / s for s in seconds], "epoch_loss": losses,
              "trained_until_unix": trained_until}
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    print(json.dumps({k: result[k] for k in ("torch", "torch_threads", "cells_per_s")}), flush=True)


if __name__ == "__main__":
    main()
