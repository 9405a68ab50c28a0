"""``omics-cl map``: apply a saved model to new cells without training: label a new ATAC query with a model
saved by ``omics-cl transfer --save-model``, or embed and cluster new paired cells with one saved by
``omics-cl integrate --save-model`` (the job is read from the model's ``model.json``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from omics_cl.checks import check_key_added
from omics_cl.cli.inputs import (
    CLUSTER_KEYS,
    TRANSFER_KEYS,
    add_key_argument,
    check_paired_args,
    check_paths,
    read_input,
    read_paired,
)
from omics_cl.cli_io import write_output

TRANSFER_ONLY = ("--annotation", "--gene-activity", "--novelty-threshold", "--novelty-rate")
NOVELTY_RATE_HELP = ("share of the query flagged novel (default 0.1: with no unseen type, the false-alarm rate), or "
                     "otsu: the rule before 2026-12-02 (Otsu threshold, low label support)")
INTEGRATE_ONLY = ("--rna", "--mudata", "--multiome", "--rna-layer", "--n-clusters", "--resolution", "--pca")


def novelty_threshold(value: str) -> str | float:
    """``--novelty-threshold``: ``query``, ``model`` or a number."""
    if value in ("query", "model"):
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected query, model or a number, got {value!r}") from None


def novelty_rate(value: str) -> str | float:
    """``--novelty-rate``: a share in [0, 1) or ``otsu`` (the Otsu rule)."""
    if value == "otsu":
        return value
    try:
        rate = float(value)
    except ValueError:
        rate = -1.0
    if not 0 <= rate < 1:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1) or otsu, got {value!r}")
    return rate


def novelty_rate_keywords(value: str | float | None) -> dict:
    """The ``novelty_rate`` keyword for ``tl`` from a parsed ``--novelty-rate`` (none when not given: the default)."""
    return {} if value is None else {"novelty_rate": None if value == "otsu" else value}


def refuse(args, flags: tuple[str, ...], job: str) -> None:
    """``ValueError`` naming the given ``flags`` that do not apply to a ``job`` model."""
    given = [flag for flag in flags if getattr(args, flag[2:].replace("-", "_")) is not None]
    if given:
        raise ValueError(f"{', '.join(given)} do not apply to the {job} model in {args.model}")


def cmd_map(args) -> int:
    from omics_cl.core.saved_model import read_model

    check_key_added(args.key_added)
    job = read_model(args.model).meta.get("job")  # a missing or corrupt model fails before the data are read
    if job == "integrate":
        refuse(args, TRANSFER_ONLY, job)
        return map_integration(args)
    if job != "transfer":
        raise ValueError(f"{args.model} holds a {job!r} model; omics-cl map applies transfer and integrate models")
    refuse(args, INTEGRATE_ONLY, job)
    return map_transfer(args)


def map_transfer(args) -> int:
    from omics_cl import get, pp, tl

    out = Path(args.out)
    if args.atac is None:
        raise ValueError("a transfer model maps an ATAC query: give --atac")
    check_paths([Path(p) for p in (args.atac, args.gene_activity) if p], out)
    if (args.annotation is None) == (args.gene_activity is None):
        raise ValueError("give exactly one of --annotation and --gene-activity")
    tl.load_transfer_model(args.model)
    atac = read_input(args.atac)
    if args.gene_activity:
        activity = read_input(args.gene_activity)
    else:
        activity = pp.gene_activity(atac, args.annotation, layer=args.atac_layer)
    record = tl.map_query(atac, args.model, gene_activity=activity, atac_layer=args.atac_layer,
                          novelty_threshold=args.novelty_threshold or "query", key_added=args.key_added,
                          **novelty_rate_keywords(args.novelty_rate))
    missing = f"; {record['n_missing_genes']} model genes missing (zero-filled)" if record["n_missing_genes"] else ""
    is_novel = get.transfer_column(atac, "is_novel")
    print(f"{record['method']}: {atac.n_obs} ATAC cells labelled with the model in {args.model} "
          f"({len(record['classes'])} reference types{missing}); {int(atac.obs[is_novel].sum())} flagged "
          f"novel (novelty > {record['novelty_threshold']:.3f}, {record['novelty_rule']} rule, threshold from "
          f"{record['novelty_threshold_from']})")
    write_output(atac, out)
    print(f"wrote {out}")
    return 0


def map_integration(args) -> int:
    from omics_cl import tl

    out = Path(args.out)
    check_paired_args(args, out, "an integration model maps paired cells: ")
    tl.load_integration_model(args.model)
    mdata = read_paired(args)
    record = tl.map_paired(mdata, args.model, n_clusters=args.n_clusters,
                           resolution=1.0 if args.resolution is None else args.resolution, rna_layer=args.rna_layer,
                           atac_layer=args.atac_layer, pca=args.pca or "project", key_added=args.key_added)
    method, key = record["method"], args.key_added or record["method"]
    missing = "".join(f"; {record[f'n_missing_{what}']} model {what} missing (zero-filled)"
                      for what in ("genes", "peaks") if record[f"n_missing_{what}"])
    print(f"{method}: {mdata.n_obs} paired cells embedded with the model in {args.model} ({record['n_genes']} genes + "
          f"{record['n_peaks']} peaks{missing}); {record['n_clusters']} clusters (resolution "
          f"{record['resolution']:.4g}); embedding obsm['X_{key}'], clusters obs['{key}_cluster']")
    write_output(mdata, out)
    print(f"wrote {out}")
    return 0


def add_map_parser(sub) -> None:
    """The ``map`` subcommand."""
    m = sub.add_parser("map", help="apply a saved transfer or integration model to new cells (no training)",
                       description="Transfer model (omics-cl transfer --save-model): label every ATAC cell of a new "
                                   "query with the saved encoder and reference vote; the query's LSI, peak-space "
                                   "classifier, clusters and novelty threshold are fitted to the new query as the "
                                   "original run did to its query. Integration model (omics-cl integrate "
                                   "--save-model): embed new paired cells with the saved encoders and "
                                   "cross-attention context, put their RNA on the saved PCA axes, fuse and cluster "
                                   "them as integrate does. Genes and peaks are matched by name. Inputs are never "
                                   "modified; the output is written atomically.")
    m.add_argument("--model", required=True, metavar="DIR",
                   help="directory written by omics-cl transfer or integrate --save-model")
    m.add_argument("--atac", default=None, metavar="A.h5ad",
                   help="peak counts: the ATAC query (transfer), or the ATAC of the paired cells (integrate)")
    m.add_argument("--out", required=True, metavar="OUT",
                   help="labelled query .h5ad (transfer) or .h5mu (integrate); must differ from the inputs")
    m.add_argument("--atac-layer", default=None)
    add_key_argument(m, f"transfer models: {TRANSFER_KEYS}; integration models: {CLUSTER_KEYS}")
    t = m.add_argument_group("transfer models")
    t.add_argument("--annotation", default=None, metavar="GENES",
                   help="gene annotation (GTF, GFF3, BED or TSV, optionally gzipped) for the gene activity")
    t.add_argument("--gene-activity", default=None, metavar="GA.h5ad",
                   help="precomputed cells x genes gene activity of the query, instead of --annotation")
    t.add_argument("--novelty-threshold", type=novelty_threshold, default=None,
                   help="query: chosen on this query (default, as transfer); model: the training run's "
                        "threshold and rule; or a number")
    t.add_argument("--novelty-rate", type=novelty_rate, default=None,
                   help=NOVELTY_RATE_HELP)
    i = m.add_argument_group("integration models")
    i.add_argument("--mudata", default=None, metavar="M.h5mu", help="MuData with modalities rna and atac")
    i.add_argument("--multiome", default=None, metavar="ARC.h5",
                   help="Cell Ranger ARC filtered_feature_bc_matrix.h5, instead of --mudata")
    i.add_argument("--rna", default=None, metavar="R.h5ad", help="RNA counts of the cells in --atac")
    i.add_argument("--rna-layer", default=None)
    i.add_argument("--n-clusters", type=int, default=None, help="find the resolution giving this many clusters")
    i.add_argument("--resolution", type=float, default=None, help="Leiden resolution (default 1)")
    i.add_argument("--pca", choices=("project", "refit"), default=None,
                   help="RNA PCA view: project the cells onto the saved loadings (default) or refit it to them")
    m.set_defaults(func=cmd_map)
