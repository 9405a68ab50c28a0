"""The ``omics-cl`` argument parser: subcommands, their options and help."""
from __future__ import annotations

import argparse

from omics_cl import demos, models
from omics_cl.cli.commands import (
    FRAGMENT_TILE_SIZE,
    cmd_cluster,
    cmd_datasets,
    cmd_demo,
    cmd_integrate,
    cmd_transfer,
)
from omics_cl.cli.inputs import CLUSTER_KEYS, TRANSFER_KEYS, add_key_argument
from omics_cl.cli.map import NOVELTY_RATE_HELP, add_map_parser, novelty_rate


def positive_number(value: str) -> float:
    """A finite number > 0 (``--tfidf-scale``)."""
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return number


def add_method_arguments(parser: argparse.ArgumentParser, job: str, default: str) -> None:
    """``--method`` (choices from the registry), ``--epochs`` and ``--set``, with each method's defaults."""
    choices = models.names(job)
    epochs = ", ".join(f"{name} {models.METHODS[name].train.epochs}" for name in choices
                       if models.METHODS[name].train is not None)
    parser.add_argument("--method", choices=choices, default=default,
                        help="; ".join(f"{n}: {models.METHODS[n].summary}" for n in choices))
    parser.add_argument("--epochs", type=int, default=None, help=f"training epochs (defaults: {epochs})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="set a parameter of the method's config or training config, e.g. --set temperature=0.1 "
                             "--set hidden=[512,256] (repeatable; checked before any data is read)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omics-cl", description="Contrastive learning for single-cell omics.")
    sub = parser.add_subparsers(dest="command", required=True)

    c = sub.add_parser("cluster", help="embed and cluster the cells of an .h5ad of raw counts",
                       description="Embed cells and cluster them with Leiden (for the self-clustering methods "
                                   "scinno and siamese: on their embedding fused with PCA views; --set "
                                   "readout='\"argmax\"' gives the argmax of their soft memberships). The input "
                                   "file is never modified; the output is written atomically.")
    c.add_argument("input", metavar="IN.h5ad", help="AnnData with raw integer counts in X (or --layer)")
    add_method_arguments(c, "cluster", "cae")
    c.add_argument("--out", required=True, metavar="OUT.h5ad", help="output file (must differ from the input)")
    c.add_argument("--n-clusters", type=int, default=None,
                   help="number of clusters (pca/ae/cae: Leiden resolution found by bisection); "
                        "without it scinno/siamese estimate K by Leiden on their pretrained latent")
    c.add_argument("--resolution", type=float, default=1.0, help="Leiden resolution when --n-clusters is not given")
    c.add_argument("--leiden-consensus", type=int, default=None, metavar="RUNS",
                   help="Leiden runs pooled into the clusters (default: 10 up to 100,000 cells, else 1; 1: one run)")
    c.add_argument("--label-key", default=None, help="obs column with known labels: print NMI/ARI/ACC (scoring only)")
    c.add_argument("--exclude-label", action="append", default=[], metavar="VALUE",
                   help="label value left out of scoring, e.g. Mis (repeatable)")
    c.add_argument("--layer", default=None, help="layer holding raw counts (default: X)")
    c.add_argument("--backed", action="store_true",
                   help="leave X in the file and stream it through training in chunks (methods that stream: "
                        + ", ".join(models.streaming_names()) + "); for files larger than memory")
    c.add_argument("--n-top-genes", type=int, default=2000)
    c.add_argument("--seed", type=int, default=0)
    add_key_argument(c, CLUSTER_KEYS)
    c.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    c.set_defaults(func=cmd_cluster)

    d = sub.add_parser("demo", help="try a job on small real data: clustering (default), transfer or integrate",
                       description="cluster (default): pca, ae and cae on scanpy's bundled 700 PBMCs (no data "
                                   "directory needed), NMI/ARI/ACC against bulk_labels under both protocols. "
                                   "transfer: RNA of half of a seeded mop_snare_paired subsample (Astro left out) "
                                   "labels the ATAC of the other half; accuracy, macro-F1 and novelty against the "
                                   "held-back labels, with a logistic-regression baseline. integrate: scI2CL on "
                                   "both modalities of a subsample, ARI/NMI/ACC against RNA PCA + Leiden. Labels "
                                   "only score the results.")
    d.add_argument("--job", choices=demos.JOBS, default="cluster")
    d.add_argument("--out", default=None, metavar="DIR",
                   help="directory for the outputs, plots and scores.md (transfer/integrate default: "
                        "omics-cl-demo-JOB; cluster writes only when given)")
    d.add_argument("--n-cells", type=int, default=None,
                   help="cells subsampled from mop_snare_paired (defaults: " + ", ".join(
                       f"{job} {v['n_cells']}" for job, v in demos.DEFAULTS.items() if v["n_cells"]) + ")")
    d.add_argument("--epochs", type=int, default=None,
                   help="training epochs (defaults: " + ", ".join(f"{job} {v['epochs']}" for job, v in
                                                                 demos.DEFAULTS.items()) + ")")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("transfer", help="transfer labels from an RNA reference to an ATAC query (scNCL)",
                       description="Label every ATAC cell from a labelled scRNA-seq reference, score novelty, and "
                                   "(with --query-label-key) check the query's own labels. Inputs are never "
                                   "modified; the output is written atomically.")
    t.add_argument("--rna", required=True, metavar="REF.h5ad", help="reference AnnData, raw counts, gene names")
    t.add_argument("--atac", default=None, metavar="QUERY.h5ad", help="query AnnData, peak counts")
    t.add_argument("--fragments", default=None, metavar="FRAGS.tsv.gz",
                   help="query as an ATAC fragment file instead of --atac: Tn5 insertions counted in --peaks, else "
                        f"in {FRAGMENT_TILE_SIZE} bp tiles; gene activity counted from the fragments")
    t.add_argument("--peaks", default=None, metavar="PEAKS.bed", help="peaks for --fragments (BED)")
    t.add_argument("--barcodes", default=None, metavar="BARCODES.tsv",
                   help="cell barcodes for --fragments, one per line (e.g. Cell Ranger's barcodes.tsv.gz); "
                        "without it every barcode in the file is a cell")
    t.add_argument("--label-key", required=True, help="obs column of the reference with the cell types")
    t.add_argument("--annotation", default=None, metavar="GENES",
                   help="gene annotation (GTF, GFF3, BED or TSV, optionally gzipped) for the gene activity")
    t.add_argument("--gene-activity", default=None, metavar="GA.h5ad",
                   help="precomputed cells x genes gene activity of the query, instead of --annotation")
    t.add_argument("--out", required=True, metavar="OUT.h5ad", help="annotated query (must differ from inputs)")
    t.add_argument("--query-label-key", default=None,
                   help="obs column of the query with atlas labels: score them and check them for errors")
    t.add_argument("--report", default=None, metavar="DIR",
                   help="write plots (novelty distribution, joint UMAP, confusion matrix) and CSV tables here")
    t.add_argument("--save-model", default=None, metavar="DIR",
                   help="save the trained model in this new directory, for omics-cl map")
    t.add_argument("--rna-layer", default=None)
    t.add_argument("--atac-layer", default=None)
    t.add_argument("--novelty-rate", type=novelty_rate, default=None,
                   help=NOVELTY_RATE_HELP)
    t.add_argument("--tfidf-scale", type=positive_number, default=None, metavar="SCALE",
                   help="scale inside the peaks' log1p(TF * IDF * scale) (default: adapted so that the median value "
                        "is 10; 10000: Signac's fixed factor)")
    t.add_argument("--scale-lsi", action="store_true",
                   help="standardise each component of the query's LSI (Signac's scale.embeddings; the default before "
                        "2026-12-06), instead of keeping their singular values' weights")
    t.add_argument("--learned-atac", action="store_true",
                   help="put a learned ATAC latent (peak-gene guided VAE; needs --annotation) beside the query's "
                        "LSI (about 4x slower)")
    add_method_arguments(t, "transfer", "scncl")
    t.add_argument("--seed", type=int, default=0)
    add_key_argument(t, f"{TRANSFER_KEYS}; with --query-label-key the check's obs NAME_check_annotation_flag")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_transfer)
    add_map_parser(sub)

    i = sub.add_parser("integrate", help="joint embedding and clusters of paired RNA + ATAC cells (scI2CL)",
                       description="Integrate paired RNA + ATAC counts of the same cells with scI2CL and cluster "
                                   "the joint embedding. Inputs are never modified; the output .h5mu is written "
                                   "atomically.")
    i.add_argument("--mudata", default=None, metavar="M.h5mu", help="MuData with modalities rna and atac")
    i.add_argument("--multiome", default=None, metavar="ARC.h5",
                   help="Cell Ranger ARC filtered_feature_bc_matrix.h5 (genes and peaks), instead of --mudata")
    i.add_argument("--rna", default=None, metavar="R.h5ad", help="RNA counts (instead of --mudata)")
    i.add_argument("--atac", default=None, metavar="A.h5ad", help="ATAC peak counts of the same cells")
    i.add_argument("--out", required=True, metavar="OUT.h5mu", help="output MuData (must differ from inputs)")
    i.add_argument("--n-clusters", type=int, default=None, help="find the resolution giving this many clusters")
    i.add_argument("--resolution", type=float, default=1.0)
    i.add_argument("--leiden-consensus", type=int, default=None, metavar="RUNS",
                   help="Leiden runs pooled into the clusters (default: 10 up to 100,000 cells, else 1; 1: one run)")
    i.add_argument("--label-key", default=None, help="obs column with known labels: scores and a UMAP (not used "
                                                     "for training)")
    i.add_argument("--exclude-label", action="append", default=[], metavar="VALUE",
                   help="label value left out of scoring, e.g. Mis (repeatable)")
    i.add_argument("--report", default=None, metavar="DIR", help="write UMAPs coloured by cluster and label here")
    i.add_argument("--save-model", default=None, metavar="DIR",
                   help="save the trained model in this new directory, for omics-cl map")
    i.add_argument("--rna-layer", default=None)
    i.add_argument("--atac-layer", default=None)
    i.add_argument("--n-top-genes", type=int, default=2000)
    i.add_argument("--n-top-peaks", type=int, default=10000)
    add_method_arguments(i, "integrate", "sci2cl")
    i.add_argument("--seed", type=int, default=0)
    add_key_argument(i, CLUSTER_KEYS)
    i.add_argument("--no-progress", action="store_true")
    i.set_defaults(func=cmd_integrate)

    s = sub.add_parser("datasets", help="list registered datasets and whether their files are present and valid",
                       description="Lists data_manifests/ and checks each file's sha256 in the data directory.")
    s.set_defaults(func=cmd_datasets)
    return parser
