"""``omics-cl map``: label a new ATAC query with a model saved by ``omics-cl transfer --save-model``."""
from __future__ import annotations

import argparse
from pathlib import Path


def novelty_threshold(value: str) -> str | float:
    """``--novelty-threshold``: ``query``, ``model`` or a number."""
    if value in ("query", "model"):
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected query, model or a number, got {value!r}") from None


def cmd_map(args) -> int:
    from omics_cl import pp, tl
    from omics_cl.cli import check_paths, read_input, write_h5ad_atomic

    out = Path(args.out)
    check_paths([Path(p) for p in (args.atac, args.gene_activity) if p], out)
    if (args.annotation is None) == (args.gene_activity is None):
        raise ValueError("give exactly one of --annotation and --gene-activity")
    tl.load_transfer_model(args.model)  # a missing or corrupt model fails before the data are read
    atac = read_input(args.atac)
    if args.gene_activity:
        activity = read_input(args.gene_activity)
    else:
        activity = pp.gene_activity(atac, args.annotation, layer=args.atac_layer)
    record = tl.map_query(atac, args.model, gene_activity=activity, atac_layer=args.atac_layer,
                          novelty_threshold=args.novelty_threshold)
    missing = f"; {record['n_missing_genes']} model genes missing (zero-filled)" if record["n_missing_genes"] else ""
    print(f"{record['method']}: {atac.n_obs} ATAC cells labelled with the model in {args.model} "
          f"({len(record['classes'])} reference types{missing}); {int(atac.obs['omics_cl_is_novel'].sum())} flagged "
          f"novel (novelty > {record['novelty_threshold']:.3f}, threshold from {record['novelty_threshold_from']})")
    write_h5ad_atomic(atac, out)
    print(f"wrote {out}")
    return 0


def add_map_parser(sub) -> None:
    """The ``map`` subcommand."""
    m = sub.add_parser("map", help="label a new ATAC query with a saved transfer model (no training)",
                       description="Label every ATAC cell of a new query with a model saved by omics-cl transfer "
                                   "--save-model: the saved encoder and reference vote; the query's LSI, peak-space "
                                   "classifier, clusters and novelty threshold are fitted to the new query as the "
                                   "original run did to its query. Inputs are never modified; the output is "
                                   "written atomically.")
    m.add_argument("--model", required=True, metavar="DIR", help="directory written by omics-cl transfer --save-model")
    m.add_argument("--atac", required=True, metavar="QUERY.h5ad", help="query AnnData, peak counts")
    m.add_argument("--annotation", default=None, metavar="GENES",
                   help="gene annotation (GTF, GFF3, BED or TSV, optionally gzipped) for the gene activity")
    m.add_argument("--gene-activity", default=None, metavar="GA.h5ad",
                   help="precomputed cells x genes gene activity of the query, instead of --annotation")
    m.add_argument("--out", required=True, metavar="OUT.h5ad", help="labelled query (must differ from inputs)")
    m.add_argument("--atac-layer", default=None)
    m.add_argument("--novelty-threshold", type=novelty_threshold, default="query",
                   help="query: Otsu on this query's novelty (default, as transfer); model: the training run's "
                        "threshold; or a number")
    m.set_defaults(func=cmd_map)
