"""scGLUE joint embedding of an RNA reference and an ATAC query (run in the anchors environment).

    python scglue_embed.py RNA.h5ad ATAC.h5ad GENES.tsv.gz OUT.npz --seed S [--max-epochs N] [--workdir DIR]

RNA: raw counts in X. ATAC: peak counts in X, var columns chrom/chromStart/chromEnd. Genes: a
table with chrom/start/end/gene_name/strand (the ../shared/annotations TSV form). Follows the
scGLUE tutorial: seurat_v3 HVGs + PCA(100) for RNA, LSI(100) for ATAC, RNA-anchored guidance
graph, NB likelihoods, scGLUE's automatic training schedule unless ``--max-epochs`` caps each of its
two stages (pre-training, fine-tuning). Writes ``rna`` and ``atac`` embeddings.

``--workdir`` keeps each finished stage's model there (``pretrain.dill``, ``fine-tune.dill``) and, during a stage,
its state after the last finished epoch (``scglue_resume.py``); a later run with the same inputs, seed and workdir
goes on from there and ends with the model an uninterrupted run gives. The full schedule of one stage takes hours
on 2 cores, so a run can span sessions this way. The stages are those of ``scglue.models.fit_SCGLUE``.
"""
import argparse
import glob
import logging
import os
import sys
import tempfile
import warnings
from itertools import chain

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scglue
from scglue_resume import STATE_FILE, fit_resumable, rerun_with_fixed_hash_seed  # same folder


def fit_stages(adatas, graph, model, seed, fit_kws, workdir):
    """``scglue.models.fit_SCGLUE`` (balancing on) with each stage's model kept in ``workdir``."""
    models = scglue.models
    pretrain_path = os.path.join(workdir, "pretrain.dill")
    finetune_path = os.path.join(workdir, "fine-tune.dill")
    if os.path.exists(finetune_path):
        for stage in ("pretrain", "fine-tune"):
            report_stage(workdir, stage)
        return models.load_model(finetune_path)
    if os.path.exists(pretrain_path):
        report_stage(workdir, "pretrain")
        pretrain = models.load_model(pretrain_path)
    else:
        pretrain = model(adatas, sorted(graph.nodes), random_seed=seed, shared_batches=False)
        pretrain.compile()
        fit_stage(pretrain, adatas, graph, workdir, "pretrain", **fit_kws, align_burnin=np.inf, safe_burnin=False)
    for key, adata in adatas.items():
        adata.obsm["X_glue_pretrain"] = pretrain.encode_data(key, adata)
    scglue.data.estimate_balancing_weight(*adatas.values(), use_rep="X_glue_pretrain", use_batch=None,
                                          key_added="balancing_weight")
    for adata in adatas.values():
        adata.uns[scglue.config.ANNDATA_KEY]["use_dsc_weight"] = "balancing_weight"
        del adata.obsm["X_glue_pretrain"]
    finetune = model(adatas, sorted(graph.nodes), random_seed=seed)
    finetune.adopt_pretrained_model(pretrain)
    finetune.compile()
    finetune.random_seed += 1  # as fit_SCGLUE: another data order than pre-training's
    fit_stage(finetune, adatas, graph, workdir, "fine-tune", **fit_kws)
    return finetune


def fit_stage(glue, adatas, graph, workdir, stage, **fit_kws):
    """One stage's ``fit`` (resumed from its last finished epoch when an earlier run stopped inside it), kept as
    ``workdir/<stage>.dill``. scGLUE clears the stage's tensorboard log when it starts, so a stopped run's log is
    kept aside as a part first."""
    directory = os.path.join(workdir, stage)
    state = os.path.join(directory, STATE_FILE)
    log = os.path.join(directory, "tensorboard")
    if os.path.exists(state) and os.path.isdir(log):
        os.replace(log, f"{log}-part{len(glob.glob(log + '-part*'))}")
    fit_resumable(glue, adatas, graph, **fit_kws, directory=directory)
    atomic_save(glue, os.path.join(workdir, f"{stage}.dill"))
    os.remove(state)
    report_stage(workdir, stage)


def report_stage(workdir, stage):
    """Print how many epochs a finished stage trained and its wall time, read off its tensorboard logs (scGLUE
    writes one record per epoch; a file is named after the time it was opened; a resumed stage has one log per
    run, the last one newest)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    epochs, seconds, runs = 0, 0.0, 0
    for log_dir in sorted(glob.glob(os.path.join(workdir, stage, "tensorboard*"))):
        files = sorted(glob.glob(os.path.join(log_dir, "events.out.tfevents.*")))
        if not files:
            continue
        log = EventAccumulator(files[-1])
        log.Reload()
        train_tags = [tag for tag in log.Tags()["scalars"] if tag.startswith("train/")]
        if not train_tags:
            continue
        events = log.Scalars(train_tags[0])
        epochs = max(epochs, max(e.step for e in events))
        seconds += events[-1].wall_time - float(os.path.basename(files[-1]).split(".")[3])
        runs += 1
    if runs:
        print(f"scglue: {stage} trained {epochs} epochs in {seconds:.0f} s over {runs} run(s) ({workdir})",
              file=sys.stderr, flush=True)


def atomic_save(model, path):
    model.save(path + ".tmp")
    os.replace(path + ".tmp", path)


def show_progress() -> None:
    """Let scGLUE's own log show each stage's losses every ``scglue.config.PRINT_LOSS_INTERVAL`` (10) epochs on
    stderr, and silence torch's warning that its data loaders pin memory with no GPU (one line per epoch)."""
    scglue.log.console_log_level = logging.INFO
    warnings.filterwarnings("ignore", message="'pin_memory' argument is set as true but no accelerator")


def fit_glue(rna, atac, genes_path, seed=0, max_epochs=None, paired=False, workdir=None):
    """scGLUE embeddings ``(rna, atac)``; ``paired=True`` is its paired mode (cells matched by obs name, scGLUE's
    ``PairedSCGLUEModel`` with its cross-modal terms on the pairs; before 2026-12-05's thirty-seventh session the
    default model, which reads the pairing only to fill batches)."""
    show_progress()
    genes = pd.read_csv(genes_path, sep="\t").drop_duplicates("gene_name").set_index("gene_name")
    rna = rna[:, rna.var_names.isin(genes.index)].copy()
    g = genes.loc[rna.var_names]
    rna.var["chrom"], rna.var["chromStart"], rna.var["chromEnd"] = g["chrom"].values, g["start"].values, g["end"].values
    rna.var["strand"] = g["strand"].values
    rna.layers["counts"] = rna.X.copy()
    sc.pp.highly_variable_genes(rna, n_top_genes=2000, flavor="seurat_v3")
    sc.pp.normalize_total(rna)
    sc.pp.log1p(rna)
    sc.pp.scale(rna)
    sc.tl.pca(rna, n_comps=100, svd_solver="auto", random_state=seed)

    atac.var["highly_variable"] = True
    scglue.data.lsi(atac, n_components=100, n_iter=15, random_state=seed)
    guidance = scglue.genomics.rna_anchored_guidance_graph(rna, atac)
    scglue.models.configure_dataset(rna, "NB", use_highly_variable=True, use_layer="counts", use_rep="X_pca",
                                    use_obs_names=paired)
    scglue.models.configure_dataset(atac, "NB", use_highly_variable=True, use_rep="X_lsi", use_obs_names=paired)
    hvf = chain(rna.var.query("highly_variable").index, atac.var.query("highly_variable").index)
    guidance_hvf = guidance.subgraph(hvf).copy()
    adatas = {"rna": rna, "atac": atac}
    fit_kws = {"max_epochs": max_epochs} if max_epochs else {}
    model = scglue.models.PairedSCGLUEModel if paired else scglue.models.SCGLUEModel
    if workdir:
        os.makedirs(workdir, exist_ok=True)
        glue = fit_stages(adatas, guidance_hvf, model, seed, fit_kws, workdir)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            glue = scglue.models.fit_SCGLUE(adatas, guidance_hvf, model=model, init_kws={"random_seed": seed},
                                            fit_kws={"directory": tmp, **fit_kws})
    return glue.encode_data("rna", rna), glue.encode_data("atac", atac)


def main():
    rerun_with_fixed_hash_seed()
    p = argparse.ArgumentParser()
    p.add_argument("rna"), p.add_argument("atac"), p.add_argument("genes"), p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--workdir", help="keep each finished stage here and resume from it")
    args = p.parse_args()
    z_rna, z_atac = fit_glue(ad.read_h5ad(args.rna), ad.read_h5ad(args.atac), args.genes, args.seed, args.max_epochs,
                             workdir=args.workdir)
    np.savez(args.out, rna=z_rna, atac=z_atac)


if __name__ == "__main__":
    main()
