"""ATAC-only embeddings on mop_snare_paired (``tl.embed_atac``), clustered by Leiden, n_clusters protocol.

Rows per seed: ``lsi_<n>`` (``embed_atac(n_components=n)``) on all ATAC cells (``design="all"``), and on
the ATAC of half B of the label-transfer split (``design="half_b"``, the same 50/50 split as
``label_transfer.py``): ``lsi_<n>`` and ``scncl_latent``, ``embed_atac(model=...)`` with a transfer model
trained on the RNA of half A (package defaults). Leiden seed = the row's seed; K = the 14 labelled types
(cells labelled ``Mis`` are clustered but not scored). Labels score only.

    python benchmarks/atac_embedding.py --seeds 5 --json results/atac_embedding.json [--resume]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MACHINE, add_seed_arguments, machine, median_table, seed_range, write_json_atomic  # noqa: E402

from omics_cl import datasets, metrics, pp, tl  # noqa: E402

N_COMPONENTS = (10, 20, 30, 50)


def score(adata, rep: str, seed: int) -> dict:
    truth = adata.obs["cell_type"].astype(str).to_numpy()
    k = len(set(truth) - {"Mis"})
    tl.cluster_embedding(adata, rep, n_clusters=k, seed=seed, key_added="bench_cluster")
    scored = truth != "Mis"
    pred = adata.obs["bench_cluster"].to_numpy()
    return {"ari": metrics.ari(truth[scored], pred[scored]), "nmi": metrics.nmi(truth[scored], pred[scored])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_seed_arguments(p)
    p.add_argument("--json", required=True)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args(argv)
    rows = json.loads(Path(args.json).read_text()) if args.resume and Path(args.json).exists() else []
    done = {(r["design"], r["method"], r["seed"]) for r in rows}
    print(f"machine: {machine()}", flush=True)
    rna = datasets.load("mop_snare_paired", modality="rna")
    atac = datasets.load("mop_snare_paired", modality="atac")
    activity_all = pp.gene_activity(atac, datasets.annotation_path("mm10_ensembl_genes.tsv.gz"))

    def add(design, method, seed, adata, rep, seconds):
        rows.append({"design": design, "method": method, "seed": seed, **score(adata, rep, seed),
                     "seconds": seconds, "machine": MACHINE})
        print(rows[-1], flush=True)
        write_json_atomic(rows, args.json)

    for seed in seed_range(args):
        perm = np.random.default_rng(seed).permutation(rna.n_obs)
        half_a, half_b = perm[: rna.n_obs // 2], perm[rna.n_obs // 2:]
        for design, cells in (("all", np.arange(atac.n_obs)), ("half_b", half_b)):
            for n in N_COMPONENTS:
                if (design, f"lsi_{n}", seed) in done:
                    continue
                part = atac[cells].copy()
                start = time.perf_counter()
                tl.embed_atac(part, n_components=n, seed=seed)
                add(design, f"lsi_{n}", seed, part, "X_lsi", time.perf_counter() - start)
        if ("half_b", "scncl_latent", seed) in done:
            continue
        ref = rna[half_a].copy()
        ref = ref[ref.obs["cell_type"] != "Mis"].copy()
        part, activity = atac[half_b].copy(), activity_all[half_b].copy()
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            tl.transfer_labels(ref, atac[half_b].copy(), "cell_type", gene_activity=activity, seed=seed,
                               progress=False, save_model=f"{tmp}/model")
            tl.embed_atac(part, model=f"{tmp}/model", gene_activity=activity, seed=seed)
            add("half_b", "scncl_latent", seed, part, "X_scncl", time.perf_counter() - start)
    print(f"\nmachine: {machine()}")
    print(median_table(rows, ["design", "method"], ["ari", "nmi", "seconds"], spread=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
