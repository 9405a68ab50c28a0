"""End-to-end seconds of the user-facing calls on the current jax backend (CPU or GPU), with the GPU's mean
utilisation over each call where NVML sees one (``gpu_load.py``).

Jobs: ``cluster:<registry set>:<method>`` (``tl.cluster`` at the set's number of labelled types), ``transfer``
(``tl.transfer_labels``, mop_snare_paired RNA half A -> ATAC half B as ``label_transfer.py``'s closed scenario; the
gene activity is built before the clock starts) and ``integrate`` (``tl.integrate`` on mop_snare_paired at its 14
types). Each call is timed once per seed in one process, compilation included, as a user meets it; a sanity
score comes with it (ARI of the clusters, accuracy of the transferred labels; labels are read only for scoring).

    python benchmarks/end_to_end.py --jobs cluster:zeisel_cortex:cae,transfer,integrate --seeds 1 --json out.json
    python benchmarks/end_to_end.py --jobs cluster:zeisel_cortex:cae --seeds 1 --json out.json --profile prof.txt
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    MACHINE,
    add_seed_arguments,
    labelled_rna,
    median_table,
    seed_range,
    transfer_halves,
    write_json_atomic,
)
from gpu_load import UtilisationSampler  # noqa: E402

from omics_cl import datasets, metrics, pp, settings, tl  # noqa: E402
from omics_cl.environment import backend  # noqa: E402

PAIRED = "mop_snare_paired"


def backend_name() -> str:
    """:func:`common.backend`, with the core count on the CPU."""
    name = backend()
    return f"{name} ({os.cpu_count()} cores)" if name == "cpu" else name


def cluster_job(name: str, method: str):
    """A ``(call, score)`` pair: ``call(seed)`` clusters the set's RNA, ``score()`` its ARI."""
    manifest, adata, labels, k = labelled_rna(name)

    def call(seed: int) -> float:
        return tl.cluster(adata, method=method, n_clusters=k, seed=seed, progress=False)["train_seconds"]

    def score() -> float:
        return metrics.clustering_scores(labels, adata.obs[f"{method}_cluster"].astype(str),
                                         exclude=manifest.unlabelled_values)["ari"]

    return call, score


def transfer_job():
    rna, atac = datasets.load(PAIRED, modality="rna"), datasets.load(PAIRED, modality="atac")
    activity = pp.gene_activity(atac, datasets.annotation_path("mm10_ensembl_genes.tsv.gz"))
    state = {}

    def call(seed: int) -> None:
        half_a, half_b = transfer_halves(rna.n_obs, seed)
        ref = rna[half_a].copy()
        ref = ref[ref.obs["cell_type"] != "Mis"].copy()
        state["query"] = atac[half_b].copy()
        tl.transfer_labels(ref, state["query"], "cell_type", gene_activity=activity[half_b].copy(), seed=seed,
                           progress=False)

    def score() -> float:
        obs = state["query"].obs
        scored = obs["cell_type"] != "Mis"
        return float((obs["omics_cl_label"].astype(str) == obs["cell_type"].astype(str))[scored].mean())

    return call, score


def integrate_job():
    manifest, rna, labels, k = labelled_rna(PAIRED)
    atac = datasets.load(PAIRED, modality="atac")
    state = {}

    def call(seed: int) -> float:
        state["rna"] = rna.copy()
        record = tl.integrate(rna=state["rna"], atac=atac.copy(), n_clusters=k, seed=seed, progress=False)
        return record["train_seconds"]

    def score() -> float:
        clusters = state["rna"].obs["sci2cl_cluster"].astype(str)
        return metrics.clustering_scores(labels, clusters, exclude=manifest.unlabelled_values)["ari"]

    return call, score


def make_job(spec: str):
    kind, *rest = spec.split(":")
    if kind == "cluster" and len(rest) == 2:
        return cluster_job(*rest)
    if kind in ("transfer", "integrate") and not rest:
        return transfer_job() if kind == "transfer" else integrate_job()
    raise SystemExit(f"unknown job {spec!r}: cluster:<set>:<method>, transfer or integrate")


def write_profile(profile: cProfile.Profile, title: str, path: str) -> None:
    """Append the 60 functions of ``profile`` with the largest cumulative time to the text file ``path``."""
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(60)
    with open(path, "a") as fh:
        fh.write(f"== {title}\n{text.getvalue()}\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", default="cluster:zeisel_cortex:cae,transfer,integrate", help="comma-separated jobs")
    add_seed_arguments(p)
    p.add_argument("--json", required=True, help="output JSON list of rows (appended to if it exists)")
    p.add_argument("--compilation-cache", help="jax's persistent compilation cache in this directory "
                   "(omics_cl.settings.compilation_cache; a row's 'cache' says whether it held programs at the start)")
    p.add_argument("--profile", help="write each call's cProfile (60 slowest by cumulative time) to this text file")
    args = p.parse_args(argv)
    cache = None
    if args.compilation_cache:
        held = Path(args.compilation_cache).is_dir() and any(Path(args.compilation_cache).iterdir())
        settings.compilation_cache(args.compilation_cache)
        cache = "warm" if held else "cold"
    rows = json.loads(Path(args.json).read_text()) if Path(args.json).exists() else []
    with UtilisationSampler() as sampler:
        for spec in args.jobs.split(","):
            call, score = make_job(spec)
            for seed in seed_range(args):
                profile = cProfile.Profile() if args.profile else None
                start, started_at = time.perf_counter(), time.time()
                train_seconds = profile.runcall(call, seed) if profile else call(seed)
                seconds = time.perf_counter() - start
                if profile:
                    write_profile(profile, f"{spec}, seed {seed}: {seconds:.1f} s", args.profile)
                row = {"job": spec, "backend": backend_name(), "seed": seed, "seconds": seconds,
                       "train_seconds": train_seconds, "score": score(), "cache": cache,
                       **({"profiled": True} if profile else {}),
                       "gpu_util": sampler.mean(started_at, time.time())}
                print(json.dumps(row), flush=True)
                rows.append({**row, "machine": MACHINE})
                write_json_atomic(rows, args.json)
    print(f"\nmachine: {MACHINE}\nscore: ARI (cluster, integrate) or accuracy (transfer)")
    print(median_table(rows, ["job", "backend", "cache"], ["seconds", "train_seconds", "score", "gpu_util"],
                       spread=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
