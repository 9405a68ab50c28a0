"""Read-offs of a clustering method (siamese, scinno, cae) from one training run per (dataset, seed): the argmax of the
self-clustering methods' memberships (``<m>_argmax``; cae: its default clusters, row ``cae``), and Leiden (consensus,
n_clusters protocol, as ``tl.cluster_embedding``) on its embedding alone (``<m>_leiden``) and on its fusion with the
``pca`` baseline's view (``omics_cl.core.fusion``) with WNN weights shrunk by 0, 0.5 and 1 (``<m>_fused_wnn`` /
``_fused_half`` / ``_fused_equal``), and on its fusion with the ``pca_pearson`` view (components of the HVGs' Pearson
residuals; ``<m>_pearson_wnn`` / ``_pearson_half`` / ``_pearson_equal``), and on its fusion with both views
(``<m>_both_wnn`` / ``_both_half`` / ``_both_equal``; ``pca_residuals="both"``), and under cae's fixed weights
(``<m>_both_weighted``), and, with ``--weight-grid "LOG,PEARSON,LATENT;..."``, under each of those fixed weights
(``<m>_both_w<LOG>_<PEARSON>_<LATENT>``), and ``<m>_both_agree`` (``_both_half`` where the two PCA views' own clusters
agree, else ``_both_weighted``; :func:`readouts`); ``--rows`` computes only the rows it names (and refuses a name no run
writes). The default read-off of siamese is ``_pearson_equal`` (``_fused_equal`` before 2026-12-01's tenth session),
cae's ``_both_agree`` (``_both_weighted`` from 2026-12-02's sixteenth session to 2026-12-05, ``_fused_wnn``
before). scinno's rows read its
attention-refined latent (the argmax run's embedding), so its ``_both_equal`` (and ``--members``) is its default
read-off before 2026-12-03 (``readout_latent="refined"``); the default since reads the encoder's latent, compared with
the refined one in ``scinno_readout_latent.py``.

Each siamese / scinno run reads off its argmax (``readout="argmax"``), each cae run its default clusters (with
stored runs: the default when they were trained); the other
rows reuse its embedding (cae: its latent, ``obsm["X_cae_latent"]``), so every row of a seed
comes from the same trained model. ``--embeddings DIR`` keeps ``<dataset>_<m>_<seed>.npz`` (``pca``, ``<m>``,
``clusters``, seconds; ``integration.stored``) and later runs read them instead of retraining. ``--members N``
adds the row ``<m>_members<N>``: the default read-off of an ensemble of N runs, as ``tl.cluster(...,
n_members=N)`` computes it (``omics_cl.models.members``; its other members are trained, or read from ``DIR``, under
their derived seeds). Labels are used only for scoring and for K.

    python benchmarks/clustering_readout.py --method siamese --datasets zeisel_cortex,pbmc68k_reduced --seeds 5 \
        --json out.json [--embeddings DIR] [--resume] [--members 3] [--weight-grid "0.6,0.2,0.2;0.4,0.4,0.2"] \
        [--rows cae,cae_both_weighted]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clustering import DEFAULT_DATASETS
from common import (
    add_seed_arguments,
    clustering_row,
    labelled_rna,
    machine,
    n_clusters_leiden,
    print_clustering_summary,
    seed_range,
    write_json_atomic,
)
from integration import stored

from omics_cl import models, tl
from omics_cl.core import graph
from omics_cl.data.preprocess import prepare_counts
from omics_cl.models.cae import DEFAULT_FUSION_WEIGHTS, VIEWS_AGREE
from omics_cl.models.common import fused_with_pca, pca_view, views_agreement
from omics_cl.models.members import member_seeds
from omics_cl.models.pca import PCAConfig

SHRINKAGES = {"wnn": 0.0, "half": 0.5, "equal": 1.0}
WEIGHTED = "weighted"  # both views, cae's fixed weights (DEFAULT_FUSION_WEIGHTS)
AGREE = "agree"  # both views: ``half`` where the two PCA views' own clusters agree, else cae's fixed weights
DEFAULT_READOUT = {"cae": ("both", AGREE), "scinno": ("both", "equal"), "siamese": ("pearson", "equal")}


def self_clustering(method: str) -> bool:
    return models.get(method, "cluster").self_clustering


def trained(adata, method: str, seed: int, k: int) -> dict:
    """The PCA view, the method's embedding (its latent when it fuses one, as cae) and its own clusters (the argmax
    of a self-clustering method), from one run."""
    tl.cluster(adata, method="pca", seed=seed, progress=False)
    argmax = {"readout": "argmax", "n_members": 1} if self_clustering(method) else {}
    tl.cluster(adata, method=method, n_clusters=k, seed=seed, progress=False, **argmax)
    latent = f"X_{method}_latent"
    return {"pca": adata.obsm["X_pca"], method: adata.obsm[latent if latent in adata.obsm else f"X_{method}"],
            "clusters": np.asarray(adata.obs[f"{method}_cluster"]).astype(int)}


def first_row(method: str) -> str:
    """Row name of a run's own clusters: ``<m>_argmax`` for a self-clustering method, else the method's name."""
    return f"{method}_argmax" if self_clustering(method) else method


def pearson_view(adata) -> np.ndarray:
    """The ``pca_pearson`` method's embedding (the same for every seed), without its clustering."""
    prepared = prepare_counts(adata)
    return pca_view(prepared.counts, prepared.normalizer, PCAConfig().n_comps, "pearson", seed=0)  # no seed used


def fused(out: dict, method: str, view_name: str, weighting: str | dict, seed: int,
          pearson_pcs: np.ndarray) -> np.ndarray:
    """The run's embedding fused with the PCA views named ``view_name`` (``fused``: the pca baseline's, ``pearson``:
    ``pearson_pcs``, the Pearson residuals', ``both``) under the WNN weights shrunk by ``SHRINKAGES[weighting]``, or
    (``weighting="weighted"``) under cae's fixed weights, or under the fixed weights ``weighting`` (a dict)."""
    pcs = {"fused": {"pca": out["pca"]}, "pearson": {"pca": pearson_pcs},
           "both": {"pca": out["pca"], "pca_pearson": pearson_pcs}}[view_name]
    if isinstance(weighting, dict):
        shrinkage, weights = 1.0, weighting
    elif weighting == WEIGHTED:
        shrinkage, weights = 1.0, DEFAULT_FUSION_WEIGHTS
    else:
        shrinkage, weights = SHRINKAGES[weighting], None
    return fused_with_pca(pcs, out[method], 20, seed, shrinkage, weights)[0]["embedding"]


def grid_weights(triple: str) -> dict[str, float]:
    """``"LOG,PEARSON,LATENT"`` -> fixed fusion weights of the log view, the Pearson view and the latent."""
    log, pearson, latent = (float(w) for w in triple.split(","))
    return {"pca": log, "pca_pearson": pearson, "latent": latent}


def embedding_makers(out: dict | None, method: str, seed: int, pearson_pcs: np.ndarray | None,
                     grid: tuple[str, ...] = ()) -> dict:
    """Row name -> a function computing that Leiden read-off row's embedding of one run (nothing is computed until
    called, so ``out=None`` gives the names alone); ``grid`` adds the row ``<m>_both_w<LOG>_<PEARSON>_<LATENT>`` for
    each weight triple."""
    makers = {f"{method}_leiden": lambda: out[method]}
    for view_name in ("fused", "pearson", "both"):
        for name in SHRINKAGES:
            makers[f"{method}_{view_name}_{name}"] = (
                lambda view_name=view_name, name=name: fused(out, method, view_name, name, seed, pearson_pcs))
    makers[f"{method}_both_{WEIGHTED}"] = lambda: fused(out, method, "both", WEIGHTED, seed, pearson_pcs)
    for triple in grid:
        makers[f"{method}_both_w{triple.replace(',', '_')}"] = (
            lambda triple=triple: fused(out, method, "both", grid_weights(triple), seed, pearson_pcs))
    return makers


def fused_embeddings(out: dict, method: str, seed: int, pearson_pcs: np.ndarray, grid: tuple[str, ...] = (),
                     only: set[str] | None = None) -> dict[str, np.ndarray]:
    """The embedding of each Leiden read-off row of one run (:func:`embedding_makers`; those named in ``only`` when
    given)."""
    makers = embedding_makers(out, method, seed, pearson_pcs, grid)
    return {name: make() for name, make in makers.items() if only is None or name in only}


def row_names(method: str, grid: tuple[str, ...] = (), members: int = 1) -> list[str]:
    """Every row a run of ``method`` can write (``grid``: the fixed-weight rows; ``members`` > 1: the ensemble's)."""
    names = [first_row(method), *embedding_makers(None, method, 0, None, grid), f"{method}_both_agree"]
    return names + ([f"{method}_members{members}"] if members > 1 else [])


def readouts(out: dict, method: str, k: int, seed: int, pearson_pcs: np.ndarray, grid: tuple[str, ...] = (),
             only: set[str] | None = None):
    """``(row method, cluster labels)`` for each read-off of one run (``only``: those rows). ``<m>_both_agree``:
    both views under the WNN weights shrunk halfway to equal where the two views' own clusters agree (ARI >=
    ``VIEWS_AGREE``), else under cae's fixed weights."""
    if only is None or first_row(method) in only:
        yield first_row(method), out["clusters"]
    for name, z in fused_embeddings(out, method, seed, pearson_pcs, grid, only).items():
        yield name, n_clusters_leiden(z, seed, k)
    if only is None or f"{method}_both_agree" in only:
        yield f"{method}_both_agree", n_clusters_leiden(agreed(out, method, k, seed, pearson_pcs), seed, k)


def agreed(out: dict, method: str, k: int, seed: int, pearson_pcs: np.ndarray) -> np.ndarray:
    """The run's embedding fused with both views under the WNN weights shrunk halfway to equal where the two views'
    own clusters agree (ARI >= ``VIEWS_AGREE``), else under cae's fixed weights: cae's default read-off."""
    agreement = views_agreement({"pca": out["pca"], "pca_pearson": pearson_pcs}, models.Context(seed, k))
    return fused(out, method, "both", "half" if agreement >= VIEWS_AGREE else WEIGHTED, seed, pearson_pcs)


def ensemble_readout(adata, name: str, method: str, k: int, seed: int, n_members: int, pearson_pcs: np.ndarray,
                     directory: str | None) -> np.ndarray:
    """Clusters of an ensemble of ``n_members`` runs (``tl.cluster(..., n_members=N)``, ``models.members``): the
    cosine kNN graphs of the members' default read-off embeddings, averaged, then Leiden; member 0 is the run of
    ``seed``, and each member is kept in / read from ``directory`` (``<name>_<method>_<member seed>.npz``) as a
    single run is."""
    graphs = []
    for member_seed in member_seeds(seed, n_members):
        out, _ = stored(directory, f"{name}_{method}_{member_seed}", trained, adata, method,
                        member_seed, k)
        view_name, weighting = DEFAULT_READOUT[method]
        z = (agreed(out, method, k, member_seed, pearson_pcs) if weighting == AGREE
             else fused(out, method, view_name, weighting, member_seed, pearson_pcs))
        graphs.append(graph.neighbor_graph(z, 15, "cosine", member_seed))
    labels, _, _ = graph.consensus_leiden(sum(graphs) / n_members, seed, None, 1.0, k)
    return labels


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--method", default="siamese", choices=("siamese", "scinno", "cae"), help="clustering method")
    p.add_argument("--datasets", default=DEFAULT_DATASETS, help="comma-separated registry names")
    add_seed_arguments(p)
    p.add_argument("--json", required=True, help="output JSON list of rows")
    p.add_argument("--embeddings", help="keep / read each run's arrays here")
    p.add_argument("--resume", action="store_true", help="keep rows already in --json, run only missing ones")
    p.add_argument("--members", type=int, default=1,
                   help="also the row <m>_members<N>: an ensemble of N runs read off as tl.cluster(n_members=N)")
    p.add_argument("--weight-grid", default="",
                   help="semicolon-separated LOG,PEARSON,LATENT fixed fusion weights, each the row <m>_both_w<...>")
    p.add_argument("--rows", help="comma-separated row names to compute (default: every row)")
    args = p.parse_args(argv)
    grid = tuple(t for t in args.weight_grid.split(";") if t)
    only = set(args.rows.split(",")) if args.rows else None
    unknown = sorted((only or set()) - set(row_names(args.method, grid, args.members)))
    if unknown:
        p.error(f"--rows names rows a {args.method} run does not write: {unknown}")
    rows = json.loads(Path(args.json).read_text()) if args.resume and Path(args.json).exists() else []
    done = {(r["dataset"], r["trained"], r["seed"]) for r in rows}
    print(f"machine: {machine()}", flush=True)
    for name in args.datasets.split(","):
        manifest, adata, truth, k = labelled_rna(name)
        pearson_pcs = None
        for seed in seed_range(args):
            if (name, args.method, seed) in done:
                continue
            pearson_pcs = pearson_view(adata) if pearson_pcs is None else pearson_pcs
            out, seconds = stored(args.embeddings, f"{name}_{args.method}_{seed}", trained, adata, args.method,
                                  seed, k)
            rows_of_run = list(readouts(out, args.method, k, seed, pearson_pcs, grid, only))
            if args.members > 1:
                rows_of_run.append((f"{args.method}_members{args.members}",
                                    ensemble_readout(adata, name, args.method, k, seed, args.members, pearson_pcs,
                                                     args.embeddings)))
            for method, labels in rows_of_run:
                rows.append(clustering_row(manifest, truth, labels, seconds, dataset=name, trained=args.method,
                                           method=method, protocol="n_clusters", seed=seed))
            write_json_atomic(rows, args.json)
    print_clustering_summary(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
