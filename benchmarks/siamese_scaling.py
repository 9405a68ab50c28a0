"""Scaling of the siamese method: seconds per epoch and peak memory on 10^4 and 10^5 synthetic cells.

Synthetic cells are mop_snare_paired RNA cells drawn with replacement, each count binomially
thinned (p = ``--thin``), so every cell is a new noisy copy of a real profile. For each size one
subprocess runs ``tl.cluster(method="siamese")`` for ``--epochs`` epochs (half pre-training, half
clustering) and a second runs the PCA + Leiden baseline; peak memory is the subprocess's maximum
resident set size. Labels play no part.

    python benchmarks/siamese_scaling.py --sizes 10000,100000 --json benchmarks/results/siamese_scaling.json
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median_table, write_json_atomic  # noqa: E402


def synthetic(n_cells: int, thin: float, seed: int):
    import anndata as ad
    import numpy as np
    import scipy.sparse as sp

    from omics_cl import datasets

    src = sp.csr_matrix(datasets.load("mop_snare_paired", modality="rna").X)
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, src.shape[0], n_cells)
    x = src[drawn].tocsr()
    x.data = rng.binomial(x.data.astype(np.int64), thin).astype(np.float32)
    x.eliminate_zeros()
    x[np.flatnonzero(np.diff(x.indptr) == 0), 0] = 1  # a cell thinned to nothing keeps one count
    adata = ad.AnnData(x.tocsr())
    adata.obs["source_cell"] = drawn  # which real cell each synthetic cell copies (benchmarks/siamese_k_estimate.py)
    return adata


def run_one(method: str, n_cells: int, epochs: int, thin: float, seed: int) -> dict:
    """Runs in its own process so ru_maxrss is this run's peak."""
    from omics_cl import tl

    adata = synthetic(n_cells, thin, seed)
    start = time.perf_counter()
    rec = tl.cluster(adata, method=method, seed=seed, progress=False, **({"epochs": epochs} if method != "pca" else {}))
    row = {"n_cells": n_cells, "method": method, "seed": seed, "total_seconds": time.perf_counter() - start,
           "n_clusters": rec["n_clusters"], "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    row["pretrain_s_per_epoch"] = row["cluster_s_per_epoch"] = None
    if method == "siamese":
        secs = rec["params"]["epoch_seconds"]
        # the first epoch of a stage includes compilation: left out when the stage has more than one
        for stage, key in (("pretrain", "pretrain_s_per_epoch"), ("cluster", "cluster_s_per_epoch")):
            later = secs[stage][1:] or secs[stage]
            row[key] = float(sum(later) / len(later))
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--epochs", type=int, default=4, help="siamese epochs per run (half pre-training)")
    p.add_argument("--thin", type=float, default=0.5, help="binomial thinning probability")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", required=True)
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: METHOD:N_CELLS, run in this process
    args = p.parse_args(argv)
    if args.one:
        method, n = args.one.split(":")
        print(json.dumps(run_one(method, int(n), args.epochs, args.thin, args.seed)))
        return 0
    print(f"machine: {machine()}", flush=True)
    rows = []
    for n in map(int, args.sizes.split(",")):
        for method in ("siamese", "pca"):
            out = subprocess.run([sys.executable, __file__, "--one", f"{method}:{n}", "--epochs", str(args.epochs),
                                  "--thin", str(args.thin), "--seed", str(args.seed), "--json", args.json],
                                 check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
            write_json_atomic(rows, args.json)
    print(f"\nmachine: {machine()}")
    print(median_table(rows, ["n_cells", "method"], ["pretrain_s_per_epoch", "cluster_s_per_epoch", "total_seconds",
                                                     "peak_rss_gib", "n_clusters"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
