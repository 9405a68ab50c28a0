"""Check that a scGLUE run stopped after an epoch and resumed ends with the embeddings of an uninterrupted run.

    python scglue_resume_check.py RNA.h5ad ATAC.h5ad GENES.tsv.gz [--cells 500] [--epochs 4] [--stop-after 2]

On the first ``--cells`` cells of a paired data set, scGLUE (``integration_embed.py scglue``, the paired model, and
``scglue_embed.py``, the unpaired one) runs ``--epochs`` epochs per stage once straight through and once in a
workdir where each run ends itself right after epoch ``--stop-after`` of a stage, restarted until it finishes (the
pre-training stops once, the fine-tuning once). Exits 1 unless every embedding is the same bit for bit.
"""
import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import anndata as ad
import numpy as np
from scglue_resume import STOP_AFTER, STOPPED  # same folder

HERE = Path(__file__).resolve().parent


def run(cmd, workdir, stop_after=None):
    """Run ``cmd --workdir workdir`` until it finishes; returns how many times it stopped itself."""
    env = dict(os.environ, **({STOP_AFTER: str(stop_after)} if stop_after else {}))
    for stops in range(4):
        done = subprocess.run([*cmd, "--workdir", workdir], env=env, stdout=subprocess.DEVNULL)
        if done.returncode == 0:
            return stops
        if done.returncode != STOPPED:
            raise SystemExit(f"{cmd[1]} failed with exit code {done.returncode}")
    raise SystemExit(f"{cmd[1]} did not finish after 4 restarts")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("rna"), p.add_argument("atac"), p.add_argument("genes")
    p.add_argument("--cells", type=int, default=500)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--stop-after", type=int, default=2)
    args = p.parse_args()
    same = True
    with tempfile.TemporaryDirectory() as tmp:
        ad.read_h5ad(args.rna)[: args.cells].copy().write_h5ad(f"{tmp}/rna.h5ad")
        ad.read_h5ad(args.atac)[: args.cells].copy().write_h5ad(f"{tmp}/atac.h5ad")
        flags = ["--seed", "0", "--max-epochs", str(args.epochs)]
        models = {
            "paired": lambda out: [sys.executable, str(HERE / "integration_embed.py"), "scglue", f"{tmp}/rna.h5ad",
                                   f"{tmp}/atac.h5ad", out, "--genes", args.genes, *flags],
            "unpaired": lambda out: [sys.executable, str(HERE / "scglue_embed.py"), f"{tmp}/rna.h5ad",
                                     f"{tmp}/atac.h5ad", args.genes, out, *flags],
        }
        for name, cmd in models.items():
            run(cmd(f"{tmp}/{name}_straight.npz"), f"{tmp}/{name}_straight")
            stops = run(cmd(f"{tmp}/{name}_resumed.npz"), f"{tmp}/{name}_resumed", args.stop_after)
            straight, resumed = np.load(f"{tmp}/{name}_straight.npz"), np.load(f"{tmp}/{name}_resumed.npz")
            for key in straight.files:
                equal = np.array_equal(straight[key], resumed[key])
                same &= equal
                print(f"{name} {key}: stopped {stops} times, {'identical' if equal else 'DIFFERENT'} "
                      f"(max abs difference {np.abs(straight[key] - resumed[key]).max():.3g})", flush=True)
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
