"""Training throughput (cells/s) of the cae loop: the host-fed loop (one dispatch per batch, batches built in
numpy), the device-resident loop (one dispatch per epoch, batches gathered on the device) and the baseline,
the raw jitted step looped over batches already densified and normalised on the device. ``torch`` adds the PyTorch
twin (``anchors/torch_twin.py``: the same network, loss and optimiser fed by a ``DataLoader`` over the same
log-normalised matrix), run in the anchors environment (``--anchors-python`` or ``$OMICS_CL_ANCHORS_PYTHON``) with
``--torch-threads`` intra-op threads (its OpenMP takes ``$OMP_WAIT_POLICY`` from this process's environment).

Each loop runs ``--epochs`` epochs after one warm-up epoch (compilation); a row is one epoch. The raw step
runs the same batches (one epoch's permutation, prepared before timing) ``--epochs`` times. ``--rounds``
repeats the three in turn, so a change of machine load hits all three alike.

    python benchmarks/throughput.py --datasets zeisel_cortex --rounds 3 --epochs 3 --json out.json
    python benchmarks/throughput.py --datasets synthetic --rounds 2 --epochs 2 --json out.json --append
    python benchmarks/throughput.py --datasets zeisel_cortex --hidden 128 --paths host,host_bar,raw --json bar.json
    python benchmarks/throughput.py --datasets zeisel_cortex --paths host,device,raw,torch --json twin.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MACHINE, median_table, raw_step_seconds, write_json_atomic  # noqa: E402
from gpu_load import UtilisationSampler  # noqa: E402

from omics_cl import datasets  # noqa: E402
from omics_cl.core.train import TrainConfig, fit  # noqa: E402
from omics_cl.data.preprocess import LogNormalizer, prepare_counts  # noqa: E402
from omics_cl.data.sources import CountsSource  # noqa: E402
from omics_cl.models.cae import AutoEncoder, CAEConfig, make_loss  # noqa: E402

PATHS = {"host": "host loop", "host_bar": "host loop, epoch bar", "device": "device loop",
         "raw": "raw step (baseline)", "torch": "torch twin (DataLoader)"}
TORCH_TWIN = Path(__file__).resolve().parent / "anchors" / "torch_twin.py"
TWIN_FIELDS = ("hidden", "latent", "dropout", "contrastive_weight", "temperature", "views", "gene_dropout",
               "noise_sigma", "scale_low", "scale_high")


def synthetic_counts(n_cells: int, n_genes: int, seed: int = 0) -> sp.csr_matrix:
    """Sparse counts: every cell has about 10% of genes nonzero (1 + Poisson(1)), gene 0 always."""
    rng = np.random.default_rng(seed)
    nnz = n_cells * n_genes // 10
    rows = np.repeat(np.arange(n_cells), nnz // n_cells)
    cols = rng.integers(0, n_genes, len(rows))
    x = sp.csr_matrix((1 + rng.poisson(1.0, len(rows)).astype(np.float32), (rows, cols)), shape=(n_cells, n_genes))
    x.sum_duplicates()
    return sp.csr_matrix(x + sp.csr_matrix((np.ones(n_cells, np.float32), (np.arange(n_cells), np.zeros(n_cells))),
                                           shape=(n_cells, n_genes)))


def source_of(name: str, n_cells: int) -> CountsSource:
    if name == "synthetic":
        x = synthetic_counts(n_cells, 2000)
        return CountsSource(x, LogNormalizer(np.arange(x.shape[1]), np.asarray(x.sum(1)).ravel()))
    return prepare_counts(datasets.load(name, modality="rna")).source()


def loop_seconds(source, config: CAEConfig, train: TrainConfig, mode: str, progress: bool = False) -> list[float]:
    """Seconds of each epoch after the first (which compiles); with ``progress``, the epoch's bar of cells is
    drawn from its first batch on (no delay)."""
    model = AutoEncoder(source.n_features, config, rngs=nnx.Rngs(0))
    result = fit(model, make_loss(config), source, replace(train, device_resident=mode, progress=progress), seed=0,
                 epoch_bar_delay=0.0)
    return result.epoch_seconds[1:]


def anchors_python(args) -> str:
    python = args.anchors_python or os.environ.get("OMICS_CL_ANCHORS_PYTHON")
    if not python:
        raise SystemExit("the torch path runs in the anchors environment: pass --anchors-python or set "
                         "OMICS_CL_ANCHORS_PYTHON (see benchmarks/anchors/README.md)")
    return python


def torch_twin_seconds(matrix: Path, config: CAEConfig, train: TrainConfig, args) -> tuple[list[float], dict]:
    """Seconds of each epoch of the PyTorch twin on the saved matrix after its warm-up epoch, and the fields of its
    rows: a path label naming its threads (and ``$OMP_WAIT_POLICY`` and a device other than the CPU when set), its
    torch version, threads, DataLoader workers, OpenMP wait policy and device."""
    twin_config = {k: v for k, v in asdict(config).items() if k in TWIN_FIELDS}
    out = matrix.with_name("twin.json")
    subprocess.run([anchors_python(args), str(TORCH_TWIN), str(matrix), str(out), "--config",
                    json.dumps({**twin_config, "learning_rate": train.learning_rate}), "--epochs", str(args.epochs),
                    "--batch-size", str(train.batch_size), "--threads", str(args.torch_threads),
                    "--device", args.torch_device], check=True)
    twin = json.loads(out.read_text())
    label = ", ".join([PATHS["torch"], f"{twin['torch_threads']} threads"]
                      + ([f"OMP_WAIT_POLICY={twin['omp_wait_policy']}"] if twin["omp_wait_policy"] else [])
                      + ([twin["device"]] if twin["device"] != "cpu" else []))
    return twin["epoch_seconds"], {"path": label, "trained_until": twin["trained_until_unix"],
                                   **{k: twin[k] for k in ("torch", "torch_threads", "workers", "omp_wait_policy",
                                                           "device")}}


def path_seconds(key: str, source, matrix: Path, config: CAEConfig, train: TrainConfig,
                 args) -> tuple[list[float], dict]:
    """Seconds of each timed epoch of path ``key`` and extra fields for its rows (the torch twin's with
    ``trained_until``, the wall-clock time its last epoch ended)."""
    if key == "torch":
        return torch_twin_seconds(matrix, config, train, args)
    if key == "raw":
        model = AutoEncoder(source.n_features, config, rngs=nnx.Rngs(0))
        return raw_step_seconds(model, make_loss(config), source, train, 0, train.epochs - 1), {}
    mode = "always" if key == "device" else "never"
    return loop_seconds(source, config, train, mode, progress=key == "host_bar"), {}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default="zeisel_cortex,synthetic", help="registry names and/or 'synthetic'")
    p.add_argument("--synthetic-cells", type=int, default=100_000, help="cells of the synthetic x 2000 matrix")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per loop (after one warm-up epoch)")
    p.add_argument("--rounds", type=int, default=1, help="times the chosen paths run, in turn")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--hidden", default="1024,1024", help="cae hidden layer widths (default: the cae default)")
    p.add_argument("--paths", default="host,device,raw",
                   help="of host, host_bar (the host loop drawing its epoch bar of cells), device, raw, torch "
                        "(the PyTorch twin in the anchors environment)")
    p.add_argument("--anchors-python", help="python of the anchors environment (torch)")
    p.add_argument("--torch-threads", type=int, default=2, help="torch intra-op threads of the twin")
    p.add_argument("--torch-device", default="cpu", help="torch device of the twin (cuda: a CUDA build of torch)")
    p.add_argument("--json", required=True, help="output JSON list of rows")
    p.add_argument("--append", action="store_true", help="keep the rows already in --json")
    args = p.parse_args()
    config = CAEConfig(hidden=tuple(int(h) for h in args.hidden.split(",")))
    train = TrainConfig(epochs=args.epochs + 1, batch_size=args.batch_size, progress=False)
    chosen = args.paths.split(",")
    unknown = set(chosen) - set(PATHS)
    if unknown:
        raise SystemExit(f"unknown paths {sorted(unknown)}")
    if "torch" in chosen:
        anchors_python(args)
    rows = json.loads(Path(args.json).read_text()) if args.append and Path(args.json).exists() else []
    with tempfile.TemporaryDirectory() as tmp, UtilisationSampler() as sampler:
        for name in args.datasets.split(","):
            source = source_of(name, args.synthetic_cells)
            matrix = Path(tmp) / f"{name}.npz"
            if "torch" in chosen:
                sp.save_npz(matrix, source.lognorm_sparse(), compressed=False)
            for round_ in range(args.rounds):
                for key in chosen:
                    epoch_seconds, extra = path_seconds(key, source, matrix, config, train, args)
                    until = extra.pop("trained_until", time.time())
                    gpu_util = sampler.mean(until - sum(epoch_seconds), until)
                    for seconds in epoch_seconds:
                        row = {"dataset": name, "cells": source.n_obs, "genes": source.n_features,
                               "hidden": args.hidden, "path": PATHS[key], "round": round_,
                               "cells_per_s": source.n_obs / seconds, "epoch_seconds": seconds, **extra,
                               **({"gpu_util": gpu_util} if gpu_util is not None else {})}
                        rows.append({**row, "machine": MACHINE})
                        print(json.dumps(row), flush=True)
                    write_json_atomic(rows, args.json)
    for group in {(r["dataset"], r["hidden"]) for r in rows}:
        members = [r for r in rows if (r["dataset"], r["hidden"]) == group]
        raw = np.median([r["cells_per_s"] for r in members if r["path"].startswith("raw")])
        for r in members:
            r["of_raw_step"] = r["cells_per_s"] / raw
    write_json_atomic(rows, args.json)
    print(f"\nMachine: {MACHINE}\ncae (latent {config.latent}), batch {args.batch_size}; medians over rounds x "
          f"epochs (this call: {args.rounds} x {args.epochs}) [spread max - min]; of_raw_step: cells/s over the "
          "raw step's median")
    for version, workers in sorted({(r["torch"], r["workers"]) for r in rows if "torch" in r}):
        print(f"torch twin rows: torch {version}, DataLoader workers {workers}, threads as in the path")
    print()
    print(median_table(rows, ["dataset", "cells", "genes", "hidden", "path"],
                       ["cells_per_s", "of_raw_step", "epoch_seconds"]
                       + (["gpu_util"] if any("gpu_util" in r for r in rows) else []), spread=True))


if __name__ == "__main__":
    main()
