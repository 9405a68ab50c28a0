"""scGLUE joint embedding of an RNA reference and an ATAC query (run in the anchors environment).

    python scglue_embed.py RNA.h5ad ATAC.h5ad GENES.tsv.gz OUT.npz --seed S [--max-epochs N]

RNA: raw counts in X. ATAC: peak counts in X, var columns chrom/chromStart/chromEnd. Genes: a
table with chrom/start/end/gene_name/strand (the ../shared/annotations TSV form). Follows the
scGLUE tutorial: seurat_v3 HVGs + PCA(100) for RNA, LSI(100) for ATAC, RNA-anchored guidance
graph, NB likelihoods, scGLUE's automatic training schedule unless ``--max-epochs`` caps each of its
two stages (pre-training, fine-tuning). Writes ``rna`` and ``atac`` embeddings.
"""
import argparse
import tempfile
from itertools import chain

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scglue


def main():
    p = argparse.ArgumentParser()
    p.add_argument("rna"), p.add_argument("atac"), p.add_argument("genes"), p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-epochs", type=int, default=None)
    args = p.parse_args()
    rna, atac = ad.read_h5ad(args.rna), ad.read_h5ad(args.atac)

    genes = pd.read_csv(args.genes, sep="\t").drop_duplicates("gene_name").set_index("gene_name")
    rna = rna[:, rna.var_names.isin(genes.index)].copy()
    g = genes.loc[rna.var_names]
    rna.var["chrom"], rna.var["chromStart"], rna.var["chromEnd"] = g["chrom"].values, g["start"].values, g["end"].values
    rna.var["strand"] = g["strand"].values
    rna.layers["counts"] = rna.X.copy()
    sc.pp.highly_variable_genes(rna, n_top_genes=2000, flavor="seurat_v3")
    sc.pp.normalize_total(rna)
    sc.pp.log1p(rna)
    sc.pp.scale(rna)
    sc.tl.pca(rna, n_comps=100, svd_solver="auto", random_state=args.seed)

    atac.var["highly_variable"] = True
    scglue.data.lsi(atac, n_components=100, n_iter=15, random_state=args.seed)
    guidance = scglue.genomics.rna_anchored_guidance_graph(rna, atac)
    scglue.models.configure_dataset(rna, "NB", use_highly_variable=True, use_layer="counts", use_rep="X_pca")
    scglue.models.configure_dataset(atac, "NB", use_highly_variable=True, use_rep="X_lsi")
    hvf = chain(rna.var.query("highly_variable").index, atac.var.query("highly_variable").index)
    guidance_hvf = guidance.subgraph(hvf).copy()
    with tempfile.TemporaryDirectory() as tmp:
        fit_kws = {"directory": tmp, **({"max_epochs": args.max_epochs} if args.max_epochs else {})}
        glue = scglue.models.fit_SCGLUE({"rna": rna, "atac": atac}, guidance_hvf,
                                        init_kws={"random_seed": args.seed}, fit_kws=fit_kws)
    np.savez(args.out, rna=glue.encode_data("rna", rna), atac=glue.encode_data("atac", atac))


if __name__ == "__main__":
    main()
