"""``omics-cl`` command line: argument parsing only; the work is done by ``omics_cl.tl``."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

METHODS = ("pca", "ae", "cae")


def write_h5ad_atomic(adata, out: Path) -> None:
    """Write to a temporary file in the target directory, then rename over ``out``."""
    out = out.resolve()
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp.h5ad")
    os.close(fd)
    try:
        adata.write_h5ad(tmp)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _scores_table(rows: list[dict]) -> str:
    cols = ["method", "protocol", "n_clusters", "nmi", "ari", "acc", "seconds"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def cmd_cluster(args) -> int:
    import anndata as ad

    from omics_cl import metrics, tl

    src, out = Path(args.input), Path(args.out)
    if not src.is_file():
        raise ValueError(f"input file {src} not found")
    if out.resolve() == src.resolve():
        raise ValueError("--out must differ from the input file; omics-cl never overwrites its input")
    if not out.resolve().parent.is_dir():
        raise ValueError(f"output directory {out.resolve().parent} does not exist")
    adata = ad.read_h5ad(src)
    if args.label_key is not None and args.label_key not in adata.obs:
        raise ValueError(f"label key {args.label_key!r} not in obs; columns: {list(adata.obs.columns)}")
    params = {"epochs": args.epochs} if args.epochs is not None and args.method != "pca" else {}
    record = tl.cluster(adata, method=args.method, n_clusters=args.n_clusters, resolution=args.resolution,
                        seed=args.seed, layer=args.layer, n_top_genes=args.n_top_genes,
                        progress=not args.no_progress, **params)
    print(f"{args.method}: {record['n_clusters']} clusters (resolution {record['resolution']:.4g}), "
          f"embedding obsm['X_{args.method}'], clusters obs['{args.method}_cluster']")
    if args.label_key is not None:
        s = metrics.clustering_scores(adata.obs[args.label_key], adata.obs[f"{args.method}_cluster"],
                                      exclude=args.exclude_label)
        print(_scores_table([{"method": args.method, "protocol": record["protocol"],
                              "n_clusters": record["n_clusters"], **s, "seconds": record["train_seconds"]}]))
    write_h5ad_atomic(adata, out)
    print(f"wrote {out}")
    return 0


def cmd_demo(args) -> int:
    from omics_cl import datasets, metrics, tl

    adata = datasets.pbmc68k_reduced_counts()
    labels = adata.obs["bulk_labels"]
    k = labels.nunique()
    print(f"demo: scanpy's bundled pbmc68k_reduced, {adata.n_obs} cells x {adata.n_vars} genes, "
          f"{k} sort-based labels (bulk_labels), seed {args.seed}; seconds = embedding + clustering "
          "(the first call also compiles the graph code once)")
    rows = []
    for method in METHODS:
        params = {"epochs": args.epochs} if method != "pca" else {}
        t0 = time.perf_counter()
        rec = tl.cluster(adata, method=method, seed=args.seed, progress=not args.no_progress, **params)
        seconds = time.perf_counter() - t0
        rows.append({"method": method, "protocol": "resolution", "n_clusters": rec["n_clusters"],
                     **metrics.clustering_scores(labels, adata.obs[f"{method}_cluster"]), "seconds": seconds})
        fixed = tl.cluster_embedding(adata, f"X_{method}", n_clusters=k, seed=args.seed,
                                     key_added=f"{method}_cluster_k", n_dims=rec["graph_dims"])
        rows.append({"method": method, "protocol": "n_clusters", "n_clusters": fixed["n_clusters"],
                     **metrics.clustering_scores(labels, adata.obs[f"{method}_cluster_k"]), "seconds": seconds})
    print(_scores_table(rows))
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omics-cl", description="Contrastive learning for single-cell omics.")
    sub = parser.add_subparsers(dest="command", required=True)

    c = sub.add_parser("cluster", help="embed and cluster the cells of an .h5ad of raw counts",
                       description="Embed cells (pca, ae or cae) and cluster them with Leiden. The input file "
                                   "is never modified; the output is written atomically.")
    c.add_argument("input", metavar="IN.h5ad", help="AnnData with raw integer counts in X (or --layer)")
    c.add_argument("--method", choices=METHODS, default="cae")
    c.add_argument("--out", required=True, metavar="OUT.h5ad", help="output file (must differ from the input)")
    c.add_argument("--n-clusters", type=int, default=None,
                   help="find the Leiden resolution giving this many clusters (bisection)")
    c.add_argument("--resolution", type=float, default=1.0, help="Leiden resolution when --n-clusters is not given")
    c.add_argument("--label-key", default=None, help="obs column with known labels: print NMI/ARI/ACC (scoring only)")
    c.add_argument("--exclude-label", action="append", default=[], metavar="VALUE",
                   help="label value left out of scoring, e.g. Mis (repeatable)")
    c.add_argument("--layer", default=None, help="layer holding raw counts (default: X)")
    c.add_argument("--n-top-genes", type=int, default=2000)
    c.add_argument("--epochs", type=int, default=None, help="training epochs for ae/cae (default 100)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    c.set_defaults(func=cmd_cluster)

    d = sub.add_parser("demo", help="cluster scanpy's bundled 700-cell PBMC data with pca, ae and cae",
                       description="Runs pca, ae and cae on scanpy's bundled pbmc68k_reduced (no network) and "
                                   "prints NMI/ARI/ACC against its bulk_labels under both protocols.")
    d.add_argument("--epochs", type=int, default=100)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("datasets", help="list registered datasets and whether their files are present and valid",
                       description="Lists data_manifests/ and checks each file's sha256 in the data directory.")
    s.set_defaults(func=cmd_datasets)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"omics-cl {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
