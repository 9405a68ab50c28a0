"""scVI anchor for benchmarks/clustering.py (run in the anchors environment).

    python clustering_embed.py COUNTS.h5ad OUT.npz --seed S [--max-epochs N]

Follows the scvi-tools tutorial: 2,000 seurat_v3 HVGs on the raw counts (all genes when there
are fewer), ``SCVI`` with its defaults (10 latent dimensions, ZINB) and default training
schedule (``--max-epochs`` caps it). Writes the latent representation as ``z``.
"""
import argparse
import time

import anndata as ad
import numpy as np
import scanpy as sc
import scipy.sparse as sp


def main():
    p = argparse.ArgumentParser()
    p.add_argument("counts"), p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-epochs", type=int, default=None)
    args = p.parse_args()
    import scvi

    scvi.settings.seed = args.seed
    adata = ad.read_h5ad(args.counts)
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    if adata.n_vars > 2000:
        sc.pp.highly_variable_genes(adata, n_top_genes=2000, flavor="seurat_v3", subset=True)
    scvi.model.SCVI.setup_anndata(adata)
    model = scvi.model.SCVI(adata)
    start = time.perf_counter()
    model.train(**({"max_epochs": args.max_epochs} if args.max_epochs else {}))
    epochs = len(model.history["elbo_train"])
    print(f"scvi: {adata.n_obs} cells, {adata.n_vars} genes, {epochs} epochs, "
          f"{(time.perf_counter() - start) / epochs:.2f} s/epoch", flush=True)
    np.savez(args.out, z=model.get_latent_representation())


if __name__ == "__main__":
    main()
