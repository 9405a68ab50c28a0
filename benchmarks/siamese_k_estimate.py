"""Why siamese's label-free K estimate grew from 17 to 431 clusters between 10^4 and 10^5 synthetic cells
(benchmarks/results/siamese_scaling.json).

The synthetic cells of benchmarks/siamese_scaling.py are thinned copies of 10,309 real cells, so 10^5 cells
hold about 10 copies of each. For each size this measures, on the PCA embedding and on the siamese embedding
(``tl.cluster``, same epochs as the scaling run), the share of each cell's 15 graph neighbours that are copies
of its own source cell and the Leiden cluster count at resolution 1; and, as a control, the Leiden count on the
cells that are the first copy of their source cell (no duplicates, same embedding).

    python benchmarks/siamese_k_estimate.py --json benchmarks/results/siamese_k_estimate.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_json_atomic  # noqa: E402
from siamese_scaling import synthetic  # noqa: E402

EPOCHS = {10_000: 4, 100_000: 2}  # as in results/siamese_scaling.json


def measure(z: np.ndarray, source: np.ndarray, seed: int) -> dict:
    from omics_cl.core import graph
    from omics_cl.core.neighbors import knn

    idx, _ = knn(z, 16, "cosine", seed)
    copies = float(np.mean(source[idx[:, 1:]] == source[:, None]))
    first = np.unique(source, return_index=True)[1]
    return {"copy_neighbour_share": copies,
            "leiden_clusters": int(graph.leiden(graph.neighbor_graph(z, 15, "cosine", seed), 1.0, seed).max()) + 1,
            "dedup_cells": len(first),
            "dedup_leiden_clusters": int(graph.leiden(graph.neighbor_graph(z[first], 15, "cosine", seed), 1.0,
                                                      seed).max()) + 1}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--thin", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", required=True)
    args = p.parse_args(argv)
    from omics_cl import tl

    rows = []
    for n in map(int, args.sizes.split(",")):
        adata = synthetic(n, args.thin, args.seed)
        source = adata.obs["source_cell"].to_numpy()
        for method in ("pca", "siamese"):
            params = {} if method == "pca" else {"epochs": EPOCHS.get(n, 4)}
            record = tl.cluster(adata, method=method, seed=args.seed, progress=False, **params)
            z = np.asarray(adata.obsm[f"X_{method}"])[:, :record["graph_dims"]]
            rows.append({"n_cells": n, "method": method, "n_clusters": record["n_clusters"],
                         "mean_copies": n / len(np.unique(source)), **measure(z, source, args.seed),
                         "machine": machine()})
            print(rows[-1], flush=True)
            write_json_atomic(rows, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
