"""Label consistency on paired data (annotation correction in the joint space, issue 14 item 3).

mop_snare_paired with planted annotation errors: 25% of Oligo cells relabelled Astro and 5% of L2/3 relabelled
Pvalb (seeded per seed; Mis excluded). ``tl.label_consistency`` flags cells in an embedding; scored by precision
and recall against the planted cells, with its label-free precision estimate. Rules: ``group`` (the default:
(given, neighbourhood) groups the embedding's own mixing does not explain) and ``cell`` (every cell whose
neighbourhood majority disagrees, ``min_enrichment=0``). Embeddings: ``sci2cl`` (default joint) and
``pca_rna`` (RNA PCA, the same as benchmarks/integration.py's row).

    python benchmarks/label_consistency.py --seeds 5 --json results/label_consistency.json [--embeddings DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MACHINE, machine, median_table, write_json_atomic
from integration import DATASET, default_fusion, sci2cl, stored
from integration_views import pca_rna

from omics_cl import datasets, tl

RULES = {"group": {}, "cell": {"min_enrichment": 0, "min_group_cells": 0}}


def plant_errors(truth: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Given labels with 25% of Oligo relabelled Astro and 5% of L2/3 relabelled Pvalb; the planted mask."""
    rng = np.random.default_rng([seed, 5])
    oligo, l23 = np.flatnonzero(truth == "Oligo"), np.flatnonzero(truth == "L2/3")
    to_astro = rng.choice(oligo, len(oligo) // 4, replace=False)
    to_pvalb = rng.choice(l23, int(0.05 * len(l23)), replace=False)
    given = truth.astype(object).copy()
    given[to_astro], given[to_pvalb] = "Astro", "Pvalb"
    planted = np.zeros(len(truth), bool)
    planted[np.r_[to_astro, to_pvalb]] = True
    return given, planted


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    p.add_argument("--json", required=True, help="output JSON list of rows")
    p.add_argument("--embeddings", help="integration.py's --embeddings directory: its embeddings are read (and "
                   "missing ones kept there)")
    args = p.parse_args(argv)
    rna, atac = datasets.load(DATASET, modality="rna"), datasets.load(DATASET, modality="atac")
    truth = rna.obs["cell_type"].astype(str).to_numpy()
    rows = []
    print(f"machine: {machine()}", flush=True)
    for seed in range(args.seeds):
        given, planted = plant_errors(truth, seed)
        embeddings = {"sci2cl": stored(args.embeddings, f"full_sci2cl_{seed}", sci2cl, rna, atac, seed, {}),
                      "pca_rna": stored(args.embeddings, f"full_pca_rna_{seed}", pca_rna, rna, seed)}
        embeddings = {name: default_fusion(out, seed) if name == "sci2cl" else out["joint"]  # kept views, today's read-off
                      for name, (out, _) in embeddings.items()}
        for embedding, z in embeddings.items():
            work = rna.copy()
            work.obs["given"], work.obsm["X_joint"] = given, z
            for rule, params in RULES.items():
                table = tl.label_consistency(work, "given", use_rep="X_joint", exclude=["Mis"], seed=seed, **params)
                flags = work.obs["omics_cl_label_suspect"].to_numpy()
                hits = int((flags & planted).sum())
                row = {"embedding": embedding, "rule": rule, "seed": seed, "n_flagged": int(flags.sum()),
                       "precision": hits / flags.sum() if flags.any() else 0.0, "recall": hits / planted.sum(),
                       "estimated_precision": work.uns["omics_cl"]["label_consistency"]["estimated_precision"],
                       "n_groups": len(table)}
                rows.append({**row, "machine": MACHINE})
                print(json.dumps(row), flush=True)
        write_json_atomic(rows, args.json)
    print(f"\nmachine: {machine()}")
    print(median_table(rows, ["embedding", "rule"], ["precision", "recall", "estimated_precision", "n_flagged"],
                       spread=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
