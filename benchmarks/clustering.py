"""Clustering benchmark: pca / ae / cae / scinno / siamese and the scVI anchor on real labelled
datasets, both protocols, several seeds; tables give medians and [max - min] over seeds.

Embedding methods (pca, ae, cae, scvi) train once per (dataset, method, seed). The ``n_clusters`` protocol
(resolution bisected to the number of labelled classes) is ``tl.cluster``'s call with that K, the ``resolution``
protocol (Leiden, resolution 1.0) its call without K on the same trained model (read back from a checkpoint):
cae's read-off weighs its views by how well they agree at the K it is given (before 2026-12-06 the n_clusters
rows re-clustered the resolution call's embedding at K instead). Methods that cluster
themselves (scinno, siamese) train once per protocol: with ``n_clusters`` = that K, and without
it (K estimated by Leiden at resolution 1.0 on their pretrained latent); the second run reuses the
first's pre-training stage (a checkpoint), and both rows report the first run's seconds. Labels are
used only for scoring and for that K. ``--label-key`` takes K and the scores from another obs column than the
registry's default (e.g. MOp's ``subclass``, 22 types, beside ``cell_type``'s 14); ``--score-keys`` also scores each
row's clusters against further columns (``ari_<key>``, ``nmi_<key>``), the registry's unlabelled values left out
everywhere. ``scvi`` runs ``anchors/clustering_embed.py`` in the anchors environment
(``--anchors-python`` or ``$OMICS_CL_ANCHORS_PYTHON``; see anchors/README.md).

    python benchmarks/clustering.py --datasets zeisel_cortex,pbmc68k_reduced --methods pca,cae,scinno \
        --seeds 5 --json results.json [--resume] [--leiden-streams 5] [--label-key subclass] [--score-keys cell_type]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    MACHINE,
    add_seed_arguments,
    labelled_rna,
    machine,
    median_table,
    require_obs_columns,
    seed_range,
    write_json_atomic,
)

from omics_cl import datasets, metrics, models, tl
from omics_cl.core import graph

DEFAULT_DATASETS = "zeisel_cortex,cbmc_citeseq_rna500,pbmc68k_reduced,mop_snare_paired"
ANCHORS = Path(__file__).resolve().parent / "anchors"


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def scvi_embedding(name: str, seed: int, args) -> np.ndarray:
    python = args.anchors_python or os.environ.get("OMICS_CL_ANCHORS_PYTHON")
    if not python:
        raise SystemExit("scvi runs in the anchors environment: pass --anchors-python or set "
                         "OMICS_CL_ANCHORS_PYTHON (see benchmarks/anchors/README.md)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "z.npz"
        subprocess.run([python, str(ANCHORS / "clustering_embed.py"), str(datasets.path(name, "rna")), str(out),
                        "--seed", str(seed)], check=True)
        return np.load(out)["z"]


def runs(adata, name: str, method: str, seed: int, k: int, params: dict, args):
    """Yield ``(protocol, obs key, run info, train_seconds, row method, clustered)`` for one (dataset, method, seed),
    ``clustered`` the ``(obsm key, columns)`` Leiden read (None for an argmax read-off); a method whose embedding
    fuses its latent with another view (``fusion="wnn"``) also yields its latent's rows, as method
    ``<method>_latent`` (the same run, clustered on the latent alone)."""
    if method in models.METHODS and models.METHODS[method].self_clustering:
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = str(Path(tmp) / "run.ckpt")
            full = tl.cluster(adata, method=method, n_clusters=k, seed=seed, progress=False, checkpoint_path=ckpt,
                              leiden_restarts=args.leiden_restarts, overcluster=args.overcluster, **params)
            read = None if f"{method}_membership" in adata.obsm else (f"X_{method}", None)
            yield "n_clusters", f"{method}_cluster", full, full["train_seconds"], method, read
            yield from bisected(adata, method, seed, k, full, full["train_seconds"], args)
            if "resolution" not in args.protocols:
                return
            os.remove(f"{ckpt}.cluster")  # keep the (K-independent) pre-training stage, redo the clustering stage
            rec = tl.cluster(adata, method=method, seed=seed, progress=False, checkpoint_path=ckpt,
                             leiden_restarts=args.leiden_restarts, overcluster=args.overcluster, **params)
            yield "resolution", f"{method}_cluster", rec, full["train_seconds"], method, None
        return
    if method == "scvi":
        start = time.perf_counter()
        adata.obsm["X_scvi"] = scvi_embedding(name, seed, args)
        seconds = time.perf_counter() - start
        rec = tl.cluster_embedding(adata, "X_scvi", seed=seed, key_added="scvi_cluster",
                                   leiden_restarts=args.leiden_restarts, leiden_consensus=args.leiden_consensus)
        yield "resolution", "scvi_cluster", rec, seconds, method, None
        fixed = tl.cluster_embedding(adata, "X_scvi", n_clusters=k, seed=seed, key_added="scvi_cluster_k",
                                     leiden_restarts=args.leiden_restarts, leiden_consensus=args.leiden_consensus,
                                     overcluster=args.overcluster)
        yield "n_clusters", "scvi_cluster_k", fixed, seconds, method, ("X_scvi", None)
        yield from bisected(adata, method, seed, k, rec, seconds, args)
        return
    trained = models.METHODS[method].train is not None
    with tempfile.TemporaryDirectory() as tmp:
        resume = {"checkpoint_path": str(Path(tmp) / "run.ckpt")} if trained else {}
        common = dict(seed=seed, progress=False, leiden_restarts=args.leiden_restarts,
                      leiden_consensus=args.leiden_consensus, **resume, **params)
        # the user's call with K: cae's read-off weights depend on it (its views' agreement is measured at K)
        full = tl.cluster(adata, method=method, n_clusters=k, overcluster=args.overcluster, **common)
        seconds, graph_dims = full["train_seconds"], full["graph_dims"]
        yield "n_clusters", f"{method}_cluster", full, seconds, method, (f"X_{method}", graph_dims)
        yield from bisected(adata, method, seed, k, full, seconds, args)
        latent = adata.obsm.pop(f"X_{method}_latent", None)
        if latent is not None:  # a fused embedding: its latent alone, read off the same run
            adata.obsm["X_latent"] = latent
            for protocol, n in (("resolution", None), ("n_clusters", k)):
                info = tl.cluster_embedding(adata, "X_latent", n_clusters=n, seed=seed, key_added="latent_cluster",
                                            leiden_restarts=args.leiden_restarts,
                                            leiden_consensus=args.leiden_consensus, overcluster=args.overcluster)
                yield protocol, "latent_cluster", info, seconds, f"{method}_latent", ("X_latent", None)
        if "resolution" in args.protocols:  # the call without K, on the same trained model (its checkpoint)
            rec = tl.cluster(adata, method=method, **common)
            yield "resolution", f"{method}_cluster", rec, seconds, method, None


def bisected(adata, method: str, seed: int, k: int, record: dict, seconds: float, args):
    """With ``--bisect-rows``: the n_clusters row of the same embedding bisected straight to K (``overcluster=1``,
    the protocol before 2026-12-03), as method ``<method>_bisect``; nothing for argmax or ensemble read-offs."""
    if not args.bisect_rows or f"X_{method}" not in adata.obsm or f"{method}_connectivities" in adata.obsp \
            or f"{method}_membership" in adata.obsm:
        return
    info = tl.cluster_embedding(adata, f"X_{method}", n_clusters=k, seed=seed, key_added="bisect_cluster",
                                n_dims=record.get("graph_dims"), leiden_restarts=args.leiden_restarts,
                                leiden_consensus=args.leiden_consensus, overcluster=1)
    yield "n_clusters", "bisect_cluster", info, seconds, f"{method}_bisect", None


def stream_aris(adata, clustered, k: int, seed: int, streams, labels, manifest, args) -> list[float]:
    """ARIs of the n_clusters protocol on the same kNN graph (seeded by ``seed``) under the Leiden streams
    ``seed + 1000 c`` for c in ``streams`` (c = 0: the row's own clustering): how far another machine's last bits
    could move the row, which picks one of these partitions (benchmarks/clustering.md, "scinno's MOp figure: a read-off
    on a knife edge")."""
    key, n_dims = clustered
    adjacency = graph.neighbor_graph(np.asarray(adata.obsm[key])[:, :n_dims], 15, "cosine", seed)
    out = []
    for stream in streams:
        found, _, _ = graph.consensus_leiden(adjacency, seed + 1000 * stream, args.leiden_consensus, 1.0, k,
                                             overcluster=args.overcluster)
        out.append(metrics.clustering_scores(labels, found.astype(str), exclude=manifest.unlabelled_values)["ari"])
    return out


def stream_table(rows: list[dict]) -> str:
    """Per (dataset, method): the median over seeds of the n_clusters ARI under each Leiden stream, min - max."""
    groups: dict[tuple, list] = {}
    for r in rows:
        if "ari_streams" in r:
            groups.setdefault((r["dataset"], r["method"]), []).append(r["ari_streams"])
    lines = ["| dataset | method | seeds | median over seeds, per stream: min - max | widest stream range of a seed |",
             "|---|---|---|---|---|"]
    for (dataset, method), per_seed in groups.items():
        n = min(len(a) for a in per_seed)
        table = np.array([a[:n] for a in per_seed])
        medians = np.median(table, 0)
        lines.append(f"| {dataset} | {method} | {len(per_seed)} | {medians.min():.3f} - {medians.max():.3f} | "
                     f"{np.ptp(table, 1).max():.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=DEFAULT_DATASETS, help="comma-separated registry names")
    p.add_argument("--methods", default="pca,pca_unscaled,pca_pearson,ae,cae,scinno,siamese,scvi", help="comma-separated methods")
    add_seed_arguments(p)
    p.add_argument("--json", required=True, help="output JSON list of rows")
    p.add_argument("--resume", action="store_true", help="keep rows already in --json, run only missing ones")
    p.add_argument("--anchors-python", help="python of the anchors environment (scvi)")
    p.add_argument("--leiden-restarts", type=int, default=1,
                   help="Leiden runs per resolution, the most modular kept (tl.cluster's leiden_restarts)")
    p.add_argument("--leiden-consensus", type=int, default=None,
                   help="Leiden runs pooled into one partition for embedding methods (tl.cluster's "
                   "leiden_consensus; default: the library's, 10 up to 100,000 cells)")
    p.add_argument("--overcluster", type=float, default=graph.OVERCLUSTER,
                   help="n_clusters protocol: clusters made before merging, as a multiple of K (1: bisect to K)")
    p.add_argument("--bisect-rows", action="store_true",
                   help="also score each n_clusters embedding bisected straight to K, as '<method>_bisect' rows")
    p.add_argument("--protocols", default="n_clusters,resolution", type=lambda value: value.split(","),
                   help="comma-separated; self-clustering methods skip their second run without 'resolution'")
    p.add_argument("--leiden-streams", type=int, default=1,
                   help="n_clusters rows: also cluster the same graph under this many Leiden streams in all "
                   "(ari_streams, the first the row's own; one consensus Leiden each)")
    p.add_argument("--label-key", help="obs column giving K and the scores (default: the registry's label key)")
    p.add_argument("--score-keys", default="", type=lambda value: [k for k in value.split(",") if k],
                   help="comma-separated obs columns each row's clusters are also scored against "
                   "(ari_<key>, nmi_<key>)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="override a trained method's default (exploration only; recorded in each row)")
    args = p.parse_args(argv)
    params = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.param)}
    rows = json.loads(Path(args.json).read_text()) if args.resume and Path(args.json).exists() else []
    done = {(r["dataset"], r["method"], r["seed"], r.get("label_key")) for r in rows}

    print(f"machine: {machine()}", flush=True)
    for name in args.datasets.split(","):
        manifest, adata, labels, k = labelled_rna(name, args.label_key)
        require_obs_columns(name, adata, args.score_keys)
        label_key = labels.name  # the column labelled_rna read: --label-key or the registry's default
        for method in args.methods.split(","):
            for seed in seed_range(args):
                if (name, method, seed, label_key) in done or \
                        (label_key == manifest.default_label_key and (name, method, seed, None) in done):
                    continue
                trained = method in models.METHODS and models.METHODS[method].train is not None
                extra = params if trained else {}
                for protocol, key, info, seconds, row_method, clustered in runs(adata, name, method, seed, k, extra,
                                                                                args):
                    if protocol not in args.protocols:
                        continue
                    s = metrics.clustering_scores(labels, adata.obs[key], exclude=manifest.unlabelled_values)
                    for extra_key in args.score_keys:
                        other = metrics.clustering_scores(adata.obs[extra_key], adata.obs[key],
                                                          exclude=manifest.unlabelled_values)
                        s |= {f"ari_{extra_key}": other["ari"], f"nmi_{extra_key}": other["nmi"]}
                    row = {"dataset": name, "method": row_method, "protocol": protocol, "seed": seed,
                           "label_key": label_key, **s,
                           "n_clusters": info["n_clusters"], "train_seconds": seconds,
                           "leiden_restarts": args.leiden_restarts,
                           "leiden_consensus": info.get("leiden_consensus", 1),
                           "overcluster": info.get("overcluster")}
                    if extra:
                        row["params"] = extra
                    if args.leiden_streams > 1 and protocol == "n_clusters" and clustered is not None \
                            and args.leiden_restarts == 1:
                        row["ari_streams"] = [s["ari"], *stream_aris(adata, clustered, k, seed,
                                                                      range(1, args.leiden_streams), labels,
                                                                      manifest, args)]
                    rows.append({**row, "machine": MACHINE})
                    print(json.dumps(row), flush=True)
                write_json_atomic(rows, args.json)
    print(f"\nmachine: {machine()}")
    scored = [f"{m}_{key}" for key in args.score_keys for m in ("ari", "nmi")]
    for protocol in ("n_clusters", "resolution"):
        print(median_table([r for r in rows if r["protocol"] == protocol],
                           ["dataset", "label_key", "method", "protocol"],
                           ["nmi", "ari", *scored, "acc", "n_clusters", "train_seconds"], spread=True) + "\n")
    if any("ari_streams" in r for r in rows):
        print(stream_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
