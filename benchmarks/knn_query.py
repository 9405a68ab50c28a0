"""Exact nearest neighbours of query rows among reference rows on the CPU, as label transfer's neighbour vote
asks for them (64-d latents, k = 30, cosine): scikit-learn's brute force (``neighbors.knn``'s ``"auto"`` choice for
a query on the CPU before 2026-12-05) against JAX's blocked search (``"jax"``, the choice since). The latents are
synthetic, a mixture of 12 Gaussian clusters. Prints, per query size, each method's seconds (median [max - min]
over rounds, one untimed warm-up call first), the ratio of the medians, and the share of query rows whose
neighbour sets agree.

With ``--self-cells``, also the kNN graph of rows among themselves (k = 16) above scikit-learn's 20,000 rows:
pynndescent (``"auto"`` there before 2026-12-05) against JAX's exact search (``"auto"`` up to 50,000 rows since),
each in a new process (pynndescent's first call compiles its numba code, as a user's first call does), its first
and second call timed, and pynndescent's recall of the exact neighbours.

    python benchmarks/knn_query.py --query-cells 10000,100000 --rounds 3 --json benchmarks/results/knn_query.json
    python benchmarks/knn_query.py --query-cells "" --self-cells 30000,50000 --json benchmarks/results/knn_self.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
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


def self_graph_call(n: int, dim: int, k: int, method: str, out: str) -> dict:
    """In this process (a new one): the kNN graph of ``n`` latents twice by ``method``; the seconds of each call,
    the indices of the first saved to ``out``."""
    x = latents(n, dim, seed=1)
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        idx, _ = neighbors.knn(x, k, "cosine", method=method)
        seconds.append(time.perf_counter() - start)
    np.save(out, idx)
    return {"first_call_s": seconds[0], "second_call_s": seconds[1]}


def measure_self(n: int, dim: int, k: int) -> list[dict]:
    """One row per method, each run in a new process; pynndescent's recall of the exact (JAX) neighbours."""
    rows, found = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("pynndescent", "jax"):
            out = f"{tmp}/{method}.npy"
            done = subprocess.run([sys.executable, __file__, "--self-call", str(n), str(dim), str(k), method, out],
                                  check=True, capture_output=True, text=True)
            rows.append({"n_self": n, "dim": dim, "k": k, "method": method, **json.loads(done.stdout.splitlines()[-1]),
                         "machine": MACHINE})
            found[method] = np.load(out)
    recall = float(np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(found["pynndescent"], found["jax"])]))
    for row in rows:
        row["pynndescent_recall"] = recall
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--query-cells", default="10000,100000", help="comma-separated query sizes")
    p.add_argument("--reference-cells", type=int, default=20_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--k", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--self-cells", default="", help="comma-separated sizes of kNN graphs of rows among themselves")
    p.add_argument("--self-call", nargs=5, help=argparse.SUPPRESS)  # n dim k method out: one measure_self process
    p.add_argument("--json")
    args = p.parse_args(argv)
    if args.self_call:
        n, dim, k, method, out = args.self_call
        print(json.dumps(self_graph_call(int(n), int(dim), int(k), method, out)))
        return 0
    if not args.json:
        p.error("--json is required")
    rows = [row for n in filter(None, args.query_cells.split(","))
            for row in measure(int(n), args.reference_cells, args.dim, args.k, args.rounds)]
    self_rows = [row for n in filter(None, args.self_cells.split(",")) for row in measure_self(int(n), args.dim, 16)]
    write_json_atomic(rows + self_rows, args.json)
    print("| query x reference cells | method | seconds, median [max - min] | brute / jax | same neighbours |")
    print("|---|---|---|---|---|")
    for r in rows:
        spread = max(r["seconds_rounds"]) - min(r["seconds_rounds"])
        print(f"| {r['n_query']:,} x {r['n_reference']:,} | {r['method']} | {r['seconds']:.2f} [{spread:.2f}] "
              f"| {r['brute_over_jax']:.2f} | {r['same_neighbours']:.4f} |")
    if self_rows:
        print("\n| graph of cells | method (new process) | first call s | second call s | pynndescent recall |")
        print("|---|---|---|---|---|")
        for r in self_rows:
            print(f"| {r['n_self']:,} | {r['method']} | {r['first_call_s']:.2f} | {r['second_call_s']:.2f} "
                  f"| {r['pynndescent_recall']:.3f} |")
    print(f"\nmachine: {MACHINE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
