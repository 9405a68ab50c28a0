"""The work of each ``omics-cl`` subcommand but ``map`` (``omics_cl.cli.map``): check the arguments, read the
inputs, call ``omics_cl.tl``, print a summary and write the output."""
from __future__ import annotations

from pathlib import Path

from omics_cl import demos, models
from omics_cl.checks import check_atlas_labels, check_key_added
from omics_cl.cli.inputs import (
    check_paired_args,
    check_paths,
    method_params,
    read_input,
    read_paired,
)
from omics_cl.cli.map import novelty_rate_keywords
from omics_cl.cli_io import write_output

FRAGMENT_TILE_SIZE = 5000  # bp, the query features of --fragments without --peaks


def check_backed(args) -> None:
    """``--backed`` streams X: a backed file's layers are read whole."""
    if args.layer is not None:
        raise ValueError("--backed streams X; the layers of a backed .h5ad are read into memory whole, so "
                         "--layer cannot be streamed (store the counts in X, or drop --backed)")


def backed_refusal(err: models.StreamingError) -> str:
    """``tl.cluster``'s refusal to stream, reworded for ``--backed``."""
    if err.by_config:
        return (f"--backed: {err.method} with these parameters reads the whole matrix (fusion's PCA view) "
                "and cannot stream it; add --set fusion='\"none\"' (or drop --backed)")
    return (f"--backed streams the file through training, which {err.method} cannot; "
            f"methods that stream: {', '.join(models.streaming_names())}")


def cmd_cluster(args) -> int:

    from omics_cl import metrics, tl

    params = method_params(args, "cluster")
    check_key_added(args.key_added)
    key = args.key_added or args.method
    src, out = Path(args.input), Path(args.out)
    if args.backed:
        check_backed(args)
    check_paths([src], out)
    adata = read_input(src, backed=args.backed)
    if args.label_key is not None and args.label_key not in adata.obs:
        raise ValueError(f"label key {args.label_key!r} not in obs; columns: {list(adata.obs.columns)}")
    try:
        record = tl.cluster(adata, method=args.method, n_clusters=args.n_clusters, resolution=args.resolution,
                            seed=args.seed, layer=args.layer, n_top_genes=args.n_top_genes,
                            progress=not args.no_progress, stream=True if args.backed else None,
                            leiden_consensus=args.leiden_consensus, key_added=args.key_added, **params)
    except models.StreamingError as err:
        raise ValueError(backed_refusal(err)) from None
    if f"{key}_membership" in adata.obsm:
        how = ("K estimated by Leiden on the pretrained latent" if record["params"]["k_estimated"] else "K given")
        how += f"; memberships obsm['{key}_membership']"
    else:
        how = f"Leiden resolution {record['resolution']:.4g}"
    print(f"{args.method}: {record['n_clusters']} clusters ({how}), "
          f"embedding obsm['X_{key}'], clusters obs['{key}_cluster']")
    if args.label_key is not None:
        s = metrics.clustering_scores(adata.obs[args.label_key], adata.obs[f"{key}_cluster"],
                                      exclude=args.exclude_label)
        print(demos.markdown_table([{"method": args.method, "protocol": record["protocol"],
                                     "n_clusters": record["n_clusters"], **s, "seconds": record["train_seconds"]}],
                                   demos.CLUSTER_COLUMNS))
    write_output(adata, out)
    print(f"wrote {out}")
    return 0


def cmd_transfer(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from omics_cl import get, io, metrics, pl, pp, tl

    params = method_params(args, "transfer")
    check_key_added(args.key_added)
    out = Path(args.out)
    if (args.atac is None) == (args.fragments is None):
        raise ValueError("give exactly one of --atac and --fragments")
    if args.fragments is None and (args.peaks or args.barcodes):
        raise ValueError("--peaks and --barcodes go with --fragments")
    optional = (args.gene_activity, args.peaks, args.barcodes)
    check_paths([Path(p) for p in (args.rna, args.atac or args.fragments, *optional) if p], out)
    if (args.annotation is None) == (args.gene_activity is None):
        raise ValueError("give exactly one of --annotation and --gene-activity")
    if args.learned_atac and args.annotation is None:
        raise ValueError("--learned-atac links peaks to genes through the annotation: give --annotation instead of "
                         "--gene-activity")
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
    if args.query_label_key is not None:
        check_atlas_labels(atac.obs[args.query_label_key], rna.obs[args.label_key].dropna().astype(str).unique(),
                           f"--query-label-key {args.query_label_key!r}")
    activity = read_input(args.gene_activity) if args.gene_activity else None
    if activity is None and args.fragments:
        activity = io.gene_activity_from_fragments(args.fragments, args.annotation, barcodes=atac.obs_names)
    elif activity is None:
        activity = pp.gene_activity(atac, args.annotation, layer=args.atac_layer)
    record = tl.transfer_labels(rna, atac, args.label_key, gene_activity=activity, rna_layer=args.rna_layer,
                                atac_layer=args.atac_layer, seed=args.seed, progress=not args.no_progress,
                                method=args.method, save_model=args.save_model, annotation=args.annotation,
                                learned_atac=args.learned_atac, tfidf_scale=args.tfidf_scale,
                                scale_lsi=args.scale_lsi, key_added=args.key_added,
                                **novelty_rate_keywords(args.novelty_rate), **params)
    column = {name: get.transfer_column(atac, name) for name in get.TRANSFER_OBS_NAMES}
    n_novel = int(atac.obs[column["is_novel"]].sum())
    print(f"{args.method}: {atac.n_obs} ATAC cells labelled from {len(record['classes'])} reference types "
          f"({record['n_unlabelled_reference_cells']} unlabelled reference cells left out); {n_novel} flagged novel "
          f"(novelty > {record['novelty_threshold']:.3f}, {record['novelty_rule']} rule)")
    query_key = args.query_label_key
    table = None
    if query_key is not None:
        check_key = None if args.key_added is None else f"{args.key_added}_check"  # beside the transfer's record
        table = tl.check_annotations(atac, query_key, gene_activity=activity, key_added=check_key)
        check = check_key or "omics_cl"
        truth = atac.obs[query_key].astype(str).to_numpy()
        known = atac.obs[query_key].notna().to_numpy() & atac.obs[query_key].astype(str).isin(record["classes"])
        pred = atac.obs[column["label"]].astype(str).to_numpy()
        print(f"against {query_key}: accuracy {np.mean(truth[known] == pred[known]):.3f}, macro-F1 "
              f"{metrics.macro_f1(truth[known], pred[known]):.3f} on {known.sum()} cells of reference types; "
              f"{int(atac.obs[f'{check}_annotation_flag'].sum())} cells flagged in {len(table)} groups "
              f"({atac.uns['omics_cl'][check_key or 'check_annotations']['n_propagated']} of them by their "
              "neighbours)")
    if args.report:
        report = Path(args.report)
        report.mkdir(parents=True, exist_ok=True)
        pl.novelty_distribution(atac, save=str(report / "novelty_distribution.png"))
        pl.transfer_umap(rna, atac, args.label_key, seed=args.seed, save=str(report / "umap_joint.png"))
        if query_key is not None:
            pl.confusion_matrix(atac.obs[query_key].astype(str), atac.obs[column["label"]].astype(str),
                                save=str(report / "confusion_matrix.png"))
            table.to_csv(report / "annotation_check.csv", index=False)
        checked = [f"{check}_annotation_flag", f"{check}_suggested_label"] if query_key is not None else []
        atac.obs[[c for c in column.values() if c in atac.obs] + checked].to_csv(report / "labels.csv")
        print(f"report in {report}")
    write_output(atac, out)
    print(f"wrote {out}")
    return 0


def cmd_integrate(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from omics_cl import get, metrics, pl, tl

    params = method_params(args, "integrate")
    check_key_added(args.key_added)
    name, key = args.method, args.key_added or args.method
    out = Path(args.out)
    check_paired_args(args, out)
    mdata = read_paired(args)
    labels = get.obs_column(mdata, args.label_key) if args.label_key else None  # fails before any training
    record = tl.integrate(mdata, method=name, n_clusters=args.n_clusters, resolution=args.resolution, seed=args.seed,
                          rna_layer=args.rna_layer, atac_layer=args.atac_layer, n_top_genes=args.n_top_genes,
                          n_top_peaks=args.n_top_peaks, progress=not args.no_progress, save_model=args.save_model,
                          leiden_consensus=args.leiden_consensus, key_added=args.key_added, **params)
    print(f"{name}: {mdata.n_obs} paired cells, {record['n_genes']} genes + {record['n_peaks']} peaks; "
          f"{record['n_clusters']} clusters (resolution {record['resolution']:.4g}); embedding obsm['X_{key}'], "
          f"clusters obs['{key}_cluster']")
    if labels is not None:
        s = metrics.clustering_scores(labels, mdata.obs[f"{key}_cluster"], exclude=args.exclude_label)
        print(demos.markdown_table([{"method": name, "protocol": record["protocol"], "n_clusters": record["n_clusters"],
                                     **s, "seconds": record["train_seconds"]}], demos.CLUSTER_COLUMNS))
    if args.report:
        report = Path(args.report)
        report.mkdir(parents=True, exist_ok=True)
        colors = [f"{key}_cluster"] + ([args.label_key] if labels is not None else [])
        pl.umap(mdata, f"X_{key}", colors, seed=args.seed, save=str(report / "umap.png"))
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
