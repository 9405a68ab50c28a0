"""Paired RNA+ATAC anchors for benchmarks/integration.py (run in the anchors environment).

    python integration_embed.py {wnn,multivi,scglue} RNA.h5ad ATAC.h5ad OUT.npz --seed S
        [--genes GENES.tsv.gz] [--max-epochs N] [--workdir DIR]

RNA and ATAC hold raw counts of the same cells in the same order. Each method follows its own
tutorial and writes to OUT.npz:

- ``wnn`` (muon): RNA log-normalised, 2,000 seurat_v3 HVGs, scaled, PCA(50); ATAC TF-IDF + LSI(50)
  without the first (depth) component; per-modality kNN graphs and muon's weighted-nearest-neighbour
  graph. Writes ``graph_data/indices/indptr/shape`` (the WNN connectivities; WNN gives a graph, not an
  embedding) and ``rna`` / ``atac`` (PCA and LSI, for reference only).
- ``multivi`` (scvi-tools): a MuData of both, features seen in at least 1% of cells kept (the tutorial's
  filter), MultiVI with its default training schedule (``--max-epochs`` caps it). Writes
  ``joint`` and the modality latents ``rna`` / ``atac``.
- ``scglue``: the paired mode (``use_obs_names=True``, ``PairedSCGLUEModel``; the default model before
  2026-12-05's thirty-seventh session) of scGLUE with seurat_v3 HVGs + PCA(100) and
  LSI(100), an RNA-anchored guidance graph from ``--genes``; its automatic schedule unless
  ``--max-epochs`` caps each of its two stages. Writes ``rna``, ``atac`` and ``joint`` (their mean:
  both live in one space).
"""
import argparse

import anndata as ad
import numpy as np
import scanpy as sc
import scipy.sparse as sp


def wnn(rna, atac, args):
    import muon as mu

    sc.pp.highly_variable_genes(rna, n_top_genes=2000, flavor="seurat_v3")
    sc.pp.normalize_total(rna, target_sum=1e4)
    sc.pp.log1p(rna)
    rna = rna[:, rna.var["highly_variable"]].copy()
    sc.pp.scale(rna, max_value=10)
    sc.tl.pca(rna, n_comps=50, random_state=args.seed)
    sc.pp.neighbors(rna, n_neighbors=20, random_state=args.seed)
    mu.atac.pp.tfidf(atac, scale_factor=1e4)
    mu.atac.tl.lsi(atac, n_comps=51)
    atac.obsm["X_lsi"] = atac.obsm["X_lsi"][:, 1:]
    sc.pp.neighbors(atac, use_rep="X_lsi", n_neighbors=20, random_state=args.seed)
    mdata = mu.MuData({"rna": rna, "atac": atac})
    mu.pp.neighbors(mdata, key_added="wnn", random_state=args.seed)
    g = sp.csr_matrix(mdata.obsp["wnn_connectivities"])
    return {"graph_data": g.data, "graph_indices": g.indices, "graph_indptr": g.indptr,
            "graph_shape": np.array(g.shape), "rna": rna.obsm["X_pca"], "atac": atac.obsm["X_lsi"]}


def multivi(rna, atac, args):
    import mudata as md
    import scvi

    scvi.settings.seed = args.seed
    for a in (rna, atac):
        a.X = sp.csr_matrix(a.X, dtype=np.float32)
        sc.pp.filter_genes(a, min_cells=int(a.n_obs * 0.01))
    mdata = md.MuData({"rna": rna, "atac": atac})
    scvi.model.MULTIVI.setup_mudata(mdata, modalities={"rna_layer": "rna", "atac_layer": "atac"})
    model = scvi.model.MULTIVI(mdata, n_genes=rna.n_vars, n_regions=atac.n_vars)
    model.train(**({"max_epochs": args.max_epochs} if args.max_epochs else {}))
    print(f"multivi: {rna.n_vars} genes, {atac.n_vars} peaks, {len(model.history['elbo_train'])} epochs", flush=True)
    return {"joint": model.get_latent_representation(),
            "rna": model.get_latent_representation(modality="expression"),
            "atac": model.get_latent_representation(modality="accessibility")}


def scglue(rna, atac, args):
    from scglue_embed import fit_glue  # same folder

    z_rna, z_atac = fit_glue(rna, atac, args.genes, args.seed, args.max_epochs, paired=True, workdir=args.workdir)
    return {"rna": z_rna, "atac": z_atac, "joint": (z_rna + z_atac) / 2}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("method", choices=["wnn", "multivi", "scglue"])
    p.add_argument("rna"), p.add_argument("atac"), p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--genes", help="gene annotation table (scglue)")
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--workdir", help="scglue: keep each finished training stage here and resume from it")
    args = p.parse_args()
    if args.method == "scglue":
        from scglue_resume import rerun_with_fixed_hash_seed  # same folder

        rerun_with_fixed_hash_seed()
    rna, atac = ad.read_h5ad(args.rna), ad.read_h5ad(args.atac)
    if not np.array_equal(rna.obs_names, atac.obs_names):
        raise SystemExit("RNA and ATAC must hold the same cells in the same order")
    out = {"wnn": wnn, "multivi": multivi, "scglue": scglue}[args.method](rna, atac, args)
    np.savez(args.out, **{k: np.asarray(v) for k, v in out.items()})


if __name__ == "__main__":
    main()
