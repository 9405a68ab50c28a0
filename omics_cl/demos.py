"""``omics-cl demo --job {cluster,transfer,integrate}``: each job on small real data in one command.

cluster: scanpy's bundled 700 PBMCs (no data directory needed). transfer and integrate: a seeded subsample
of the registry's paired MOp SNARE-seq2 cells (``mop_snare_paired``). Labels only score the results: they
are taken out of the cells' obs before any training and put back into the written outputs.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from omics_cl.cli_io import check_writable, write_file, write_output

JOBS = ("cluster", "transfer", "integrate")
DEFAULTS = {"cluster": {"epochs": 100, "n_cells": None}, "transfer": {"epochs": 50, "n_cells": 4000},
            "integrate": {"epochs": 20, "n_cells": 2000}}
CLUSTER_METHODS = ("pca", "ae", "cae")
CLUSTER_COLUMNS = ["method", "protocol", "n_clusters", "nmi", "ari", "acc", "seconds"]
TRANSFER_COLUMNS = ["method", "accuracy", "macro_f1", "novel_rate_known", "novel_rate_unseen", "novelty_auroc",
                    "seconds"]
PAIRED = "mop_snare_paired"
LABEL_KEY = "cell_type"
UNSEEN = "Astro"  # left out of the transfer reference, so the query has one type the reference lacks
ANNOTATION = "mm10_ensembl_genes.tsv.gz"
MIN_CELLS = 200


def markdown_table(rows: list[dict], cols: list[str]) -> str:
    """Rows as a markdown table of ``cols``; floats with 3 decimals, ``None`` as ``-``."""
    def cell(v):
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def run(job: str = "cluster", out: str | Path | None = None, n_cells: int | None = None,
        epochs: int | None = None, seed: int = 0, progress: bool = True) -> list[dict]:
    """Run one demo job, print its table and (``out``) write its outputs and plots there; return the rows.

    ``n_cells`` (transfer, integrate) and ``epochs`` default to ``DEFAULTS[job]``; transfer and integrate
    always write, to ``omics-cl-demo-<job>`` in the working directory unless ``out`` is given.
    """
    if job not in JOBS:
        raise ValueError(f"unknown demo job {job!r}; choose from {list(JOBS)}")
    epochs = DEFAULTS[job]["epochs"] if epochs is None else epochs
    if job == "cluster":
        if n_cells is not None:
            raise ValueError("--n-cells is for the transfer and integrate demos (cluster uses all 700 cells)")
        return cluster(None if out is None else checked_out_dir(out), epochs, seed, progress)
    n_cells = DEFAULTS[job]["n_cells"] if n_cells is None else n_cells
    demo = transfer if job == "transfer" else integrate
    return demo(checked_out_dir(out or f"omics-cl-demo-{job}"), n_cells, epochs, seed, progress)


def checked_out_dir(out: str | Path) -> Path:
    """``out`` as a Path, refused early when its parent is missing or it is a file (it is created on writing)."""
    out = Path(out)
    if not out.resolve().parent.is_dir():
        raise ValueError(f"output directory {out.resolve().parent} does not exist")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a directory")
    check_writable(out if out.exists() else out.resolve().parent)
    return out


def _finish(rows: list[dict], cols: list[str], out: Path | None, start: float) -> list[dict]:
    table = markdown_table(rows, cols)
    print(table)
    if out is not None:
        write_file(out / "scores.md", lambda tmp: Path(tmp).write_text(table + "\n"))
        print(f"outputs and report in {out}/")
    print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return rows


def cluster(out: Path | None, epochs: int, seed: int, progress: bool) -> list[dict]:
    """pca, ae and cae on scanpy's pbmc68k_reduced, scored on its bulk_labels under both protocols."""
    import matplotlib

    matplotlib.use("Agg")
    from omics_cl import datasets, metrics, pl, tl

    start = time.perf_counter()
    adata = datasets.pbmc68k_reduced_counts()
    labels = adata.obs["bulk_labels"]
    k = labels.nunique()
    print(f"demo: scanpy's bundled pbmc68k_reduced, {adata.n_obs} cells x {adata.n_vars} genes, "
          f"{k} sort-based labels (bulk_labels), seed {seed}; seconds = embedding + clustering "
          "(the first call also compiles the graph code once)")
    rows = []
    for method in CLUSTER_METHODS:
        with tempfile.TemporaryDirectory() as tmp:
            # the call without K reads the model the call with K trained (cae's read-off weights depend on K)
            params = {"epochs": epochs, "checkpoint_path": str(Path(tmp) / "run.ckpt")} if method != "pca" else {}
            t0 = time.perf_counter()
            fixed = tl.cluster(adata, method=method, n_clusters=k, seed=seed, progress=progress, **params)
            seconds = time.perf_counter() - t0
            adata.obs[f"{method}_cluster_k"] = adata.obs[f"{method}_cluster"]
            rec = tl.cluster(adata, method=method, seed=seed, progress=False, **params)
        rows.append({"method": method, "protocol": "resolution", "n_clusters": rec["n_clusters"],
                     **metrics.clustering_scores(labels, adata.obs[f"{method}_cluster"]), "seconds": seconds})
        rows.append({"method": method, "protocol": "n_clusters", "n_clusters": fixed["n_clusters"],
                     **metrics.clustering_scores(labels, adata.obs[f"{method}_cluster_k"]), "seconds": seconds})
    if out is not None:
        out.mkdir(exist_ok=True)
        for method in CLUSTER_METHODS:
            pl.umap(adata, f"X_{method}", [f"{method}_cluster", "bulk_labels"], seed=seed,
                    save=str(out / f"umap_{method}.png"))
        pl.training_history(adata, "cae", save=str(out / "training_history_cae.png"))
        write_output(adata, out / "pbmc68k_reduced.h5ad")
    return _finish(rows, CLUSTER_COLUMNS, out, start)


def paired_subsample(n_cells: int, seed: int):
    """``(rna, atac, labels, unlabelled)``: a seeded subsample of ``mop_snare_paired`` (cells in the same order
    in both), the obs of both emptied; ``labels``: the cells' cell_type, kept aside for scoring; ``unlabelled``:
    the label values that mean no label (Mis)."""
    from omics_cl import datasets

    unlabelled = list(datasets.get_manifest(PAIRED).unlabelled_values)
    rna, atac = datasets.load(PAIRED, modality="rna"), datasets.load(PAIRED, modality="atac")
    if not MIN_CELLS <= n_cells <= rna.n_obs:
        raise ValueError(f"--n-cells must be between {MIN_CELLS} and {rna.n_obs}, got {n_cells}")
    cells = np.sort(np.random.default_rng(seed).choice(rna.n_obs, n_cells, replace=False))
    labels = rna.obs[LABEL_KEY].iloc[cells].astype(str).to_numpy()
    rna, atac = rna[cells].copy(), atac[cells].copy()
    rna.obs, atac.obs = rna.obs[[]], atac.obs[[]]
    return rna, atac, labels, unlabelled


def _transfer_row(method, truth, scored, pred, novelty, is_novel, seconds) -> dict:
    from omics_cl import metrics

    unseen, known = scored & (truth == UNSEEN), scored & (truth != UNSEEN)
    return {"method": method, "accuracy": float(np.mean(pred[known] == truth[known])),
            "macro_f1": metrics.macro_f1(truth[known], pred[known]),
            "novel_rate_known": float(is_novel[known].mean()), "novel_rate_unseen": float(is_novel[unseen].mean()),
            "novelty_auroc": metrics.auroc(unseen[scored], novelty[scored]), "seconds": seconds}


def logreg_baseline(ref, activity, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression on binarised reference RNA applied to binarised query gene activity (the label
    transfer benchmark's ``logreg``): ``(labels, max probability)``."""
    from sklearn.linear_model import LogisticRegression

    from omics_cl.data.transfer import transfer_features

    rna_x, atac_x, _, _ = transfer_features(ref, activity)
    clf = LogisticRegression(max_iter=1000, random_state=seed).fit(rna_x, ref.obs[LABEL_KEY].to_numpy())
    prob = clf.predict_proba(atac_x)
    return clf.classes_[prob.argmax(1)], prob.max(1)


def transfer(out: Path, n_cells: int, epochs: int, seed: int, progress: bool) -> list[dict]:
    """RNA of one half of the subsample (Mis and ``UNSEEN`` left out) labels the ATAC of the other half."""
    import matplotlib

    matplotlib.use("Agg")
    from omics_cl import datasets, get, pl, pp, tl

    start = time.perf_counter()
    annotation = datasets.annotation_path(ANNOTATION)
    rna, atac, labels, unlabelled = paired_subsample(n_cells, seed)
    half = np.random.default_rng([seed, 1]).permutation(n_cells)
    ref_cells, query_cells = np.sort(half[: n_cells // 2]), np.sort(half[n_cells // 2:])
    keep = ~np.isin(labels[ref_cells], [*unlabelled, UNSEEN])
    ref = rna[ref_cells[keep]].copy()
    ref.obs[LABEL_KEY] = labels[ref_cells[keep]]
    query, truth = atac[query_cells].copy(), labels[query_cells]
    scored = ~np.isin(truth, unlabelled)
    print(f"demo transfer: {PAIRED} (SNARE-seq2 mouse MOp), seeded subsample of {n_cells} paired cells (seed "
          f"{seed}) split in halves: RNA of {ref.n_obs} cells as the labelled reference ({LABEL_KEY}; "
          f"{'/'.join(unlabelled)} and {UNSEEN} left out), ATAC of {query.n_obs} other cells as the query, its "
          f"labels held back for scoring ({int((truth == UNSEEN).sum())} {UNSEEN} cells are the unseen type); "
          f"{epochs} epochs")
    activity = pp.gene_activity(query, annotation)
    t0 = time.perf_counter()
    tl.transfer_labels(ref, query, LABEL_KEY, gene_activity=activity, seed=seed, progress=progress, epochs=epochs)
    obs = query.obs
    rows = [_transfer_row("scncl", truth, scored, obs["omics_cl_label"].astype(str).to_numpy(),
                          obs["omics_cl_novelty"].to_numpy(), obs["omics_cl_is_novel"].to_numpy(dtype=bool),
                          time.perf_counter() - t0)]
    t0 = time.perf_counter()
    pred, confidence = logreg_baseline(ref, activity, seed)
    novelty = 1 - confidence
    rate = get.run_record(query, "scncl")["novelty_rate"]
    rows.append(_transfer_row("logreg", truth, scored, pred, novelty, novelty > tl.rate_threshold(novelty, rate),
                              time.perf_counter() - t0))
    print(f"scored on the {int(scored.sum())} query cells not labelled {'/'.join(unlabelled)}: accuracy and "
          f"macro-F1 on the reference types; novel_rate_known / _unseen: share flagged novel among reference-type / "
          f"{UNSEEN} cells (the {rate:.0%} most novel cells of the query, no labels; logreg's score: 1 - its max "
          f"probability); novelty_auroc: {UNSEEN} vs the rest")
    out.mkdir(exist_ok=True)
    query.obs[f"{LABEL_KEY}_held_back"] = truth
    pl.novelty_distribution(query, save=str(out / "novelty_distribution.png"))
    pl.transfer_umap(ref, query, LABEL_KEY, seed=seed, save=str(out / "umap_joint.png"))
    pl.confusion_matrix(truth, obs["omics_cl_label"].astype(str), save=str(out / "confusion_matrix.png"))
    obs[[c for c in obs if c.startswith("omics_cl_")] + [f"{LABEL_KEY}_held_back"]].to_csv(out / "labels.csv")
    write_output(query, out / "query_annotated.h5ad")
    return _finish(rows, TRANSFER_COLUMNS, out, start)


def integrate(out: Path, n_cells: int, epochs: int, seed: int, progress: bool) -> list[dict]:
    """scI2CL on both modalities of the subsample, against RNA PCA + Leiden, both clustering protocols."""
    import matplotlib

    matplotlib.use("Agg")
    import mudata as md

    from omics_cl import metrics, pl, tl

    start = time.perf_counter()
    rna, atac, labels, unlabelled = paired_subsample(n_cells, seed)
    k = len(set(labels) - set(unlabelled))
    print(f"demo integrate: {PAIRED} (SNARE-seq2 mouse MOp), seeded subsample of {n_cells} cells with RNA and "
          f"ATAC (seed {seed}), no labels in training; clusters scored on {LABEL_KEY} ({k} types, "
          f"{'/'.join(unlabelled)} left out) at Leiden resolution 1 and at {k} clusters; sci2cl {epochs} epochs")
    with md.set_options(pull_on_update=False):
        mdata = md.MuData({"rna": rna, "atac": atac})
    t0 = time.perf_counter()
    runs = {"sci2cl": (mdata, tl.integrate(mdata, seed=seed, progress=progress, epochs=epochs), None)}
    seconds = {"sci2cl": time.perf_counter() - t0}
    t0 = time.perf_counter()
    pca = tl.cluster(rna, method="pca", seed=seed, progress=False)
    runs["pca"] = (rna, pca, pca["graph_dims"])
    seconds["pca"] = time.perf_counter() - t0
    rows = []
    for method, (data, record, dims) in runs.items():
        fixed = tl.cluster_embedding(data, f"X_{method}", n_clusters=k, seed=seed, key_added=f"{method}_cluster_k",
                                     n_dims=dims)
        for protocol, key, n in (("resolution", f"{method}_cluster", record["n_clusters"]),
                                 ("n_clusters", f"{method}_cluster_k", fixed["n_clusters"])):
            rows.append({"method": "pca_rna" if method == "pca" else method, "protocol": protocol, "n_clusters": n,
                         **metrics.clustering_scores(labels, data.obs[key].to_numpy(), exclude=unlabelled),
                         "seconds": seconds[method]})
    out.mkdir(exist_ok=True)
    mdata.obs[LABEL_KEY] = labels
    mdata.obs["pca_rna_cluster"] = rna.obs["pca_cluster"].to_numpy()
    pl.umap(mdata, "X_sci2cl", ["sci2cl_cluster", "pca_rna_cluster", LABEL_KEY], seed=seed,
            save=str(out / "umap.png"))
    pl.training_history(mdata, "sci2cl", save=str(out / "training_history.png"))
    with md.set_options(pull_on_update=False):  # the obs columns above are all it needs
        write_output(mdata, out / "integrated.h5mu")
    return _finish(rows, CLUSTER_COLUMNS, out, start)
