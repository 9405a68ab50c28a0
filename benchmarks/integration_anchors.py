"""The integration benchmark's anchors (muon's WNN, scvi-tools' MultiVI, scGLUE), each run by
``anchors/integration_embed.py`` in the anchors environment, and the names their kept embeddings go by."""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from common import scglue_stage_dir

from omics_cl import datasets

ANCHOR_METHODS = ("wnn", "multivi", "scglue")
ANCHORS = Path(__file__).resolve().parent / "anchors"
DATASET = "mop_snare_paired"


def anchor_cap(method, args):
    """The epoch cap an anchor runs under (None: its own schedule)."""
    return {"scglue": args.scglue_max_epochs, "multivi": args.multivi_max_epochs}.get(method)


def anchor_run_tags(method, args) -> dict:
    """What sets an anchor's embedding apart beyond its seed: its epoch cap and, for scGLUE, the model it trains
    (kept in each row and in the name of its kept embedding)."""
    if method not in ANCHOR_METHODS:
        return {}
    model = {"scglue_model": "PairedSCGLUEModel"} if method == "scglue" else {}
    return {"max_epochs": anchor_cap(method, args), **model}


def embedding_name(method, seed, args) -> str:
    """The name an embedding is kept under in ``--embeddings``: an anchor's cap and model are part of it, so a capped,
    a full or another model's run never reads another's embedding."""
    tags = anchor_run_tags(method, args)
    cap = f"_max{tags['max_epochs']}" if tags.get("max_epochs") else ""
    model = "_paired" if "scglue_model" in tags else ""
    return f"{args.design}_{method}{model}{cap}_{seed}"


def anchor(method, seed, args):
    python = args.anchors_python or os.environ.get("OMICS_CL_ANCHORS_PYTHON")
    if not python:
        raise SystemExit(f"{method} runs in the anchors environment: pass --anchors-python or set "
                         "OMICS_CL_ANCHORS_PYTHON (see benchmarks/anchors/README.md)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.npz"
        cmd = [python, str(ANCHORS / "integration_embed.py"), method, str(datasets.path(DATASET, "rna")),
               str(datasets.path(DATASET, "atac")), str(out), "--seed", str(seed)]
        if method == "scglue":
            cmd += ["--genes", str(datasets.annotation_path("mm10_ensembl_genes.tsv.gz"))]
        cap = anchor_cap(method, args)
        if cap:
            cmd += ["--max-epochs", str(cap)]
        workdir = scglue_stage_dir(args.scglue_workdir, f"seed{seed}", cap) if method == "scglue" else None
        if workdir:
            cmd += ["--workdir", workdir]
        subprocess.run(cmd, check=True)
        z = dict(np.load(out))
    if method == "wnn":
        z["graph"] = sp.csr_matrix((z.pop("graph_data"), z.pop("graph_indices"), z.pop("graph_indptr")),
                                   shape=tuple(z.pop("graph_shape")))
        z.pop("rna"), z.pop("atac")  # PCA and LSI: not one shared space, so no matching scores
    return z
