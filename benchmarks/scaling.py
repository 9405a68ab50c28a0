"""Scaling of streamed cae clustering: 10^4 to 10^6 synthetic cells x 2,000 genes read from a backed .h5ad.

Cells are negative-binomial counts (gamma-Poisson, a dispersion per gene) of 12 cell types, each type
changing the mean of a random 10% of genes, with log-normal library sizes (median 1,000 counts; about 18% of
entries nonzero); they are written to a .h5ad in chunks of 20,000 cells, so generation never holds the whole
matrix. Each size runs in its own process (peak
RSS is that run's): the file is opened ``backed="r"`` and each phase timed: ``prepare`` (library sizes and
seurat_v3 HVGs from chunked moments), ``train`` (cae streamed in chunks, ``--epochs`` epochs, including
compilation), ``embed``, ``knn`` (the cosine kNN graph ``tl.cluster`` builds) and ``leiden`` (resolution 1).
``input_wait_fraction``: of the training epochs' seconds (after the first, compiling one), the share the steps
waited for their batches (``TrainResult.epoch_input_wait``: when the prefetched batch is not ready, the loop lets
the step in flight finish, then times the wait on the prefetch queue).
Peak host RSS is sampled every 50 ms per phase (psutil) and read for the whole run from getrusage; peak
device memory comes from jax's ``memory_stats`` (n/a on the CPU); the 1-minute load average at the end of each
phase is recorded, as other work on the machine slows it. Rows are written after every phase, so a long run
leaves what it finished.

    python benchmarks/scaling.py --cells 100000 --epochs 3
    python benchmarks/scaling.py --table
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_json_atomic  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "scaling.json"
N_TYPES, CHUNK = 12, 20_000
PHASES = ("generate", "prepare", "train", "embed", "knn", "leiden")


def type_profiles(rng: np.random.Generator, n_genes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fold, profiles, theta)`` of the synthetic cell types: each type's fold change per gene (a random 10% of
    genes changed), its expression shares (a log-normal base times the fold, rows summing to 1) and the genes'
    negative-binomial dispersions."""
    base = rng.lognormal(0.0, 2.0, n_genes)
    fold = np.exp(rng.normal(0.0, 1.0, (N_TYPES, n_genes)) * (rng.random((N_TYPES, n_genes)) < 0.1))
    profiles = base * fold / (base * fold).sum(1, keepdims=True)
    return fold, profiles, rng.lognormal(0.5, 0.5, n_genes)


def write_counts(path: Path, n_cells: int, n_genes: int, seed: int) -> np.ndarray:
    """Write the synthetic counts (CSR, float32) to ``path`` chunk by chunk; returns the cell types."""
    import anndata as ad
    import h5py
    import pandas as pd
    import scipy.sparse as sp
    from anndata.io import sparse_dataset, write_elem
    from tqdm.auto import tqdm

    from omics_cl.core.files import atomic_write

    rng = np.random.default_rng(seed)
    fold, profiles, theta = type_profiles(rng, n_genes)
    types = rng.integers(0, N_TYPES, n_cells)

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            write_elem(f, "obs", pd.DataFrame({"cell_type": pd.Categorical(types.astype(str))},
                                              index=[f"c{i}" for i in range(n_cells)]))
            write_elem(f, "var", pd.DataFrame(index=[f"g{i}" for i in range(n_genes)]))
            for key in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
                write_elem(f, key, {})
            for start in tqdm(range(0, n_cells, CHUNK), desc=f"writing {n_cells} cells"):
                chunk_rng = np.random.default_rng([seed, start])
                t = types[start:start + CHUNK]
                library = chunk_rng.lognormal(np.log(1000), 0.4, len(t))[:, None]
                mu = (library * profiles[t]).astype(np.float32)
                counts = chunk_rng.poisson(chunk_rng.gamma(theta, mu / theta)).astype(np.float32)
                counts[:, 0] += counts.sum(1) == 0  # no empty cells
                block = sp.csr_matrix(counts)
                if start == 0:
                    write_elem(f, "X", block)
                else:
                    sparse_dataset(f["X"]).append(block)
        ad.read_h5ad(tmp, backed="r").file.close()  # a readable AnnData before it replaces the target

    atomic_write(path, write, suffix=".h5ad")
    return types


class PeakRSS:
    """Peak resident set size of this process, sampled every 50 ms by a thread while inside ``with``."""

    def __enter__(self):
        import psutil

        self.process, self.peak, self.done = psutil.Process(), 0, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while True:
            self.peak = max(self.peak, self.process.memory_info().rss)
            if self.done.wait(0.05):
                return

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()


def device_peak_gib() -> float | None:
    import jax

    stats = jax.local_devices()[0].memory_stats() or {}
    return stats["peak_bytes_in_use"] / 2**30 if "peak_bytes_in_use" in stats else None


def save(row: dict, path: Path) -> None:
    rows = json.loads(path.read_text()) if path.exists() else []
    rows = [r for r in rows if r["n_cells"] != row["n_cells"]] + [row]
    write_json_atomic(sorted(rows, key=lambda r: r["n_cells"]), str(path))


def run(n_cells: int, n_genes: int, n_top_genes: int, epochs: int, seed: int, workdir: Path, out: Path) -> dict:
    import anndata as ad
    from sklearn.metrics import adjusted_rand_score

    from omics_cl import models
    from omics_cl.core import graph
    from omics_cl.core.train import run_stages
    from omics_cl.data.preprocess import prepare_counts

    row = {"n_cells": n_cells, "n_genes": n_genes, "n_top_genes": n_top_genes, "epochs": epochs, "seed": seed,
           "machine": machine()}

    @contextlib.contextmanager
    def phase(name: str):
        print(f"{name} ...", flush=True)
        start = time.perf_counter()
        with PeakRSS() as peak:
            yield
        row[f"{name}_s"] = time.perf_counter() - start
        row[f"{name}_peak_rss_gib"] = peak.peak / 2**30
        row["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        row["device_peak_gib"] = device_peak_gib()
        row[f"{name}_load_1m"] = os.getloadavg()[0]  # other work on the machine slows every phase
        save(row, out)

    path = workdir / f"synthetic_{n_cells}.h5ad"
    with phase("generate"):
        types = write_counts(path, n_cells, n_genes, seed)
    adata = ad.read_h5ad(path, backed="r")
    row["density"] = adata.X.group["data"].shape[0] / (n_cells * n_genes)
    spec, ctx = models.get("cae", "cluster"), models.Context(seed)
    config, train = models.configure(spec, epochs=epochs, fusion="none")  # streamed: the latent alone
    with phase("prepare"):
        prepared = replace(prepare_counts(adata, None, n_top_genes), stream=True)
    source = spec.source(prepared, config, ctx)
    with phase("train"):
        result = run_stages(spec.init(source, config, ctx), spec.stages(config, train, source, ctx), source, train,
                            seed, desc="cae")
    seconds, waits = result.epoch_seconds["train"], result.epoch_input_wait["train"]
    row["s_per_epoch"] = float(np.mean(seconds[1:] or seconds))  # the first epoch includes compilation
    row["epoch_seconds"], row["epoch_input_wait_s"] = seconds, waits
    row["input_wait_fraction"] = float(sum(waits[1:] or waits) / sum(seconds[1:] or seconds))
    row["loss"] = result.history["loss"]
    with phase("embed"):
        z = spec.embed(result.model, source, config, train, ctx)[0]["embedding"]
    with phase("knn"):
        adjacency = graph.neighbor_graph(z, ctx.n_neighbors, "cosine", seed)
    with phase("leiden"):
        labels = graph.leiden(adjacency, ctx.resolution, seed)
    row["n_clusters"] = int(labels.max()) + 1
    row["ari_cell_types"] = float(adjusted_rand_score(types, labels))  # a sanity check against the generating types
    save(row, out)
    path.unlink()
    return row


def table(rows: list[dict]) -> str:
    def cell(r, key):
        v = r.get(key)
        return "n/a" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)

    keys = (["n_cells", "epochs"] + [f"{p}_s" for p in PHASES] + ["s_per_epoch", "input_wait_fraction", "peak_rss_gib"]
            + [f"{p}_peak_rss_gib" for p in PHASES] + ["device_peak_gib", "n_clusters", "ari_cell_types"]
            + [f"{p}_load_1m" for p in PHASES])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r, k) for k in keys) + " |" for r in rows]
    machines = sorted({r["machine"] for r in rows})
    return "\n".join(lines + [""] + [f"machine: {m}" for m in machines])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cells", type=int, default=10_000)
    p.add_argument("--genes", type=int, default=2000)
    p.add_argument("--n-top-genes", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/omics_cl_scaling"))
    p.add_argument("--json", type=Path, default=RESULTS)
    p.add_argument("--table", action="store_true", help="only print the table of --json")
    args = p.parse_args(argv)
    if not args.table:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run(args.cells, args.genes, args.n_top_genes, args.epochs, args.seed, args.workdir, args.json)
    print(table(json.loads(args.json.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
