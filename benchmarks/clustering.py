"""Clustering benchmark: pca / ae / cae on real labelled datasets, both protocols, several seeds.

Each (dataset, method, seed) trains once; the embedding is clustered under the ``resolution``
protocol (Leiden, resolution 1.0) and the ``n_clusters`` protocol (resolution bisected to the
number of labelled classes). Labels are used only for scoring and for that K.

    python benchmarks/clustering.py --datasets zeisel_cortex,pbmc68k_reduced --methods pca,ae,cae \
        --seeds 3 --json results.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median_table, write_json_atomic  # noqa: E402

from omics_cl import datasets, metrics, tl  # noqa: E402

DEFAULT_DATASETS = "zeisel_cortex,cbmc_citeseq_rna500,pbmc68k_reduced,mop_snare_paired"


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=DEFAULT_DATASETS, help="comma-separated registry names")
    p.add_argument("--methods", default="pca,ae,cae", help="comma-separated methods")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    p.add_argument("--json", required=True, help="output JSON list of rows")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="override a trained method's default (exploration only; recorded in each row)")
    args = p.parse_args(argv)
    params = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.param)}

    print(f"machine: {machine()}", flush=True)
    rows = []
    for name in args.datasets.split(","):
        manifest = datasets.get_manifest(name)
        adata = datasets.load(name, modality="rna")
        labels = adata.obs[manifest.default_label_key]
        scored = metrics.labelled_mask(labels, manifest.unlabelled_values)
        k = int(labels[scored].nunique())
        print(f"{name}: {adata.n_obs} cells x {adata.n_vars} genes, {k} classes in "
              f"{manifest.default_label_key} ({int(scored.sum())} cells scored)", flush=True)
        for method in args.methods.split(","):
            for seed in range(args.seeds):
                extra = params if method != "pca" else {}
                rec = tl.cluster(adata, method=method, seed=seed, progress=False, **extra)
                fixed = tl.cluster_embedding(adata, f"X_{method}", n_clusters=k, seed=seed,
                                             key_added=f"{method}_cluster_k", n_dims=rec["graph_dims"])
                for protocol, key, info in (("resolution", f"{method}_cluster", rec),
                                            ("n_clusters", f"{method}_cluster_k", fixed)):
                    s = metrics.clustering_scores(labels, adata.obs[key], exclude=manifest.unlabelled_values)
                    row = {"dataset": name, "method": method, "protocol": protocol, "seed": seed, **s,
                           "n_clusters": info["n_clusters"], "train_seconds": rec["train_seconds"]}
                    if extra:
                        row["params"] = extra
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                write_json_atomic(rows, args.json)
    print(f"\nmachine: {machine()}")
    print(median_table(rows, ["dataset", "method", "protocol"], ["nmi", "ari", "acc", "n_clusters", "train_seconds"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
