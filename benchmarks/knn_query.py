"""Exact nearest neighbours of query rows among reference rows on the CPU, as label transfer's neighbour vote
asks for them (64-d latents, k = 30, cosine): scikit-learn's brute force (``neighbors.knn``'s ``"auto"`` choice for
a query on the CPU before 2026-12-05) against JAX's blocked search (``"jax"``, the choice since). The latents are
synthetic, a mixture of 12 Gaussian clusters. Prints, per query size, each method's seconds (median [max - min]
over rounds, one untimed warm-up call first), the ratio of the medians, and the share of query rows whose
neighbour sets agree.

    python benchmarks/knn_query.py --query-cells 10000,100000 --rounds 3 --json benchmarks/results/knn_query.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MACHINE, write_json_atomic  # noqa: E402

from omics_cl.core import neighbors  # noqa: E402

METHODS = ("brute", "jax")


def latents(n: int, dim: int, seed: int, n_types: int = 12) -> np.ndarray:
    """``n`` rows around ``n_types`` seeded centres (the centres are the same for every ``seed``)."""
    centres = np.random.default_rng(0).normal(size=(n_types, dim))
    rng = np.random.default_rng(seed)
    return (centres[rng.integers(0, n_types, n)] + 0.5 * rng.normal(size=(n, dim))).astype(np.float32)


def measure(n_query: int, n_reference: int, dim: int, k: int, rounds: int) -> list[dict]:
    """One row per method: seconds of each round, and the share of query rows whose k neighbours (as sets)
    are the same under both methods."""
    reference, query = latents(n_reference, dim, seed=1), latents(n_query, dim, seed=2)
    found, rows = {}, []
    for method in METHODS:
        neighbors.knn(reference, k, "cosine", query=query[:256], method=method)  # warm-up (JAX compiles)
        seconds = []
        for _ in range(rounds):
            start = time.perf_counter()
            found[method], _ = neighbors.knn(reference, k, "cosine", query=query, method=method)
            seconds.append(time.perf_counter() - start)
        rows.append({"n_query": n_query, "n_reference": n_reference, "dim": dim, "k": k, "method": method,
                     "seconds": float(np.median(seconds)), "seconds_rounds": seconds})
    same = np.mean([set(a) == set(b) for a, b in zip(*(found[m] for m in METHODS))])
    for row in rows:
        row.update(same_neighbours=float(same), brute_over_jax=rows[0]["seconds"] / rows[1]["seconds"],
                   machine=MACHINE)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--query-cells", default="10000,100000", help="comma-separated query sizes")
    p.add_argument("--reference-cells", type=int, default=20_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--k", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", required=True)
    args = p.parse_args(argv)
    rows = [row for n in map(int, args.query_cells.split(","))
            for row in measure(n, args.reference_cells, args.dim, args.k, args.rounds)]
    write_json_atomic(rows, args.json)
    print("| query x reference cells | method | seconds, median [max - min] | brute / jax | same neighbours |")
    print("|---|---|---|---|---|")
    for r in rows:
        spread = max(r["seconds_rounds"]) - min(r["seconds_rounds"])
        print(f"| {r['n_query']:,} x {r['n_reference']:,} | {r['method']} | {r['seconds']:.2f} [{spread:.2f}] "
              f"| {r['brute_over_jax']:.2f} | {r['same_neighbours']:.4f} |")
    print(f"\nmachine: {MACHINE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
