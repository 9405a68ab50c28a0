"""RNA -> ATAC label transfer benchmark on mop_snare_paired (METHODS.md section 5).

Per seed the cells are split 50/50: RNA of half A with ``cell_type`` (Mis removed) is the reference,
ATAC of half B the query (its labels are used only for scoring). Scenarios: ``closed`` (all types),
``open_oligo_opc`` (Oligo and OPC removed from the reference), ``open_astro`` (Astro removed).
Methods: ``scncl``, its ablations ``scncl_no_ncl`` and ``scncl_sym_nndr`` (scJoint-like), and the
baselines ``logreg`` (logistic regression on binarised RNA applied to binarised gene activity) and
``knn_pca`` (kNN vote in a joint PCA of RNA and gene activity). The scGLUE anchor and the
``annotation`` scenario are not implemented yet.

    python benchmarks/label_transfer.py --seeds 3 --json results/label_transfer.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median_table, write_json_atomic  # noqa: E402

from omics_cl import datasets, metrics, pp, tl  # noqa: E402
from omics_cl.data.transfer import transfer_features  # noqa: E402

SCENARIOS = {"closed": [], "open_oligo_opc": ["Oligo", "OPC"], "open_astro": ["Astro"]}
SCNCL_VARIANTS = {"scncl": {}, "scncl_no_ncl": {"ncl_weight": 0.0}, "scncl_sym_nndr": {"symmetric_nndr": True}}
METHODS = [*SCNCL_VARIANTS, "logreg", "knn_pca"]


def run_scncl(ref, query, activity, seed, params):
    ref, query = ref.copy(), query.copy()
    tl.transfer_labels(ref, query, "cell_type", gene_activity=activity, seed=seed, progress=False, **params)
    return (query.obs["omics_cl_label"].astype(str).to_numpy(), query.obs["omics_cl_confidence"].to_numpy())


def run_logreg(ref, query, activity, seed):
    from sklearn.linear_model import LogisticRegression

    rna_x, atac_x, _ = transfer_features(ref, activity)
    clf = LogisticRegression(max_iter=1000, random_state=seed).fit(rna_x, ref.obs["cell_type"].astype(str))
    prob = clf.predict_proba(atac_x)
    return clf.classes_[prob.argmax(1)], prob.max(1)


def run_knn_pca(ref, query, activity, seed, k=30):
    import scanpy as sc
    import scipy.sparse as sp
    from sklearn.neighbors import NearestNeighbors

    rna_x, atac_x, _ = transfer_features(ref, activity, mode="lognorm")
    joint = sc.pp.pca(sp.vstack([rna_x, atac_x]).tocsr(), n_comps=30, random_state=seed, svd_solver="arpack")
    ref_z, query_z = joint[: rna_x.shape[0]], joint[rna_x.shape[0]:]
    _, idx = NearestNeighbors(n_neighbors=k, metric="cosine").fit(ref_z).kneighbors(query_z)
    labels = ref.obs["cell_type"].astype(str).to_numpy()[idx]
    classes = np.unique(labels)
    votes = np.stack([(labels == c).mean(1) for c in classes], axis=1)
    return classes[votes.argmax(1)], votes.max(1)


def score(truth, removed, pred, confidence):
    scored = truth != "Mis"
    truth, pred, confidence = truth[scored], pred[scored], confidence[scored]
    novel = np.isin(truth, removed)
    known = ~novel
    row = {"acc": float(np.mean(pred[known] == truth[known])), "macro_f1": metrics.macro_f1(truth[known], pred[known]),
           "auroc": None, "aupr": None, "oscr": None, "precision": None, "recall": None}
    if novel.any():
        row.update(auroc=metrics.auroc(novel, 1 - confidence), aupr=metrics.aupr(novel, 1 - confidence),
                   oscr=metrics.oscr(novel, pred == truth, confidence))
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--json", required=True)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = p.parse_args(argv)
    print(f"machine: {machine()}", flush=True)
    rna = datasets.load("mop_snare_paired", modality="rna")
    atac = datasets.load("mop_snare_paired", modality="atac")
    annotation = datasets.data_dir().parent / "annotations" / "mm10_ensembl_genes.tsv.gz"
    activity_all = pp.gene_activity(atac, annotation)
    rows = []
    for seed in range(args.seeds):
        perm = np.random.default_rng(seed).permutation(rna.n_obs)
        half_a, half_b = perm[: rna.n_obs // 2], perm[rna.n_obs // 2:]
        query, activity = atac[half_b].copy(), activity_all[half_b].copy()
        truth = query.obs["cell_type"].astype(str).to_numpy()
        for scenario in args.scenarios.split(","):
            removed = SCENARIOS[scenario]
            ref = rna[half_a].copy()
            ref = ref[~ref.obs["cell_type"].isin(["Mis", *removed])].copy()
            for method in args.methods.split(","):
                start = time.perf_counter()
                if method in SCNCL_VARIANTS:
                    pred, conf = run_scncl(ref, query, activity, seed, SCNCL_VARIANTS[method])
                elif method == "logreg":
                    pred, conf = run_logreg(ref, query, activity, seed)
                else:
                    pred, conf = run_knn_pca(ref, query, activity, seed)
                row = {"scenario": scenario, "method": method, "seed": seed, **score(truth, removed, pred, conf),
                       "seconds": time.perf_counter() - start}
                rows.append(row)
                print(row, flush=True)
                write_json_atomic(rows, args.json)
    print(f"\nmachine: {machine()}")
    print(median_table(rows, ["scenario", "method"], ["acc", "macro_f1", "auroc", "aupr", "oscr", "seconds"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
