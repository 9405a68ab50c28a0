"""``omics-cl`` command line: argument parsing only; the work is done by ``omics_cl.tl``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from omics_cl import demos, models
from omics_cl.cli_io import (
    REPORTED,
    check_readable,
    check_writable,
    error_message,
    write_output,
)
from omics_cl.cli_map import add_map_parser

FRAGMENT_TILE_SIZE = 5000  # bp, the query features of --fragments without --peaks


def method_params(args, job: str) -> dict:
    """``--epochs`` and every ``--set KEY=VALUE`` (values read as JSON, else as text), checked against the
    method's config before any data is read."""
    params = {}
    if getattr(args, "epochs", None) is not None:
        params["epochs"] = args.epochs
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    method = models.get(args.method, job)
    if method.train is None:
        params.pop("epochs", None)  # untrained methods (pca) ignore --epochs
    try:
        models.configure(method, **params)
    except TypeError as err:
        raise ValueError(f"--set: {err}") from None
    return params


def cmd_cluster(args) -> int:

    from omics_cl import metrics, tl

    params = method_params(args, "cluster")
    src, out = Path(args.input), Path(args.out)
    check_paths([src], out)
    adata = read_input(src)
    if args.label_key is not None and args.label_key not in adata.obs:
        raise ValueError(f"label key {args.label_key!r} not in obs; columns: {list(adata.obs.columns)}")
    record = tl.cluster(adata, method=args.method, n_clusters=args.n_clusters, resolution=args.resolution,
                        seed=args.seed, layer=args.layer, n_top_genes=args.n_top_genes,
                        progress=not args.no_progress, **params)
    if models.get(args.method, "cluster").self_clustering:
        how = ("K estimated by Leiden on the pretrained latent" if record["params"]["k_estimated"] else "K given")
        how += f"; memberships obsm['{args.method}_membership']"
    else:
        how = f"Leiden resolution {record['resolution']:.4g}"
    print(f"{args.method}: {record['n_clusters']} clusters ({how}), "
          f"embedding obsm['X_{args.method}'], clusters obs['{args.method}_cluster']")
    if args.label_key is not None:
        s = metrics.clustering_scores(adata.obs[args.label_key], adata.obs[f"{args.method}_cluster"],
                                      exclude=args.exclude_label)
        print(demos.markdown_table([{"method": args.method, "protocol": record["protocol"],
                                     "n_clusters": record["n_clusters"], **s, "seconds": record["train_seconds"]}],
                                   demos.CLUSTER_COLUMNS))
    write_output(adata, out)
    print(f"wrote {out}")
    return 0


def read_input(path, kind: str = "h5ad"):
    """An input AnnData (``h5ad``) or MuData (``h5mu``); a file that cannot be read (truncated, not HDF5, not
    an AnnData) becomes a ``ValueError`` naming it, so the CLI ends with one line and exit status 2."""
    import anndata as ad
    import mudata as md

    reader = ad.read_h5ad if kind == "h5ad" else md.read_h5mu
    try:
        return reader(path)
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"cannot read {path} as .{kind} ({type(err).__name__}: {err}); is the file complete?") from None


def check_paths(inputs: list[Path], out: Path) -> None:
    for src in inputs:
        if not src.is_file():
            raise ValueError(f"input file {src} not found")
        if out.resolve() == src.resolve():
            raise ValueError(f"--out must differ from the input {src}; omics-cl never overwrites its input")
        check_readable(src)
    if not out.resolve().parent.is_dir():
        raise ValueError(f"output directory {out.resolve().parent} does not exist")
    check_writable(out.resolve().parent)


def check_paired_args(args, out: Path, context: str = "") -> None:
    """Exactly one paired input (``--mudata``, ``--multiome``, or ``--rna`` with ``--atac``), its files readable
    and ``out`` writable; ``context`` prefixes the error."""
    given = [args.mudata is not None, args.multiome is not None, args.rna is not None or args.atac is not None]
    if sum(given) != 1 or (args.rna is None) != (args.atac is None):
        raise ValueError(f"{context}give one of --mudata, --multiome, or both --rna and --atac")
    check_paths([Path(p) for p in (args.mudata, args.multiome, args.rna, args.atac) if p], out)


def read_paired(args):
    """The MuData of the paired input checked by :func:`check_paired_args`."""
    import mudata as md

    from omics_cl import io

    if args.mudata:
        return read_input(args.mudata, "h5mu")
    if args.multiome:
        return io.read_10x_multiome(args.multiome)
    return md.MuData({"rna": read_input(args.rna), "atac": read_input(args.atac)})


def cmd_transfer(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from omics_cl import io, metrics, pl, pp, tl

    params = method_params(args, "transfer")
    out = Path(args.out)
    if (args.atac is None) == (args.fragments is None):
        raise ValueError("give exactly one of --atac and --fragments")
    if args.fragments is None and (args.peaks or args.barcodes):
        raise ValueError("--peaks and --barcodes go with --fragments")
    optional = (args.gene_activity, args.peaks, args.barcodes)
    check_paths([Path(p) for p in (args.rna, args.atac or args.fragments, *optional) if p], out)
    if (args.annotation is None) == (args.gene_activity is None):
        raise ValueError("give exactly one of --annotation and --gene-activity")
    rna = read_input(args.rna)
    if args.label_key not in rna.obs:
        raise ValueError(f"label column {args.label_key!r} not in the RNA reference's obs; columns: "
                         f"{list(rna.obs.columns)}")
    if args.fragments:
        atac = io.read_fragments(args.fragments, peaks=args.peaks, barcodes=args.barcodes,
                                 tile_size=None if args.peaks else FRAGMENT_TILE_SIZE)
    else:
        atac = read_input(args.atac)
    if args.query_label_key is not None and args.query_label_key not in atac.obs:
        raise ValueError(f"--query-label-key {args.query_label_key!r} not in the ATAC obs; columns: "
                         f"{list(atac.obs.columns)}")
    activity = read_input(args.gene_activity) if args.gene_activity else None
    if activity is None and args.fragments:
        activity = io.gene_activity_from_fragments(args.fragments, args.annotation, barcodes=atac.obs_names)
    elif activity is None:
        activity = pp.gene_activity(atac, args.annotation, layer=args.atac_layer)
    record = tl.transfer_labels(rna, atac, args.label_key, gene_activity=activity, rna_layer=args.rna_layer,
                                atac_layer=args.atac_layer, seed=args.seed, progress=not args.no_progress,
                                method=args.method, save_model=args.save_model, **params)
    n_novel = int(atac.obs["omics_cl_is_novel"].sum())
    print(f"{args.method}: {atac.n_obs} ATAC cells labelled from {len(record['classes'])} reference types "
          f"({record['n_unlabelled_reference_cells']} unlabelled reference cells left out); {n_novel} flagged novel "
          f"(novelty > {record['novelty_threshold']:.3f}, Otsu threshold)")
    query_key = args.query_label_key
    table = None
    if query_key is not None:
        table = tl.check_annotations(atac, query_key, gene_activity=activity)
        truth = atac.obs[query_key].astype(str).to_numpy()
        known = atac.obs[query_key].notna().to_numpy() & atac.obs[query_key].astype(str).isin(record["classes"])
        pred = atac.obs["omics_cl_label"].astype(str).to_numpy()
        print(f"against {query_key}: accuracy {np.mean(truth[known] == pred[known]):.3f}, macro-F1 "
              f"{metrics.macro_f1(truth[known], pred[known]):.3f} on {known.sum()} cells of reference types; "
              f"{int(atac.obs['omics_cl_annotation_flag'].sum())} confident disagreements in {len(table)} groups")
    if args.report:
        report = Path(args.report)
        report.mkdir(parents=True, exist_ok=True)
        pl.novelty_distribution(atac, save=str(report / "novelty_distribution.png"))
        pl.transfer_umap(rna, atac, args.label_key, seed=args.seed, save=str(report / "umap_joint.png"))
        if query_key is not None:
            pl.confusion_matrix(atac.obs[query_key].astype(str), atac.obs["omics_cl_label"].astype(str),
                                save=str(report / "confusion_matrix.png"))
            table.to_csv(report / "annotation_check.csv", index=False)
        atac.obs[[c for c in atac.obs if c.startswith("omics_cl_")]].to_csv(report / "labels.csv")
        print(f"report in {report}")
    write_output(atac, out)
    print(f"wrote {out}")
    return 0


def cmd_integrate(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from omics_cl import get, metrics, pl, tl

    params = method_params(args, "integrate")
    name = args.method
    out = Path(args.out)
    check_paired_args(args, out)
    mdata = read_paired(args)
    labels = get.obs_column(mdata, args.label_key) if args.label_key else None  # fails before any training
    record = tl.integrate(mdata, method=name, n_clusters=args.n_clusters, resolution=args.resolution, seed=args.seed,
                          rna_layer=args.rna_layer, atac_layer=args.atac_layer, n_top_genes=args.n_top_genes,
                          n_top_peaks=args.n_top_peaks, progress=not args.no_progress, save_model=args.save_model,
                          **params)
    print(f"{name}: {mdata.n_obs} paired cells, {record['n_genes']} genes + {record['n_peaks']} peaks; "
          f"{record['n_clusters']} clusters (resolution {record['resolution']:.4g}); embedding obsm['X_{name}'], "
          f"clusters obs['{name}_cluster']")
    if labels is not None:
        s = metrics.clustering_scores(labels, mdata.obs[f"{name}_cluster"], exclude=args.exclude_label)
        print(demos.markdown_table([{"method": name, "protocol": record["protocol"], "n_clusters": record["n_clusters"],
                                     **s, "seconds": record["train_seconds"]}], demos.CLUSTER_COLUMNS))
    if args.report:
        report = Path(args.report)
        report.mkdir(parents=True, exist_ok=True)
        colors = [f"{name}_cluster"] + ([args.label_key] if labels is not None else [])
        pl.umap(mdata, f"X_{name}", colors, seed=args.seed, save=str(report / "umap.png"))
        print(f"report in {report}")
    write_output(mdata, out)
    print(f"wrote {out}")
    return 0


def cmd_demo(args) -> int:
    demos.run(args.job, out=args.out, n_cells=args.n_cells, epochs=args.epochs, seed=args.seed,
              progress=not args.no_progress)
    return 0


def cmd_datasets(args) -> int:
    from omics_cl import datasets

    print(f"data directory: {datasets.data_dir()} (set ${datasets.DATA_DIR_VAR} to change)")
    for name, m in datasets.manifests().items():
        print(f"{name}: labels {', '.join(m.label_keys)} (default {m.default_label_key}); licence {m.licence}")
        for f in m.files:
            _, status = datasets.file_status(name, f.role)
            print(f"  {f.role:16s} {f.path:50s} {status}")
    return 0


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
                       description="Embed cells and cluster them with Leiden, or let a self-clustering method "
                                   "(scinno, siamese) cluster them (argmax of soft memberships). The input "
                                   "file is never modified; the output is written atomically.")
    c.add_argument("input", metavar="IN.h5ad", help="AnnData with raw integer counts in X (or --layer)")
    add_method_arguments(c, "cluster", "cae")
    c.add_argument("--out", required=True, metavar="OUT.h5ad", help="output file (must differ from the input)")
    c.add_argument("--n-clusters", type=int, default=None,
                   help="number of clusters (pca/ae/cae: Leiden resolution found by bisection); "
                        "without it scinno/siamese estimate K by Leiden on their pretrained latent")
    c.add_argument("--resolution", type=float, default=1.0, help="Leiden resolution when --n-clusters is not given")
    c.add_argument("--label-key", default=None, help="obs column with known labels: print NMI/ARI/ACC (scoring only)")
    c.add_argument("--exclude-label", action="append", default=[], metavar="VALUE",
                   help="label value left out of scoring, e.g. Mis (repeatable)")
    c.add_argument("--layer", default=None, help="layer holding raw counts (default: X)")
    c.add_argument("--n-top-genes", type=int, default=2000)
    c.add_argument("--seed", type=int, default=0)
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
    add_method_arguments(t, "transfer", "scncl")
    t.add_argument("--seed", type=int, default=0)
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
    i.add_argument("--no-progress", action="store_true")
    i.set_defaults(func=cmd_integrate)

    s = sub.add_parser("datasets", help="list registered datasets and whether their files are present and valid",
                       description="Lists data_manifests/ and checks each file's sha256 in the data directory.")
    s.set_defaults(func=cmd_datasets)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except REPORTED as err:
        print(f"omics-cl {args.command}: error: {error_message(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
