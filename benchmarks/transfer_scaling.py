"""Scaling of RNA -> ATAC label transfer (``tl.transfer_labels``, scncl's defaults): synthetic atlases of 10^4 to
10^6 query cells, each phase of the call timed.

Synthetic data (``synthetic_pair``): 12 cell types over 2,000 genes, each type changing the mean of a random 10% of
genes. The RNA reference is negative-binomial counts as in ``scaling.py`` (log-normal library sizes, median 1,000
counts). The ATAC query has ``--peaks-per-gene`` peaks per gene plus as many background peaks as genes; a gene's
peaks open with a base rate (log-normal around 3%) times the type's fold change of that gene, times the cell's depth
(log-normal), read as 0/1 counts; gene activity is the sum of a gene's peaks (the map ``pp.gene_activity`` builds
from an annotation, given here directly). The last type is left out of the reference, so the query holds one type
the reference lacks: ``accuracy`` is on the known types' cells, ``auroc_unseen`` is the novelty score's AUROC for
the unseen type's cells (sanity checks of the run, against the generating types; labels are not read otherwise).

The call runs once under cProfile; each phase is the cumulative time of the function that does it:
``features`` (shared genes, HVGs, binarised features), ``lsi`` and ``lsi_knn`` (the query's LSI, with the TF-IDF
that the peak classifier also reads since 2026-12-06, and its kNN),
``train`` (``core.train.fit``: every member, compilation included), ``readout`` (scncl's ``embed``: encoding, the
kNN vote, the peak-space classifier, signatures, the query's Leiden clusters for the novelty), and inside it
``knn_vote``, ``peak_classifier``, ``query_graph`` and ``query_leiden``; ``total`` is the whole call (cProfile's
overhead included: it adds to every Python call, so read the phases as shares, not as the call's seconds without
the profiler). Peak RSS is sampled every 50 ms; peak device memory from jax (n/a on the CPU). Each size runs in its
own process; rows go to ``--json`` (one per query size, replaced on re-run).

    python benchmarks/transfer_scaling.py --query-cells 100000 --epochs 2
    python benchmarks/transfer_scaling.py --table
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_json_atomic  # noqa: E402
from scaling import N_TYPES, PeakRSS, device_peak_gib, type_profiles  # noqa: E402

from omics_cl.data.sparse_rows import stack_rows  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "transfer_scaling.json"
CHUNK = 5_000  # query cells generated at once
# phase -> (file the function is defined in, function name); cumulative seconds from the profile
PHASES = {
    "features": ("omics_cl/data/transfer.py", "transfer_features"),
    "lsi": ("omics_cl/data/lsi.py", "lsi_with_tfidf"),
    "lsi_knn": ("omics_cl/data/lsi.py", "neighbors"),
    "train": ("omics_cl/core/train.py", "fit"),
    "readout": ("omics_cl/models/scncl.py", "embed"),
    "knn_vote": ("omics_cl/core/neighbors.py", "knn_vote"),
    "peak_classifier": ("omics_cl/models/scncl_readout.py", "peak_classifier"),
    "query_graph": ("omics_cl/core/graph.py", "neighbor_graph"),
    "query_leiden": ("omics_cl/core/graph.py", "leiden"),
}


def synthetic_pair(n_reference: int, n_query: int, n_genes: int = 2000, peaks_per_gene: int = 4, seed: int = 0):
    """``(rna, atac, gene_activity)`` AnnDatas (module docstring); ``obs["cell_type"]`` holds the generating type
    (``"t0"``...), the reference lacks the last one."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    fold, profiles, theta = type_profiles(rng, n_genes)
    genes = [f"g{i}" for i in range(n_genes)]

    ref_types = rng.integers(0, N_TYPES - 1, n_reference)  # the last type is unseen
    library = rng.lognormal(np.log(1000), 0.4, n_reference)[:, None]
    mu = library * profiles[ref_types]
    counts = rng.poisson(rng.gamma(theta, mu / theta)).astype(np.float32)
    counts[:, 0] += counts.sum(1) == 0
    rna = ad.AnnData(sp.csr_matrix(counts), obs=pd.DataFrame({"cell_type": [f"t{t}" for t in ref_types]},
                                                           index=[f"r{i}" for i in range(n_reference)]),
                     var=pd.DataFrame(index=genes))

    n_linked = n_genes * peaks_per_gene
    peak_gene = np.repeat(np.arange(n_genes), peaks_per_gene)
    rate = np.clip(rng.lognormal(np.log(0.03), 0.5, n_linked + n_genes), 0, 0.3)
    openness = np.tile(rate, (N_TYPES, 1))
    openness[:, :n_linked] *= fold[:, peak_gene]
    openness = np.clip(openness, 0.0, 0.9).astype(np.float32)
    query_types = rng.integers(0, N_TYPES, n_query)
    n_peaks = openness.shape[1]
    links = sp.csr_matrix((np.ones(n_linked, np.float32), (np.arange(n_linked), peak_gene)), shape=(n_peaks, n_genes))
    blocks, activity_blocks = [], []
    for start in tqdm(range(0, n_query, CHUNK), desc=f"{n_query} ATAC cells", leave=False):
        chunk_rng = np.random.default_rng([seed, start])
        t = query_types[start:start + CHUNK]
        depth = chunk_rng.lognormal(0.0, 0.3, len(t)).astype(np.float32)[:, None]
        block = sp.csr_matrix((chunk_rng.random((len(t), openness.shape[1]), dtype=np.float32)
                               < np.minimum(depth * openness[t], 0.95)).astype(np.float32))
        empty = np.flatnonzero(np.diff(block.indptr) == 0)
        if len(empty):
            block = block.tolil()
            block[empty, n_linked] = 1.0  # no empty cells
            block = block.tocsr()
        blocks.append(block)
        activity_blocks.append(sp.csr_matrix(block @ links))
    names = [f"q{i}" for i in range(n_query)]
    obs = pd.DataFrame({"cell_type": [f"t{t}" for t in query_types]}, index=names)
    atac = ad.AnnData(stack_rows(blocks, n_peaks), obs=obs, var=pd.DataFrame(index=[f"p{i}" for i in range(n_peaks)]))
    activity = ad.AnnData(stack_rows(activity_blocks, n_genes), obs=obs.copy(), var=pd.DataFrame(index=genes))
    return rna, atac, activity


def phase_seconds(profile: cProfile.Profile) -> dict[str, float]:
    """Cumulative seconds of each phase's function (:data:`PHASES`), 0 where it did not run."""
    stats = pstats.Stats(profile).stats
    out = {}
    for phase, (path, name) in PHASES.items():
        out[f"{phase}_s"] = float(sum(v[3] for (file, _, func), v in stats.items()
                                      if func == name and file.replace(os.sep, "/").endswith(path)))
    return out


def save(row: dict, path: Path) -> None:
    rows = json.loads(path.read_text()) if path.exists() else []
    rows = [r for r in rows if r["n_query"] != row["n_query"]] + [row]
    write_json_atomic(sorted(rows, key=lambda r: r["n_query"]), str(path))


def run(n_query: int, n_reference: int, epochs: int | None, seed: int, out: Path) -> dict:
    from sklearn.metrics import roc_auc_score

    from omics_cl import tl

    row = {"n_query": n_query, "n_reference": n_reference, "epochs": epochs, "seed": seed, "machine": machine()}
    start = time.perf_counter()
    with PeakRSS() as peak:
        rna, atac, activity = synthetic_pair(n_reference, n_query, seed=seed)
    row.update(generate_s=time.perf_counter() - start, generate_peak_rss_gib=peak.peak / 2**30,
               n_peaks=atac.n_vars, density=atac.X.nnz / (atac.n_obs * atac.n_vars))
    params = {} if epochs is None else {"epochs": epochs}
    profile = cProfile.Profile()
    start = time.perf_counter()
    with PeakRSS() as peak:
        profile.enable()
        record = tl.transfer_labels(rna, atac, "cell_type", gene_activity=activity, seed=seed, **params)
        profile.disable()
    row.update(total_s=time.perf_counter() - start, peak_rss_gib=peak.peak / 2**30,
               run_peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
               device_peak_gib=device_peak_gib(), load_1m=os.getloadavg()[0], **phase_seconds(profile))
    truth = atac.obs["cell_type"].astype(str).to_numpy()
    unseen = truth == f"t{N_TYPES - 1}"
    row["accuracy"] = float(np.mean(atac.obs["omics_cl_label"].astype(str).to_numpy()[~unseen] == truth[~unseen]))
    row["auroc_unseen"] = float(roc_auc_score(unseen, atac.obs["omics_cl_novelty"]))
    row["epochs_run"] = record["params"].get("epochs_run")
    save(row, out)
    return row


def table(rows: list[dict]) -> str:
    def cell(r, key):
        v = r.get(key)
        return "n/a" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)

    keys = (["n_query", "n_reference", "n_peaks", "epochs", "generate_s", "total_s"] + [f"{p}_s" for p in PHASES]
            + ["peak_rss_gib", "device_peak_gib", "accuracy", "auroc_unseen", "load_1m"])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r, k) for k in keys) + " |" for r in rows]
    return "\n".join(lines + [""] + [f"machine: {m}" for m in sorted({r["machine"] for r in rows})])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--query-cells", type=int, default=10_000)
    p.add_argument("--reference-cells", type=int, default=20_000)
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: scncl's own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=RESULTS)
    p.add_argument("--table", action="store_true", help="only print the table of --json")
    args = p.parse_args(argv)
    if not args.table:
        run(args.query_cells, args.reference_cells, args.epochs, args.seed, args.json)
    print(table(json.loads(args.json.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
