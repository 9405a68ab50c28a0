"""RNA -> ATAC label transfer benchmark on mop_snare_paired (METHODS.md section 5).

Per seed the cells are split 50/50: RNA of half A with ``cell_type`` (Mis removed) is the reference,
ATAC of half B the query (its labels are used only for scoring). Scenarios: ``closed`` (all types),
``open_oligo_opc`` (Oligo and OPC removed from the reference), ``open_astro`` (Astro removed), and
``annotation``: the query's atlas labels are corrupted (every Oligo cell relabelled Astro, 5% of the
L2/3 cells, seeded, relabelled Pvalb; Mis cells carry no atlas label) and each method's closed-scenario
transfer flags disagreements its confusion does not explain (``tl.annotation_flags``; scncl through
``tl.check_annotations``, which also reports its own label-free precision estimate), scored by precision
and recall against the corrupted cells.
Methods: ``scncl`` (package defaults: an ensemble of 3 models, the query's own classifier on its LSI, gene activity and
the TF-IDF of its peaks at weight 0.5, probabilities multiplied by ``exp(0.75 z)``, z: each class's support by the
cell's gene activity standardised over the query, novelty ranked with that support (for the label before that weighting)
at weight 0.25; the query's LSI at 20 components, its components not standardised; the peaks' TF-IDF at the adaptive
scale; the neighbour vote beside the classifier's softmax), ``scncl_lsi50`` (the default before 2026-12-05's
thirty-ninth session: LSI at 50 components), ``scncl_before_support`` (the default before 2026-12-02's eighteenth
session: probabilities divided by the reference's class shares to the power 0.25 instead, novelty from the classifier
alone), ``scncl_no_support_weight`` (the default without the support weight, no division either),
``scncl_support_prior`` (the default with the division as well), ``scncl_before_tfidf`` (the query's classifier on LSI
and gene activity at weight 0.6: the default before 2026-12-02's seventeenth session), its two halves ``scncl_no_tfidf``
(without the peaks' TF-IDF) and ``scncl_peak_weight_0.6``, ``scncl_no_support`` (read off the default transfer: its
novelty from the classifier alone, ``novelty_support=False``, the cells' support for their labels left out of the score
and the flag: the default before 2026-12-02's eighteenth session), ``scncl_equal_ranks`` (read off the default transfer:
the classifier's rank and the support's weighted equally in the novelty, ``support_rank_weight=0.5``: the default before
2026-12-02's nineteenth session), ``scncl_lsi_peaks`` (the query's classifier on LSI only at weight 0.6: the default
before 2026-12-01's eighth session), ``scncl_no_prior`` (``scncl_lsi_peaks`` without the division), ``scncl_single``
(one model, no division, LSI only), ``scncl_seed`` (the seed's recipe, ``variant="seed"``), ``scncl_previous`` (the
defaults before issue 13: the seed's recipe with NCL weight 0.3 and per-cell novelty), ``scncl_learned_atac`` (the
default with ``learned_atac=True``: the guided VAE's ATAC latent beside the query's LSI), ``scncl_signac_tfidf`` (the
default before 2026-12-06: the peaks' TF-IDF at Signac's fixed scale 1e4, for the LSI and the query's classifier),
``scncl_vote30`` (the default before 2026-12-06's vote over 10 neighbours: 30), ``scncl_vote_only`` and
``scncl_scaled_lsi`` (the defaults before 2026-12-06's forty-third session: the vote alone with standardised LSI
components, and the standardised components alone), ``scncl_final_label_support`` (the default before 2026-12-06's
forty-fourth session: the novelty's support rank for the label after the support weighting,
``support_rank_label="final"``), ``scncl_peak_unfitted_zero`` (the default before 2026-12-06's forty-fifth session: the
query's classifier gives 0 to a class none of its training cells has, ``peak_unfitted="zero"``), one ablation per
default component of the single model (``scncl_asym_nndr``, ``scncl_classifier``, ``scncl_no_peaks``, ``scncl_no_ncl``,
``scncl_cell_novelty``), ``scncl_cell_rule`` (annotation rows only: the default transfer flagged by the previous
cell-level rule: confidence at least the agreeing cells' median, novel cells skipped, no group rule),
``scncl_no_propagation`` (annotation rows only: the default check without spreading flags to each cell's 15 neighbours
in the query embedding, ``propagate_neighbors=0``: the default before 2026-12-01's thirteenth session),
``scncl_no_probability_rule`` (annotation rows only: the default check without the rule that a group must exceed 1.5
times the count the transfer's own probabilities explain, ``min_probability_enrichment=0``: the default before
2026-12-02's seventeenth session), ``scncl_no_support_position`` (annotation rows only: the default check without the
rule that a group's cells' own gene activity must sit at least 0.7 of the way from the atlas label's confirmed cells to
the transferred label's, ``min_support_position=None``: the default before 2026-12-02's nineteenth session),
``scncl_latent_spread`` (annotation rows only: the default check spreading flags over neighbours in the transfer's query
latent, ``propagate_rep="X_scncl"``, instead of the query's LSI: the default before 2026-12-06's forty-fourth session),
and the baselines ``logreg`` (logistic regression on binarised RNA applied to binarised gene activity), ``knn_pca`` (kNN
vote in a joint PCA of RNA and gene activity) and ``scglue`` (scGLUE joint embedding + kNN(30) vote, run by
``benchmarks/anchors/scglue_embed.py`` in the anchors environment: see ``benchmarks/anchors/README.md``; its python is
``--anchors-python`` or ``$OMICS_CL_ANCHORS_PYTHON``). Novelty is each method's own score (scncl: 1 - its classifier's
max softmax; others: 1 - confidence); ``novel_rate`` is the share of scored cells scncl calls novel (closed scenario:
false alarms; by default the 10% most novel cells, ``novelty_rate=0.1``), ``flag_precision`` / ``flag_recall`` those
flags scored against the unseen cells (open scenarios). ``scncl_otsu_flag`` (closed / open rows read off the default
transfer): cells flagged by the rule before 2026-12-02's twentieth session (confidence novelty above its Otsu threshold
and label support below the query's median, ``novelty_rate=None``).

    python benchmarks/label_transfer.py --seeds 5 --json results/label_transfer.json [--resume]
        [--methods scncl,logreg] [--first-seed 3] [--scglue-max-epochs N] [--scglue-workdir DIR]

``--resume`` keeps the rows already in the JSON file and runs only the missing (scenario, method, seed).
``--scglue-workdir`` keeps each finished scGLUE training stage under DIR/<scenario>_seed<S>[_max<N>]: scGLUE's
full schedule takes hours per stage on 2 cores, and a re-run (after an interruption) resumes from the last stage.
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
from common import (MACHINE, add_seed_arguments, machine, median_table, scglue_stage_dir, seed_range,  # noqa: E402
                    transfer_halves, write_json_atomic)
from transfer_baselines import run_knn_pca, run_logreg, run_scglue  # noqa: E402

from omics_cl import datasets, metrics, pp, tl  # noqa: E402
from omics_cl.data.signatures import ranked_novelty  # noqa: E402

ANNOTATION = "mm10_ensembl_genes.tsv.gz"
SCENARIOS = {"closed": [], "open_oligo_opc": ["Oligo", "OPC"], "open_astro": ["Astro"], "annotation": []}
# the ablations remove one component from scncl_single: one model, no class-prior correction, the query's
# classifier on LSI only at weight 0.6 (the defaults before the 3-member ensemble, class_prior_power=0.25,
# peak_features="lsi+activity" and then "lsi+activity+peaks" at weight 0.5 were added); rows named after an earlier
# default pin BEFORE_SUPPORT (no label support, the class-prior division at 0.25) so that they keep their meaning
BEFORE_SUPPORT = {"support_weight": 0.0, "class_prior_power": 0.25, "novelty_support": False}
LSI_PEAKS = {**BEFORE_SUPPORT, "peak_features": "lsi", "peak_weight": 0.6}
BEFORE_TFIDF = {**BEFORE_SUPPORT, "peak_features": "lsi+activity", "peak_weight": 0.6}
SINGLE = {"n_members": 1, **LSI_PEAKS, "class_prior_power": 0.0}
# every row reads the query's LSI at tl.transfer_labels' n_lsi_components (20 since 2026-12-05) unless it pins it;
# scncl_lsi50 is the default before then (50 components). Likewise every row reads the peaks' TF-IDF at the adaptive
# scale (tfidf_scale=None, since 2026-12-06); scncl_signac_tfidf is the default before then (Signac's 1e4);
# scncl_vote_only: the neighbour vote alone (vote_share=1, the default before 2026-12-06's forty-third session);
# scncl_scaled_lsi: the query's LSI components standardised (scale_lsi=True, the default before the same session);
# scncl_final_label_support: the novelty's support rank asks about the label after the support weighting
# (support_rank_label="final", the default before 2026-12-06's forty-fourth session; every other row reads
# "unweighted"); scncl_peak_unfitted_zero: the query's classifier gives 0 to a class none of its training cells has
# (peak_unfitted="zero", the default before 2026-12-06's forty-fifth session; every other row reads "transfer")
SCNCL_VARIANTS = {"scncl": {}, "scncl_lsi50": {"n_lsi_components": 50}, "scncl_before_support": BEFORE_SUPPORT,
                  "scncl_no_support_weight": {"support_weight": 0.0},
                  "scncl_support_prior": {"class_prior_power": 0.25}, "scncl_before_tfidf": BEFORE_TFIDF,
                  "scncl_no_tfidf": {**BEFORE_SUPPORT, "peak_features": "lsi+activity"},
                  "scncl_peak_weight_0.6": {**BEFORE_SUPPORT, "peak_weight": 0.6},
                  "scncl_lsi_peaks": LSI_PEAKS,
                  "scncl_no_prior": {**LSI_PEAKS, "class_prior_power": 0.0}, "scncl_single": SINGLE,
                  "scncl_seed": {"variant": "seed"},
                  "scncl_asym_nndr": {**SINGLE, "symmetric_nndr": False},
                  "scncl_classifier": {**SINGLE, "prediction": "classifier"},
                  "scncl_no_peaks": {**SINGLE, "peak_weight": 0.0}, "scncl_no_ncl": {**SINGLE, "ncl_weight": 0.0},
                  "scncl_cell_novelty": {**SINGLE, "novelty_by": "cell"},
                  "scncl_previous": {"variant": "seed", "ncl_weight": 0.3, "novelty_by": "cell"},
                  "scncl_learned_atac": {"learned_atac": True}, "scncl_signac_tfidf": {"tfidf_scale": 1e4},
                  "scncl_vote30": {"vote_share": 1.0, "vote_neighbors": 30, "scale_lsi": True},
                  "scncl_vote_only": {"vote_share": 1.0, "scale_lsi": True}, "scncl_scaled_lsi": {"scale_lsi": True},
                  "scncl_final_label_support": {"support_rank_label": "final"},
                  "scncl_peak_unfitted_zero": {"peak_unfitted": "zero"}}
CELL_RULE = "scncl_cell_rule"  # annotation rows only: the default transfer, flagged by the rule before issue 13
NO_SPREAD = "scncl_no_propagation"  # annotation rows only: the default check without spreading flags to neighbours
NO_PROBABILITY_RULE = "scncl_no_probability_rule"  # annotation rows only: the default check without the
# probability rule (min_probability_enrichment=0)
NO_SUPPORT_POSITION = "scncl_no_support_position"  # annotation rows only: the default check without the support
# rule (min_support_position=None)
LATENT_SPREAD = "scncl_latent_spread"  # annotation rows only: the default check spreading flags over neighbours in
# the transfer's latent (propagate_rep="X_scncl", the default before 2026-12-06's forty-fourth session) instead of
# the query's LSI
ANNOTATION_ONLY = (CELL_RULE, NO_SPREAD, NO_PROBABILITY_RULE, NO_SUPPORT_POSITION, LATENT_SPREAD)
NO_SUPPORT = "scncl_no_support"  # closed / open rows read off the default transfer: novelty without label support
EQUAL_RANKS = "scncl_equal_ranks"  # closed / open rows read off the default transfer: the two novelty ranks weighted
# equally (support_rank_weight=0.5, the default before 2026-12-02's nineteenth session)
OTSU_FLAG = "scncl_otsu_flag"  # closed / open rows read off the default transfer: the Otsu flag rule
# (novelty_rate=None, the default before 2026-12-02's twentieth session)
READ_OFF = (NO_SUPPORT, EQUAL_RANKS, OTSU_FLAG)
METHODS = [*SCNCL_VARIANTS, *ANNOTATION_ONLY, *READ_OFF, "logreg", "knn_pca", "scglue"]


def run_scncl(ref, query, activity, seed, params):
    if params.get("learned_atac"):  # the learned ATAC latent links peaks to genes through the annotation
        params = {**params, "annotation": datasets.annotation_path(ANNOTATION)}
    query = query.copy()
    tl.transfer_labels(ref.copy(), query, "cell_type", gene_activity=activity, seed=seed, progress=False, **params)
    obs = query.obs
    return (obs["omics_cl_label"].astype(str).to_numpy(), obs["omics_cl_confidence"].to_numpy(),
            obs["omics_cl_novelty"].to_numpy(), query)


def corrupt_atlas(truth, seed):
    """Atlas labels with every Oligo relabelled Astro and 5% of L2/3 (seeded) relabelled Pvalb; Mis unlabelled."""
    atlas = truth.astype(object).copy()
    l23 = np.flatnonzero(truth == "L2/3")
    picked = np.random.default_rng([seed, 5]).choice(l23, int(round(0.05 * len(l23))), replace=False)
    corrupted = truth == "Oligo"
    corrupted[picked] = True
    atlas[truth == "Oligo"] = "Astro"
    atlas[picked] = "Pvalb"
    atlas[truth == "Mis"] = None
    return atlas, corrupted


def score(truth, removed, pred, novelty, is_novel=None):
    """Accuracy / macro-F1 on known types; AUROC, AUPR and OSCR of the novelty score when types were
    removed; ``novel_rate``: the share of scored cells the method calls novel (closed: its false alarms)."""
    scored = truth != "Mis"
    truth, pred, novelty = truth[scored], pred[scored], novelty[scored]
    novel = np.isin(truth, removed)
    known = ~novel
    row = {"acc": float(np.mean(pred[known] == truth[known])), "macro_f1": metrics.macro_f1(truth[known], pred[known]),
           "auroc": None, "aupr": None, "oscr": None, "precision": None, "recall": None,
           "novel_rate": None if is_novel is None else float(np.mean(is_novel[scored])),
           "flag_precision": None, "flag_recall": None}
    if novel.any():
        row.update(auroc=metrics.auroc(novel, novelty), aupr=metrics.aupr(novel, novelty),
                   oscr=metrics.oscr(novel, pred == truth, -novelty))
        if is_novel is not None:
            flagged = is_novel[scored]
            row.update(flag_precision=float((flagged & novel).sum() / max(flagged.sum(), 1)),
                       flag_recall=float((flagged & novel).sum() / novel.sum()))
    return row


def read_off_rows(obs, methods, scenario, seed, truth, removed, pred, seconds, rate):
    """Rows read off the default transfer's obs: ``scncl_no_support`` (novelty and flag from the classifier's
    cluster novelty alone), ``scncl_equal_ranks`` (its rank and the label support's weighted equally), each flagged
    at the default's ``rate``, and ``scncl_otsu_flag`` (the default's novelty, flagged by the Otsu rule)."""
    alone, support = obs["omics_cl_confidence_novelty"].to_numpy(), obs["omics_cl_label_support"].to_numpy()
    default = obs["omics_cl_novelty"].to_numpy()
    novelty = {NO_SUPPORT: alone, EQUAL_RANKS: ranked_novelty(alone, support, 0.5), OTSU_FLAG: default}
    flagged = {m: novelty[m] > tl.rate_threshold(novelty[m], rate) for m in (NO_SUPPORT, EQUAL_RANKS)}
    flagged[OTSU_FLAG] = (alone > tl.otsu_threshold(alone)) & (support < np.median(support))
    return [{"scenario": scenario, "method": m, "seed": seed,
             **score(truth, removed, pred, novelty[m], flagged[m]), "seconds": seconds} for m in methods]


def score_flags(flags, corrupted):
    hits = int((flags & corrupted).sum())
    return {"acc": None, "macro_f1": None, "auroc": None, "aupr": None, "oscr": None,
            "precision": float(hits / flags.sum()) if flags.any() else 0.0, "recall": float(hits / corrupted.sum())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_seed_arguments(p)
    p.add_argument("--json", required=True)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--resume", action="store_true", help="keep rows already in --json; run only missing ones")
    p.add_argument("--anchors-python", default=os.environ.get("OMICS_CL_ANCHORS_PYTHON"),
                   help="python of the anchors environment (needed for scglue)")
    p.add_argument("--scglue-max-epochs", type=int, default=None,
                   help="cap each scGLUE training stage at this many epochs (default: scGLUE's own schedule)")
    p.add_argument("--scglue-workdir", help="keep scGLUE's finished training stages here; a re-run resumes from them")
    args = p.parse_args(argv)
    methods, scenarios = args.methods.split(","), args.scenarios.split(",")
    unknown = sorted(set(methods) - set(METHODS)) + sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        p.error(f"unknown method/scenario {unknown}; methods {METHODS}, scenarios {list(SCENARIOS)}")
    if "scglue" in methods and not args.anchors_python:
        p.error("scglue needs --anchors-python (or $OMICS_CL_ANCHORS_PYTHON); see benchmarks/anchors/README.md")
    rows = json.loads(Path(args.json).read_text()) if args.resume and Path(args.json).exists() else []
    done = {(r["scenario"], r["method"], r["seed"]) for r in rows}
    print(f"machine: {machine()}", flush=True)
    rna = datasets.load("mop_snare_paired", modality="rna")
    atac = datasets.load("mop_snare_paired", modality="atac")
    annotation = datasets.annotation_path(ANNOTATION)
    activity_all = pp.gene_activity(atac, annotation)
    for seed in seed_range(args):
        half_a, half_b = transfer_halves(rna.n_obs, seed)
        query, activity = atac[half_b].copy(), activity_all[half_b].copy()
        truth = query.obs["cell_type"].astype(str).to_numpy()
        atlas, corrupted = corrupt_atlas(truth, seed)
        for scenario in [s for s in SCENARIOS if s in scenarios and s != "annotation"] or ["closed"]:
            removed = SCENARIOS[scenario]
            ref = rna[half_a].copy()
            ref = ref[~ref.obs["cell_type"].isin(["Mis", *removed])].copy()
            for method in methods:
                wanted = [s for s in (scenario, "annotation" if scenario == "closed" else None)
                          if s in scenarios and (s, method, seed) not in done]
                if not wanted:
                    continue
                if method in (*ANNOTATION_ONLY, *READ_OFF):
                    continue
                start = time.perf_counter()
                annotated, novelty = None, None
                if method in SCNCL_VARIANTS:
                    pred, conf, novelty, annotated = run_scncl(ref, query, activity, seed, SCNCL_VARIANTS[method])
                elif method == "logreg":
                    pred, conf = run_logreg(ref, query, activity, seed)
                elif method == "knn_pca":
                    pred, conf = run_knn_pca(ref, query, activity, seed)
                else:
                    workdir = scglue_stage_dir(args.scglue_workdir, f"{scenario}_seed{seed}", args.scglue_max_epochs)
                    pred, conf = run_scglue(ref, query, annotation, seed, args.anchors_python, args.scglue_max_epochs,
                                            workdir)
                seconds = time.perf_counter() - start
                new = []
                if scenario in wanted:
                    is_novel = None if annotated is None else annotated.obs["omics_cl_is_novel"].to_numpy()
                    new.append({"scenario": scenario, "method": method, "seed": seed,
                                **score(truth, removed, pred, 1 - conf if novelty is None else novelty, is_novel),
                                "seconds": seconds})
                    if method == "scncl":
                        new += read_off_rows(annotated.obs, [m for m in READ_OFF if m in methods
                                                             and (scenario, m, seed) not in done],
                                             scenario, seed, truth, removed, pred, seconds,
                                             annotated.uns["omics_cl"]["scncl"]["novelty_rate"])
                if "annotation" in wanted:
                    if annotated is not None:
                        annotated.obs["atlas"] = atlas
                        tl.check_annotations(annotated, "atlas")
                        flags = annotated.obs["omics_cl_annotation_flag"].to_numpy()
                        estimate = annotated.uns["omics_cl"]["check_annotations"]["estimated_precision"]
                        new.append({"scenario": "annotation", "method": method, "seed": seed,
                                    **score_flags(flags, corrupted), "estimated_precision": estimate,
                                    "seconds": seconds})
                        for name, check in ((NO_SPREAD, {"propagate_neighbors": 0}),
                                            (NO_PROBABILITY_RULE, {"min_probability_enrichment": 0.0}),
                                            (NO_SUPPORT_POSITION, {"min_support_position": None}),
                                            (LATENT_SPREAD, {"propagate_rep": "X_scncl"})):
                            if method == "scncl" and name in methods:
                                tl.check_annotations(annotated, "atlas", **check)
                                new.append({"scenario": "annotation", "method": name, "seed": seed,
                                            **score_flags(annotated.obs["omics_cl_annotation_flag"].to_numpy(),
                                                          corrupted),
                                            "estimated_precision":
                                                annotated.uns["omics_cl"]["check_annotations"]["estimated_precision"],
                                            "seconds": seconds})
                        if method == "scncl" and CELL_RULE in methods:
                            tl.check_annotations(annotated, "atlas", min_confidence=None, min_enrichment=0,
                                                 min_agreement=0, skip_novel=True)
                            new.append({"scenario": "annotation", "method": CELL_RULE, "seed": seed,
                                        **score_flags(annotated.obs["omics_cl_annotation_flag"].to_numpy(),
                                                      corrupted), "seconds": seconds})
                    else:
                        flags, _ = tl.annotation_flags(atlas, pred, conf, np.unique(ref.obs["cell_type"].astype(str)))
                        new.append({"scenario": "annotation", "method": method, "seed": seed,
                                    **score_flags(flags, corrupted), "seconds": seconds})
                for row in new:
                    if method == "scglue":
                        row["scglue_max_epochs"] = args.scglue_max_epochs
                    rows.append({**row, "machine": MACHINE})
                    print(row, flush=True)
                write_json_atomic(rows, args.json)
    order = {(s, m): i for i, (s, m) in enumerate((s, m) for s in SCENARIOS for m in METHODS)}
    rows.sort(key=lambda r: (order.get((r["scenario"], r["method"]), len(order)), r["seed"]))
    print(f"\nmachine: {machine()}")
    print(median_table(rows, ["scenario", "method"],
                       ["acc", "macro_f1", "auroc", "aupr", "oscr", "novel_rate", "flag_precision", "flag_recall",
                        "precision", "recall",
                        "estimated_precision", "seconds"], spread=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
