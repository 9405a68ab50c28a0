"""How much cell identity each representation of the ATAC query holds: a diagnostic for label transfer.

On the label-transfer benchmark's closed scenario (mop_snare_paired, RNA half A -> ATAC half B, ``Mis`` cells not
scored), each representation of the query is scored by a kNN(30) vote (cosine) on the query's *own* labels, 5-fold
cross-validated (``self_acc``, ``self_macro_f1``, ``self_recall_l45``: the recall of L4/5, the type scncl loses
most often): what a transfer in that space could reach if the reference's labels sat exactly on the query. Beside
it, where the representation comes with a reference side, the transfer itself (``transfer_acc``: the method's own
labels, scored like ``label_transfer.py``). Query labels are read only here, to score.

Spaces: ``lsi20`` and ``lsi50`` (the query's LSI at 20 components, as ``tl.transfer_labels`` computes it since
2026-12-05, and at 50, before), ``tfidf_logreg`` (not a
space: logistic regression, C=1, on the TF-IDF of all peaks, the same 5 folds: a supervised linear ceiling),
``scncl`` (the default transfer's query latent, ``obsm["X_scncl"]``), and ``scglue`` (scGLUE's query embedding,
read from the training stages ``label_transfer.py --scglue-workdir`` kept for ``closed_seed<S>``; seeds without
both stages kept are skipped, since training takes hours).

    python benchmarks/transfer_ceiling.py --seeds 3 --json results/transfer_ceiling.json
        [--scglue-workdir DIR] [--anchors-python PY]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (add_seed_arguments, machine, median_table, scglue_stage_dir, seed_range,  # noqa: E402
                    transfer_halves, write_json_atomic)
from label_transfer import run_scncl  # noqa: E402
from transfer_baselines import knn_vote, scglue_embeddings  # noqa: E402

from omics_cl import datasets, metrics, pp  # noqa: E402
from omics_cl.data import lsi  # noqa: E402
from omics_cl.data.counts import validated_counts  # noqa: E402

HARD_TYPE = "L4/5"


def fold_scores(truth: np.ndarray, pred: np.ndarray) -> dict:
    return {"self_acc": float(np.mean(pred == truth)), "self_macro_f1": metrics.macro_f1(truth, pred),
            "self_recall_l45": float(np.mean(pred[truth == HARD_TYPE] == HARD_TYPE))}


def cross_validated(estimator, x, truth: np.ndarray, seed: int) -> dict:
    """:func:`fold_scores` of ``estimator``'s 5-fold cross-validated predictions of ``truth`` from ``x`` (stratified
    folds shuffled by ``seed``, the same for every representation)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    return fold_scores(truth, cross_val_predict(estimator, x, truth, cv=folds))


def self_knn(z: np.ndarray, truth: np.ndarray, seed: int, k: int = 30) -> dict:
    """5-fold cross-validated kNN(k) vote (cosine) of ``truth`` in ``z``."""
    from sklearn.neighbors import KNeighborsClassifier

    unit = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    return cross_validated(KNeighborsClassifier(k), unit, truth, seed)


def self_logreg(x, truth: np.ndarray, seed: int) -> dict:
    """5-fold cross-validated logistic regression (C=1) of ``truth`` on the features ``x``."""
    from sklearn.linear_model import LogisticRegression

    return cross_validated(LogisticRegression(C=1.0, max_iter=300), x, truth, seed)


def has_stages(workdir: str | None) -> bool:
    return bool(workdir) and all(os.path.exists(os.path.join(workdir, f"{s}.dill")) for s in ("pretrain", "fine-tune"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_seed_arguments(p)
    p.add_argument("--json", required=True)
    p.add_argument("--scglue-workdir", help="label_transfer.py's --scglue-workdir (stages kept at scGLUE's schedule)")
    p.add_argument("--anchors-python", default=os.environ.get("OMICS_CL_ANCHORS_PYTHON"))
    args = p.parse_args(argv)
    print(f"machine: {machine()}", flush=True)
    rna = datasets.load("mop_snare_paired", modality="rna")
    atac = datasets.load("mop_snare_paired", modality="atac")
    annotation = datasets.annotation_path("mm10_ensembl_genes.tsv.gz")
    activity_all = pp.gene_activity(atac, annotation)
    rows = []
    for seed in seed_range(args):
        half_a, half_b = transfer_halves(rna.n_obs, seed)
        query, activity = atac[half_b].copy(), activity_all[half_b].copy()
        truth = query.obs["cell_type"].astype(str).to_numpy()
        scored = truth != "Mis"
        ref = rna[half_a].copy()
        ref = ref[~ref.obs["cell_type"].isin(["Mis"])].copy()
        counts = validated_counts(query, None, "ATAC counts")

        def add(space, scores, start, transfer=None):
            rows.append({"seed": seed, "space": space, **scores, "transfer_acc": transfer,
                         "seconds": time.perf_counter() - start})
            print(rows[-1], flush=True)

        for n_components in (20, 50):
            start = time.perf_counter()
            z = lsi.lsi(counts, n_components, seed=seed)[0]
            add(f"lsi{n_components}", self_knn(z[scored], truth[scored], seed), start)
        start = time.perf_counter()
        add("tfidf_logreg", self_logreg(lsi.tfidf(counts)[scored], truth[scored], seed), start)
        start = time.perf_counter()
        pred, _, _, annotated = run_scncl(ref, query, activity, seed, {})
        add("scncl", self_knn(annotated.obsm["X_scncl"][scored], truth[scored], seed), start,
            float(np.mean(pred[scored] == truth[scored])))
        workdir = scglue_stage_dir(args.scglue_workdir, f"closed_seed{seed}", None)
        if has_stages(workdir) and args.anchors_python:
            start = time.perf_counter()
            rna_z, atac_z = scglue_embeddings(ref, query, annotation, seed, args.anchors_python, workdir=workdir)
            glue_pred, _ = knn_vote(rna_z, atac_z, ref.obs["cell_type"].astype(str).to_numpy())
            add("scglue", self_knn(atac_z[scored], truth[scored], seed), start,
                float(np.mean(glue_pred[scored] == truth[scored])))
        else:
            print(f"seed {seed}: no kept scGLUE stages under {workdir} (or no --anchors-python); scglue skipped")
    write_json_atomic(rows, args.json)
    print(f"\nmachine: {machine()}")
    print(median_table(rows, ["space"], ["self_acc", "self_macro_f1", "self_recall_l45", "transfer_acc", "seconds"],
                       spread=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
