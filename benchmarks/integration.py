"""Paired RNA + ATAC integration benchmark on mop_snare_paired (METHODS.md section 4).

Every method embeds all 10,309 cells (no labels); the embedding (for ``wnn``: its graph) is clustered with
Leiden under the ``resolution`` protocol (1.0) and the ``n_clusters`` protocol (resolution bisected to the
14 labelled types) and scored on ``cell_type`` with Mis excluded. Where a method gives one embedding per
modality, FOSCTTM and top-1 pair retrieval between them are reported (null otherwise).

Methods: ``pca_rna`` (omics_cl PCA of log-normalised RNA), ``pca_scaled`` (50 components of the standardised
log-normalised HVGs: sci2cl's PCA view alone before 2026-12-03), ``pca_regressed`` (the same with log RNA library
size regressed out of every gene: the default sci2cl's PCA view, ``pca_regress_depth=True``, alone), ``pca_pearson``
(50 components of the same HVGs' analytic Pearson residuals, as the clustering methods' ``pca_pearson``),
``lsi_atac`` (TF-IDF + LSI), ``concat`` (both, each scaled to unit total variance), ``wnn_like``
(``omics_cl.core.fusion`` on PCA and LSI: our WNN-like per-cell weighting of the two classical views), the anchors
``wnn`` (muon), ``multivi`` (scvi-tools) and ``scglue`` run by ``benchmarks/anchors/integration_embed.py`` in the
anchors environment (``--anchors-python`` or ``$OMICS_CL_ANCHORS_PYTHON``; see benchmarks/anchors/README.md),
``sci2cl`` (the default: RNA PCA and Z_r fused with fixed weights 0.8 / 0.2; its joint embedding is always rebuilt
from the run's views by the current default, so kept embeddings follow a change of read-off), ``sci2cl_seed`` (the
seed's recipe, ``variant="seed"``), the retrained ablations ``sci2cl_two_views`` (T = 2 masked views instead of 4),
``sci2cl_atac_zinb`` (the seed's ZINB likelihood on ATAC instead of the default Bernoulli; the default until
2026-12-03), ``sci2cl_no_mse``, and ``sci2cl_no_mom``, ``sci2cl_no_xattn`` (each also without the MSE term), and
rows read off the default run without retraining: ``sci2cl_no_fusion`` (its cross-attention output, the seed's joint
embedding), ``sci2cl_no_pca`` (Z_r alone), and its two fusion views fused again with WNN weights
(``sci2cl_wnn_weights``, the default until the seventh session, 2026-12-01), equal weights
(``sci2cl_equal_weights``) or weights shrunk a quarter, half or three quarters of the way to equal
(``sci2cl_shrinkage_0.25`` / ``_0.5`` / ``_0.75``; half: the default until 2026-12-04), and Z_r fused with the PCA
view with depth regressed out (``sci2cl_depth_regressed``: the default's fusion rebuilt from the ``pca_regressed``
row; training does not read the PCA view; it was the ablation row before 2026-12-03) or with the Pearson residuals'
view (``sci2cl_pearson``).

``--design`` picks the data: ``full`` (mop_snare_paired as it is), ``atac_half`` / ``rna_half`` (that
modality's counts binomially thinned to half, one fixed draw for all seeds: the joint embedding must degrade
gracefully and stay at or above its best single view).

    python benchmarks/integration.py --seeds 5 --json results/integration.json [--methods a,b] [--resume]
        [--design full] [--leiden-consensus 10] [--scorings 5] [--embeddings DIR] [--scglue-max-epochs N]
        [--multivi-max-epochs N] [--scglue-workdir DIR]

``--resume`` keeps the rows already in the JSON file and runs only the missing (method, seed). ``--embeddings``
keeps the embeddings, so a re-run under another Leiden protocol (``--leiden-consensus``: Leiden runs pooled into one
partition; ``--scorings N``: each score the mean over N clusterings under other Leiden seeds, as one clustering of
an MOp embedding can move by +-.03 with its seed) or ``label_consistency.py`` reads them instead of retraining. An
anchor's embedding is kept under a name that carries its epoch cap and (scGLUE) its model, so a capped, a full or
another model's run never reads another's.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MACHINE, add_seed_arguments, machine, median_table, seed_range, write_json_atomic
from integration_anchors import ANCHOR_METHODS, DATASET, anchor, anchor_run_tags, embedding_name
from integration_views import concat, lsi_atac, pca_pearson, pca_rna, pca_scaled, thinned, wnn_like

from omics_cl import datasets, metrics, tl
from omics_cl.core import fusion, graph
from omics_cl.models.sci2cl import SCI2CLConfig, fuse_views

# no_mom / no_xattn remove one more component from sci2cl_no_mse (the default before 2026-11-30, third session)
SCI2CL_VARIANTS = {"sci2cl": {}, "sci2cl_seed": {"variant": "seed"}, "sci2cl_no_mse": {"mse_weight": 0.0},
                   "sci2cl_two_views": {"n_views": 2}, "sci2cl_atac_zinb": {"atac_likelihood": "zinb"},
                   "sci2cl_no_mom": {"mse_weight": 0.0, "mom_weight": 0.0},
                   "sci2cl_no_xattn": {"mse_weight": 0.0, "cross_attention": False}}


def refused(shrinkage: float):
    """The default run's fusion views fused again with weights shrunk by ``shrinkage`` toward equal (0: WNN, 1: equal;
    0.5: the default until 2026-12-04)."""
    views = SCI2CLConfig().fusion_views
    return lambda out, seed: fusion.wnn_fuse([out[v] for v in views], seed=seed, shrinkage=shrinkage)[0]


def default_fusion(out: dict, seed: int, pca_view: str = "pca") -> np.ndarray:
    """The default's joint embedding rebuilt from a run's views (``out[pca_view]`` in the PCA view's place), so
    embeddings kept by an earlier run are read off as the current default reads them off."""
    return fuse_views({**out, "pca": out[pca_view]}, SCI2CLConfig(), seed)[0]


def view_fused(view: str):
    """Z_r fused, as the default fuses, with another method's RNA view (``out[view]``: that row's embedding)."""
    return lambda out, seed: default_fusion(out, seed, pca_view=view)


READ_OFF_VIEWS = {"sci2cl_depth_regressed": "pca_regressed", "sci2cl_pearson": "pca_pearson"}  # the view each fuses
READ_OFF_DEFAULT = {"sci2cl_no_fusion": lambda out, seed: out["xattn"],  # other outputs of the default run
                    "sci2cl_no_pca": lambda out, seed: out["rna"],
                    "sci2cl_wnn_weights": refused(0.0), "sci2cl_equal_weights": refused(1.0),
                    "sci2cl_shrinkage_0.25": refused(0.25), "sci2cl_shrinkage_0.75": refused(0.75),
                    "sci2cl_shrinkage_0.5": refused(0.5),
                    **{method: view_fused(view) for method, view in READ_OFF_VIEWS.items()}}
METHODS = ["pca_rna", "pca_scaled", "pca_regressed", "pca_pearson", "lsi_atac", "concat", "wnn_like", *ANCHOR_METHODS,
           *SCI2CL_VARIANTS, *READ_OFF_DEFAULT]
DESIGNS = {"full": None, "atac_half": "atac", "rna_half": "rna"}


def sci2cl(rna, atac, seed, params):
    import mudata as md

    mdata = md.MuData({"rna": rna.copy(), "atac": atac.copy()})
    tl.integrate(mdata, method="sci2cl", seed=seed, progress=False, **params)
    out = {key.removeprefix("X_sci2cl_") if key != "X_sci2cl" else "joint": value
           for key, value in mdata.obsm.items() if key.startswith("X_sci2cl")}
    return out


def embed(method, rna, atac, seed, args):
    if method == "pca_rna":
        return pca_rna(rna, seed)
    if method == "pca_scaled":
        return pca_scaled(rna, seed)
    if method == "pca_regressed":
        return pca_scaled(rna, seed, regress_depth=True)
    if method == "pca_pearson":
        return pca_pearson(rna, seed)
    if method == "lsi_atac":
        return lsi_atac(atac, seed)
    if method == "concat":
        return concat(rna, atac, seed)
    if method == "wnn_like":
        return wnn_like(rna, atac, seed)
    if method in ANCHOR_METHODS:
        return anchor(method, seed, args)
    return sci2cl(rna, atac, seed, SCI2CL_VARIANTS[method])


def stored(directory: str | None, name: str, compute, *args) -> tuple[dict, float]:
    """``compute(*args)``'s arrays and its seconds; with a ``directory``, kept there as ``<name>.npz`` and read back by
    later runs (outputs holding anything but arrays, e.g. WNN's graph, are not kept)."""
    path = Path(directory) / f"{name}.npz" if directory else None
    if path is not None and path.exists():
        with np.load(path) as saved:
            arrays = dict(saved)
        return arrays, float(arrays.pop("seconds"))
    start = time.perf_counter()
    out = compute(*args)
    seconds = time.perf_counter() - start
    if path is not None and all(isinstance(v, np.ndarray) for v in out.values()):
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.npz")
        np.savez(partial, seconds=seconds, **out)
        os.replace(partial, path)
    return out, seconds


def seed_embeddings(rna, atac, seed: int, args):
    """``embedding(method)``: :func:`stored` of that method's embedding for ``seed``, computed once per seed (the
    default ``sci2cl`` run serves every row read off it; ``sci2cl_depth_regressed`` also reads the ``pca_regressed``
    row's, ``sci2cl_pearson`` the ``pca_pearson`` row's)."""
    embedded = {}

    def embedding(method: str) -> tuple[dict, float]:
        if method not in embedded:
            embedded[method] = stored(args.embeddings, embedding_name(method, seed, args), embed, method, rna, atac,
                                      seed, args)
        return embedded[method]

    return embedding


def scoring_seeds(seed: int, scorings: int) -> list[int]:
    """The Leiden seeds of ``scorings`` clusterings of one embedding: ``seed`` first (a single scoring is the
    protocol of earlier rows), then ``seed + 1000 i``."""
    return [seed + 1000 * i for i in range(scorings)]


def score(method, out, labels, unlabelled, k, seed, seconds, leiden_consensus: int | None = None, scorings: int = 1,
          overcluster: float = graph.OVERCLUSTER, protocols=("resolution", "n_clusters")):
    """Rows of the ``protocols``; with ``scorings`` > 1 each score is the mean over that many clusterings of the same
    embedding (Leiden seeds :func:`scoring_seeds`; ``ari_scorings`` lists each one's ARI). ``overcluster``: the
    n_clusters protocol's factor (``graph.consensus_leiden``; 1 bisects straight to K)."""
    paired = "rna" in out and "atac" in out
    match = {"foscttm": metrics.foscttm(out["rna"], out["atac"]) if paired else None,
             "top1_match": metrics.top1_match(out["rna"], out["atac"]) if paired else None}
    rows = []
    for protocol, n_clusters in (("resolution", None), ("n_clusters", k)):
        if protocol not in protocols:
            continue
        each = []
        for leiden_seed in scoring_seeds(seed, scorings):
            adjacency = out["graph"] if "graph" in out else graph.neighbor_graph(out["joint"], 15, "cosine",
                                                                                 leiden_seed)
            clusters, _, runs = graph.consensus_leiden(adjacency, leiden_seed, leiden_consensus, 1.0, n_clusters,
                                                       overcluster=overcluster)
            each.append({**metrics.clustering_scores(labels, clusters.astype(str), exclude=unlabelled),
                         "n_clusters": int(clusters.max()) + 1})
        s = {key: float(np.mean([e[key] for e in each])) for key in each[0] if key != "n_clusters"}
        extra = {"scorings": scorings, "ari_scorings": [e["ari"] for e in each]} if scorings > 1 else {}
        rows.append({"method": method, "protocol": protocol, "seed": seed, **s, **match, "seconds": seconds,
                     "n_clusters": each[0]["n_clusters"], "leiden_consensus": runs,
                     "overcluster": overcluster if n_clusters else None, **extra})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    add_seed_arguments(p)
    p.add_argument("--design", choices=sorted(DESIGNS), default="full", help="data design (see above)")
    p.add_argument("--json", required=True, help="output JSON list of rows")
    p.add_argument("--resume", action="store_true", help="keep rows already in --json, run only missing ones")
    p.add_argument("--anchors-python", help="python of the anchors environment")
    p.add_argument("--leiden-consensus", type=int, default=None, help="Leiden runs pooled per clustering "
                   "(omics_cl.core.graph.consensus_leiden; default: the library's, 10 up to 100,000 cells; 1: one run)")
    p.add_argument("--embeddings", help="directory keeping each (design, method, seed) embedding; later runs "
                   "(other protocols, label_consistency.py) read them instead of retraining")
    p.add_argument("--scorings", type=int, default=1, help="clusterings of each embedding (Leiden seeds seed, "
                   "seed + 1000, ...); each score is their mean, a lower-noise estimate of the embedding's quality")
    p.add_argument("--overcluster", type=float, default=graph.OVERCLUSTER, help="n_clusters protocol: Leiden "
                   "clusters made before merging, as a multiple of K (omics_cl.core.graph.consensus_leiden; 1: bisect "
                   "straight to K, the protocol before 2026-12-03)")
    p.add_argument("--protocols", default="resolution,n_clusters", type=lambda value: value.split(","),
                   help="comma-separated protocols to score")
    p.add_argument("--scglue-max-epochs", type=int, help="cap on each scGLUE training stage")
    p.add_argument("--multivi-max-epochs", type=int, help="cap on MultiVI's epochs (default: its own schedule)")
    p.add_argument("--scglue-workdir", help="keep scGLUE's finished training stages here (DIR/seed<S>[_max<N>]); "
                   "a re-run resumes from them, as its full schedule takes hours per stage on 2 cores")
    args = p.parse_args(argv)
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        p.error(f"unknown methods {unknown}; choose from {METHODS}")
    if args.design != "full" and set(methods) & set(ANCHOR_METHODS):
        p.error("the anchors read the registry files: run them with --design full")

    manifest = datasets.get_manifest(DATASET)
    rna, atac = datasets.load(DATASET, modality="rna"), datasets.load(DATASET, modality="atac")
    if DESIGNS[args.design] == "rna":
        rna = thinned(rna)
    elif DESIGNS[args.design] == "atac":
        atac = thinned(atac)
    labels = rna.obs["cell_type"]
    k = int(labels[metrics.labelled_mask(labels, manifest.unlabelled_values)].nunique())
    rows = json.loads(Path(args.json).read_text()) if args.resume and Path(args.json).exists() else []
    done = {(r["method"], r["seed"]) for r in rows}
    print(f"machine: {machine()}\n{DATASET} ({args.design}): {rna.n_obs} cells, {rna.n_vars} genes, "
          f"{atac.n_vars} peaks, {k} labelled types, {rna.X.sum() / rna.n_obs:.0f} RNA / "
          f"{atac.X.sum() / atac.n_obs:.0f} ATAC counts per cell", flush=True)
    for seed in seed_range(args):
        embedding = seed_embeddings(rna, atac, seed, args)
        for method in methods:
            if (method, seed) in done:
                continue
            if method == "sci2cl" or method in READ_OFF_DEFAULT:
                out, seconds = embedding("sci2cl")
                if method in READ_OFF_VIEWS:
                    view = READ_OFF_VIEWS[method]
                    out = {**out, view: embedding(view)[0]["joint"]}
                read_off = READ_OFF_DEFAULT.get(method, default_fusion)
                out = {**out, "joint": read_off(out, seed)}
            else:
                out, seconds = embedding(method)
            for row in score(method, out, labels, manifest.unlabelled_values, k, seed, seconds,
                             args.leiden_consensus, args.scorings, args.overcluster, args.protocols):
                rows.append({**row, "design": args.design, "machine": MACHINE,
                             **anchor_run_tags(method, args)})
                print(json.dumps(row), flush=True)
            write_json_atomic(rows, args.json)
    order = {m: i for i, m in enumerate(METHODS)}
    rows.sort(key=lambda r: (r["protocol"] != "n_clusters", order[r["method"]], r["seed"]))
    print(f"\nmachine: {machine()}")
    print(median_table(rows, ["method", "protocol"], ["nmi", "ari", "acc", "foscttm", "top1_match", "seconds"],
                       spread=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
