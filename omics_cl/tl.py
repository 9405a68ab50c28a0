"""Tools (scanpy style): AnnData in, results written back into it.

Keys written by :func:`cluster` for ``method="<m>"``:

- ``obsm["X_<m>"]``: the embedding;
- ``obs["<m>_cluster"]``: clusters (categorical, "0" is the largest): Leiden on the embedding, or for
  methods that cluster themselves (``scinno``, ``siamese``) the argmax of their soft memberships;
- ``obsm["<m>_membership"]``: those soft memberships (cells x K, columns in the order of the cluster names);
- ``uns["omics_cl"]["<m>"]``: parameters, seed, protocol, resolution, cluster count, loss per epoch, versions.
"""
from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version

import anndata as ad
import numpy as np
import pandas as pd

from omics_cl.core import graph
from omics_cl.data import lsi
from omics_cl.data.preprocess import counts_matrix, prepare_counts, validated_counts
from omics_cl.data.transfer import transfer_features
from omics_cl.models import CLUSTER_METHODS, SELF_CLUSTERING
from omics_cl.models.scncl import fit_transfer
from omics_cl.pp import gene_activity as build_gene_activity


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("omics_cl", "jax", "flax", "optax", "anndata", "scanpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def _h5ad_safe(value):
    """uns must be writable to .h5ad: drop None, tuples to lists, recurse into dicts."""
    if isinstance(value, dict):
        return {str(k): _h5ad_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, tuple):
        return list(value)
    return value


def _record(adata: ad.AnnData, method: str, info: dict) -> None:
    adata.uns.setdefault("omics_cl", {})[method] = _h5ad_safe(info)


def cluster_embedding(adata: ad.AnnData, use_rep: str, n_clusters: int | None = None, resolution: float = 1.0,
                      key_added: str | None = None, seed: int = 0, n_neighbors: int = 15,
                      n_dims: int | None = None) -> dict:
    """Leiden on a cosine kNN graph of ``obsm[use_rep]`` (first ``n_dims`` columns if given).

    Protocols: ``resolution`` as given, or, when ``n_clusters`` is set, the resolution found by
    bisection that yields that many clusters. Writes ``obs[key_added]`` (default
    ``"<rep>_cluster"``) and returns ``{"protocol", "resolution", "n_clusters"}``.
    """
    if use_rep not in adata.obsm:
        raise ValueError(f"obsm[{use_rep!r}] not found; present: {list(adata.obsm.keys())}")
    if resolution <= 0:
        raise ValueError(f"resolution must be > 0, got {resolution}")
    z = np.asarray(adata.obsm[use_rep])[:, :n_dims]
    if not np.isfinite(z).all():
        raise ValueError(f"obsm[{use_rep!r}] contains NaN/inf")
    adjacency = graph.neighbor_graph(z, n_neighbors, "cosine", seed)
    if n_clusters is None:
        labels, protocol = graph.leiden(adjacency, resolution, seed), "resolution"
    else:
        labels, resolution = graph.leiden_n_clusters(adjacency, n_clusters, seed)
        protocol = "n_clusters"
    key = key_added or f"{use_rep.removeprefix('X_')}_cluster"
    k = int(labels.max()) + 1
    adata.obs[key] = pd.Categorical(labels.astype(str), categories=[str(i) for i in range(k)])
    return {"protocol": protocol, "resolution": float(resolution), "n_clusters": k}


def _write_memberships(adata: ad.AnnData, method: str, labels: np.ndarray, memberships: np.ndarray,
                       protocol: str, resolution: float) -> dict:
    """Argmax clusters renamed by decreasing size ("0" largest; empty clusters last) and the memberships in
    that column order."""
    order = graph.size_order(labels, memberships.shape[1])
    rank = np.argsort(order)
    names = [str(i) for i in range(len(order))]
    adata.obs[f"{method}_cluster"] = pd.Categorical(np.asarray(names)[rank[labels]], categories=names)
    adata.obsm[f"{method}_membership"] = memberships[:, order]
    return {"protocol": protocol, "resolution": float(resolution), "n_clusters": len(np.unique(labels)),
            "n_centres": len(order)}


def cluster(adata: ad.AnnData, method: str = "cae", n_clusters: int | None = None, resolution: float = 1.0,
            seed: int = 0, layer: str | None = None, n_top_genes: int | None = 2000, n_neighbors: int = 15,
            progress: bool = True, **method_params) -> dict:
    """Embed cells with ``method`` and cluster them.

    ``"pca"``, ``"ae"`` and ``"cae"`` give an embedding clustered by Leiden (``resolution``, or the
    resolution bisected to ``n_clusters``). ``"scinno"`` and ``"siamese"`` cluster the cells
    themselves into ``n_clusters``; without it they estimate K by Leiden at ``resolution`` on their
    pretrained latent and report it (``n_clusters`` and ``k_estimated`` in the record).
    Counts are read from ``adata.layers[layer]`` or ``adata.X`` (raw integer counts; backed
    AnnData works), normalised to 1e4, log1p, and restricted to ``n_top_genes`` seurat_v3 HVGs.
    Extra keyword arguments go to the method's config (e.g. ``epochs=50``, ``temperature=0.1``).
    No labels are used. Returns the run record also stored in ``uns["omics_cl"][method]``; its
    ``graph_dims`` (PCA: 30) is how many embedding columns the cell graph used.
    """
    if method not in CLUSTER_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(CLUSTER_METHODS)}")
    if n_clusters is not None and not (isinstance(n_clusters, (int, np.integer)) and 1 <= n_clusters <= adata.n_obs):
        raise ValueError(f"n_clusters must be an integer between 1 and the number of cells ({adata.n_obs}), "
                         f"got {n_clusters!r}")
    start = time.perf_counter()
    prepared = prepare_counts(adata, layer, n_top_genes)
    if method in SELF_CLUSTERING:
        method_params = {"n_clusters": n_clusters, "resolution": resolution, "n_neighbors": n_neighbors,
                         **method_params}
    z, info = CLUSTER_METHODS[method](prepared, seed=seed, progress=progress, **method_params)
    train_seconds = time.perf_counter() - start
    adata.obsm[f"X_{method}"] = z
    graph_dims = info.pop("graph_dims", None)
    if method in SELF_CLUSTERING:
        clusters = _write_memberships(adata, method, info.pop("labels"), info.pop("memberships"),
                                      "resolution" if info["k_estimated"] else "n_clusters", resolution)
    else:
        clusters = cluster_embedding(adata, f"X_{method}", n_clusters, resolution, f"{method}_cluster", seed,
                                     n_neighbors, graph_dims)
    record = {"method": method, "seed": seed, "layer": layer, "n_top_genes": n_top_genes,
              "n_features": prepared.normalizer.n_features, "n_neighbors": n_neighbors, "graph_dims": graph_dims,
              "train_seconds": train_seconds, **clusters, "params": info, "versions": _versions()}
    _record(adata, method, record)
    return record


def otsu_threshold(scores: np.ndarray, bins: int = 256) -> float:
    """Label-free split of a score distribution: the cut maximising between-class variance (Otsu);
    where the maximum is a plateau (an empty gap between modes), its middle."""
    hist, edges = np.histogram(scores, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centres) - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    first = int(np.argmax(between))
    last = first
    while last + 1 < len(between) and between[last + 1] >= between[first] * (1 - 1e-9):
        last += 1
    return float((edges[first + 1] + edges[last + 1]) / 2)


def transfer_labels(rna: ad.AnnData, atac: ad.AnnData, label_key: str, annotation=None,
                    gene_activity: ad.AnnData | None = None, rna_layer: str | None = None,
                    atac_layer: str | None = None, n_top_genes: int | None = 2000, features: str = "binary",
                    n_neighbors: int = 10, seed: int = 0, progress: bool = True, **model_params) -> dict:
    """scNCL label transfer from a labelled RNA reference to an ATAC query (METHODS.md section 5).

    Gene activity comes from ``gene_activity`` (cells x genes AnnData, same cells as ``atac``) or is
    built from ``annotation``. The ATAC neighbourhood graph is a cosine kNN on LSI of the peaks.
    Writes into ``atac``: ``obs["omics_cl_label"]``, ``obs["omics_cl_confidence"]`` (max softmax),
    ``obs["omics_cl_novelty"]`` (1 - confidence), ``obs["omics_cl_is_novel"]`` (novelty above an Otsu
    threshold of the novelty distribution, chosen without labels), ``obsm["X_scncl"]``; into ``rna``:
    ``obsm["X_scncl"]``; run record in both ``uns["omics_cl"]["scncl"]``. Reference cells without a label
    are left out of training and counted in the record.
    """
    if label_key not in rna.obs:
        raise ValueError(f"label column {label_key!r} not in the RNA reference's obs; columns: {list(rna.obs.columns)}")
    labels = rna.obs[label_key]
    labelled = labels.notna().to_numpy()
    classes = pd.Index(pd.unique(labels[labelled].astype(str)))
    if len(classes) < 2:
        raise ValueError(f"the reference has {len(classes)} class(es) in {label_key!r}; label transfer needs at least 2")
    if gene_activity is None:
        gene_activity = build_gene_activity(atac, annotation, layer=atac_layer)
    elif not gene_activity.obs_names.equals(atac.obs_names):
        raise ValueError(f"gene_activity has {gene_activity.n_obs} cells, atac {atac.n_obs}, or another order; "
                         "they must be the same cells in the same order")
    rna_x, atac_x, genes = transfer_features(rna[labelled], gene_activity, rna_layer, n_top_genes, features)
    embedding, lsi_info = lsi.lsi(validated_counts(atac, atac_layer, "ATAC counts"), seed=seed)
    neighbors = lsi.neighbors(embedding, n_neighbors, seed)
    y = classes.get_indexer(labels[labelled].astype(str))
    out = fit_transfer(rna_x, y, atac_x, neighbors, len(classes), seed, progress, **model_params)
    prob = out["probabilities"]
    confidence = prob.max(1)
    novelty = 1.0 - confidence
    threshold = otsu_threshold(novelty)

    atac.obs["omics_cl_label"] = pd.Categorical(np.asarray(classes)[prob.argmax(1)], categories=classes)
    atac.obs["omics_cl_confidence"] = confidence
    atac.obs["omics_cl_novelty"] = novelty
    atac.obs["omics_cl_is_novel"] = novelty > threshold
    atac.obsm["X_scncl"] = out["atac_embedding"]
    rna_embedding = np.full((rna.n_obs, out["rna_embedding"].shape[1]), np.nan, dtype=np.float32)
    rna_embedding[labelled] = out["rna_embedding"]
    rna.obsm["X_scncl"] = rna_embedding
    record = {"label_key": label_key, "classes": list(classes), "n_unlabelled_reference_cells": int((~labelled).sum()),
              "n_genes": len(genes), "features": features, "n_neighbors": n_neighbors, "seed": seed,
              "novelty_threshold": threshold, "lsi": lsi_info, "params": out["info"], "versions": _versions()}
    _record(atac, "scncl", record)
    _record(rna, "scncl", record)
    return record


def annotation_flags(atlas_labels, transferred, confidence, reference_labels, novel=None,
                     min_confidence: float | None = None) -> tuple[np.ndarray, float]:
    """Cells whose transferred label confidently disagrees with their atlas label.

    A cell is flagged when its transferred label differs from its atlas label, it is not predicted
    novel, and its confidence is at least ``min_confidence``. The default threshold is the median
    confidence of the cells whose transfer agrees with the atlas: a disagreement is flagged only when
    the model is as sure of it as it typically is when it agrees. Cells without an atlas label, or
    with one the reference lacks (``reference_labels``: the transfer cannot confirm it), are never
    flagged. Returns ``(flags, threshold)``.
    """
    atlas = pd.Series(np.asarray(atlas_labels, dtype=object))
    transferred = np.asarray(transferred, dtype=object)
    confidence = np.asarray(confidence, dtype=float)
    has_label = atlas.notna().to_numpy()
    atlas = atlas.astype(str).to_numpy()
    has_label &= np.isin(atlas, np.asarray(list(reference_labels), dtype=str))
    agree = has_label & (atlas == transferred)
    if min_confidence is None:
        if not agree.any():
            raise ValueError("no cell's transferred label agrees with its atlas label; give min_confidence explicitly "
                             "(do the two use the same label names?)")
        min_confidence = float(np.median(confidence[agree]))
    flags = has_label & (atlas != transferred) & (confidence >= min_confidence)
    if novel is not None:
        flags &= ~np.asarray(novel, dtype=bool)
    return flags, float(min_confidence)


def check_annotations(atac: ad.AnnData, atlas_key: str, gene_activity: ad.AnnData | None = None,
                      annotation=None, min_confidence: float | None = None, n_markers: int = 5,
                      layer: str | None = None) -> pd.DataFrame:
    """Find atlas labels that the transferred labels (from :func:`transfer_labels`) confidently contradict.

    Flags cells with :func:`annotation_flags` (atlas labels the reference lacks are not checked) and
    writes ``obs["omics_cl_annotation_flag"]`` (bool) and ``obs["omics_cl_suggested_label"]`` (the
    transferred label of flagged cells, else missing).
    Returns one row per (atlas label, transferred label) group of flagged cells, largest first:
    ``n_cells``, ``mean_confidence``, ``fraction_of_atlas_label`` and ``markers``, the ``n_markers``
    genes whose gene activity (fraction of cells with any) is most higher in the group than in the cells
    of the same atlas label whose transfer agrees. Gene activity comes from ``gene_activity`` (same
    cells as ``atac``) or is built from ``annotation``; without either, markers are left empty.
    """
    missing = [k for k in ("omics_cl_label", "omics_cl_confidence", "omics_cl_is_novel") if k not in atac.obs]
    if missing:
        raise ValueError(f"atac.obs lacks {missing}; run omics_cl.tl.transfer_labels first")
    if atlas_key not in atac.obs:
        raise ValueError(f"atlas label column {atlas_key!r} not in obs; columns: {list(atac.obs.columns)}")
    atlas = atac.obs[atlas_key]
    transferred = atac.obs["omics_cl_label"].astype(str).to_numpy()
    confidence = atac.obs["omics_cl_confidence"].to_numpy()
    classes = atac.uns.get("omics_cl", {}).get("scncl", {}).get("classes")
    if classes is None:
        raise ValueError("atac.uns['omics_cl']['scncl'] lacks the reference classes; run tl.transfer_labels first")
    flags, threshold = annotation_flags(atlas, transferred, confidence, classes,
                                        atac.obs["omics_cl_is_novel"].to_numpy(), min_confidence)
    if gene_activity is None and annotation is not None:
        gene_activity = build_gene_activity(atac, annotation, layer=layer)
    if gene_activity is not None and not gene_activity.obs_names.equals(atac.obs_names):
        raise ValueError("gene_activity must have the same cells as atac, in the same order")
    atlas_str = atlas.astype(str).to_numpy()
    agree = atlas.notna().to_numpy() & (atlas_str == transferred)
    rows = []
    for (label, suggested), cells in pd.DataFrame({"a": atlas_str[flags], "t": transferred[flags]},
                                                  index=np.flatnonzero(flags)).groupby(["a", "t"]).groups.items():
        cells = np.asarray(cells)
        markers = []
        if gene_activity is not None:
            markers = _marker_genes(gene_activity, cells, np.flatnonzero(agree & (atlas_str == label)), n_markers)
        rows.append({"atlas_label": label, "transferred_label": suggested, "n_cells": len(cells),
                     "mean_confidence": float(confidence[cells].mean()),
                     "fraction_of_atlas_label": len(cells) / int((atlas_str == label).sum()),
                     "markers": ", ".join(markers)})
    table = pd.DataFrame(rows, columns=["atlas_label", "transferred_label", "n_cells", "mean_confidence",
                                        "fraction_of_atlas_label", "markers"])
    table = table.sort_values(["n_cells", "mean_confidence"], ascending=False, ignore_index=True)
    atac.obs["omics_cl_annotation_flag"] = flags
    atac.obs["omics_cl_suggested_label"] = pd.Categorical(np.where(flags, transferred, None))
    _record(atac, "check_annotations", {"atlas_key": atlas_key, "min_confidence": threshold,
                                        "n_flagged": int(flags.sum()), "n_groups": len(table)})
    return table


def _marker_genes(activity: ad.AnnData, group: np.ndarray, background: np.ndarray, n: int) -> list[str]:
    """Genes with the largest gain in the fraction of cells with nonzero activity, group vs background."""
    x = activity.X

    def detected(rows):
        return np.asarray((x[rows] > 0).mean(0)).ravel() if len(rows) else np.zeros(activity.n_vars)

    gain = detected(group) - detected(background)
    top = np.argsort(-gain, kind="stable")[:n]
    return [str(activity.var_names[i]) for i in top if gain[i] > 0]


def integrate(data=None, method: str = "sci2cl", rna: ad.AnnData | None = None, atac: ad.AnnData | None = None,
              n_clusters: int | None = None, resolution: float = 1.0, seed: int = 0, rna_layer: str | None = None,
              atac_layer: str | None = None, n_top_genes: int | None = 2000, n_top_peaks: int | None = 10000,
              n_neighbors: int = 15, progress: bool = True, **model_params) -> dict:
    """Joint embedding of paired RNA + ATAC cells with scI2CL (METHODS.md section 4), then Leiden clusters.

    ``data`` is a MuData with modalities ``rna`` and ``atac``; or pass ``rna=`` and ``atac=`` AnnData.
    Cells are matched by name (ATAC reordered if needed). Raw counts come from ``X`` or the given
    layers; RNA keeps ``n_top_genes`` seurat_v3 HVGs, ATAC the ``n_top_peaks`` most often accessible
    peaks. Extra keyword arguments go to ``SCI2CLConfig`` / ``TrainConfig`` (e.g. ``epochs=50``,
    ``mom_weight=0``). Clusters: ``resolution``, or ``n_clusters`` by bisection. No labels are used.

    Writes (on the MuData, or on both AnnData): ``obsm["X_sci2cl"]`` (joint embedding),
    ``obsm["X_sci2cl_rna"]`` / ``obsm["X_sci2cl_atac"]`` (the aligned per-modality embeddings),
    ``obs["sci2cl_cluster"]`` and the run record ``uns["omics_cl"]["sci2cl"]``. Nothing is written when
    an error is raised.
    """
    from omics_cl.data.paired import Modality, PairedSource, paired_modalities
    from omics_cl.models.sci2cl import fit_sci2cl

    if method != "sci2cl":
        raise ValueError(f"unknown integration method {method!r}; choose 'sci2cl'")
    rna_view, atac_view = paired_modalities(data, rna, atac)
    start = time.perf_counter()
    modalities = {}
    for name, view, layer, n_top, selection in (("RNA", rna_view, rna_layer, n_top_genes, "hvg"),
                                                ("ATAC", atac_view, atac_layer, n_top_peaks, "accessible")):
        try:
            modalities[name] = Modality.fit(counts_matrix(view, layer), n_top, selection)  # validates the counts
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
    z, info = fit_sci2cl(PairedSource(modalities["RNA"], modalities["ATAC"]), seed, progress, **model_params)
    train_seconds = time.perf_counter() - start
    record = {"method": method, "seed": seed, "n_genes": modalities["RNA"].n_features,
              "n_peaks": modalities["ATAC"].n_features, "n_neighbors": n_neighbors, "train_seconds": train_seconds,
              "params": info, "versions": _versions()}
    carrier = ad.AnnData(obs=pd.DataFrame(index=rna_view.obs_names),
                         obsm={f"X_{method}{suffix}": z[part] for suffix, part in
                               (("", "joint"), ("_rna", "rna"), ("_atac", "atac"))})
    record.update(cluster_embedding(carrier, f"X_{method}", n_clusters, resolution, f"{method}_cluster", seed,
                                    n_neighbors))
    targets = [data] if data is not None else [rna, atac]
    for target in targets:
        order = rna_view.obs_names.get_indexer(target.obs_names)
        for key, value in carrier.obsm.items():
            target.obsm[key] = value[order]
        target.obs[f"{method}_cluster"] = carrier.obs[f"{method}_cluster"].to_numpy()[order]
        _record(target, method, record)
    return record


def _column(data, key: str) -> pd.Series:
    """``obs[key]`` of an AnnData or MuData (for a MuData also the first modality whose own obs has ``key``)."""
    if key in data.obs:
        return data.obs[key]
    for mod in getattr(data, "mod", {}).values():
        if key in mod.obs:
            return mod.obs[key].reindex(data.obs_names)
    raise ValueError(f"obs column {key!r} not found; columns: {list(data.obs.columns)}")


def _rep(data, use_rep: str) -> np.ndarray:
    if use_rep not in data.obsm:
        raise ValueError(f"obsm[{use_rep!r}] not found (run omics_cl.tl.integrate first?); present: "
                         f"{list(data.obsm.keys())}")
    return np.asarray(data.obsm[use_rep])


def _rna_of(data) -> ad.AnnData:
    mods = getattr(data, "mod", None)
    return mods["rna"][data.obs_names] if mods is not None else data


def subclusters(data, groupby: str, group: str, use_rep: str = "X_sci2cl", resolution: float = 0.5,
                n_clusters: int | None = None, n_neighbors: int = 15, n_genes: int = 10, layer: str | None = None,
                gene_activity: ad.AnnData | None = None, key_added: str = "omics_cl_subcluster",
                seed: int = 0) -> dict[str, pd.DataFrame | None]:
    """Sub-populations of one labelled type: Leiden on the embedding of its cells, then marker genes.

    ``data`` is a MuData (RNA counts from ``rna``) or an RNA AnnData with ``obsm[use_rep]``. Markers:
    scanpy's ``rank_genes_groups`` (Wilcoxon, each sub-cluster vs the rest of the type) on log-normalised
    RNA, and on log-normalised ``gene_activity`` (cells x genes, same cells) when given. Writes
    ``obs[key_added]`` ("<group>.<i>" for the type's cells, missing elsewhere). Returns
    ``{"markers": DataFrame, "activity_markers": DataFrame or None}`` with columns subcluster, rank,
    gene, score, logfoldchange, pval_adj.
    """
    labels = _column(data, groupby).astype(str).to_numpy()
    cells = np.flatnonzero(labels == str(group))
    if len(cells) < 2 * n_neighbors:
        raise ValueError(f"{groupby} == {group!r} has {len(cells)} cells; sub-clustering needs at least "
                         f"{2 * n_neighbors}")
    part = ad.AnnData(obs=pd.DataFrame(index=data.obs_names[cells]), obsm={"rep": _rep(data, use_rep)[cells]})
    info = cluster_embedding(part, "rep", n_clusters, resolution, "sub", seed, n_neighbors)
    sub = (f"{group}." + part.obs["sub"].astype(str)).to_numpy()
    if info["n_clusters"] < 2:
        raise ValueError(f"{group!r} forms a single cluster at resolution {resolution}; raise it or give n_clusters")
    column = np.full(data.n_obs, None, dtype=object)
    column[cells] = sub
    markers = _rank_genes(_rna_of(data)[cells], sub, layer, n_genes)
    activity = None
    if gene_activity is not None:
        if not gene_activity.obs_names.equals(data.obs_names):
            raise ValueError("gene_activity must have the same cells as data, in the same order")
        activity = _rank_genes(gene_activity[cells], sub, None, n_genes)
    data.obs[key_added] = pd.Categorical(column)
    _record(data, "subclusters", {"groupby": groupby, "group": str(group), "use_rep": use_rep, **info})
    return {"markers": markers, "activity_markers": activity}


def _rank_genes(adata: ad.AnnData, groups: np.ndarray, layer: str | None, n_genes: int) -> pd.DataFrame:
    import scanpy as sc

    from omics_cl.data.preprocess import check_finite_counts, fit_lognormalizer

    x = adata.layers[layer] if layer else adata.X
    if x is None:
        raise ValueError("no expression matrix to rank genes on")
    try:
        check_finite_counts(x)
    except ValueError:
        norm = x  # already normalised: rank as given
    else:
        norm = fit_lognormalizer(x, None).sparse(x)
    work = ad.AnnData(norm, obs=pd.DataFrame({"g": pd.Categorical(groups)}, index=adata.obs_names),
                      var=pd.DataFrame(index=adata.var_names))
    sc.tl.rank_genes_groups(work, "g", method="wilcoxon", n_genes=n_genes)
    table = sc.get.rank_genes_groups_df(work, group=None)
    table["rank"] = table.groupby("group").cumcount()
    return table.rename(columns={"group": "subcluster", "names": "gene", "scores": "score",
                                 "logfoldchanges": "logfoldchange", "pvals_adj": "pval_adj"})[
        ["subcluster", "rank", "gene", "score", "logfoldchange", "pval_adj"]]


def label_consistency(data, label_key: str, use_rep: str = "X_sci2cl", n_neighbors: int = 15,
                      min_share: float = 0.5, exclude=(), layer: str | None = None, n_markers: int = 5,
                      seed: int = 0) -> pd.DataFrame:
    """Cells whose given label disagrees with their neighbourhood in the joint embedding.

    For each labelled cell: ``agreement`` = share of its ``n_neighbors`` cosine neighbours (labelled ones)
    carrying its label, and the neighbourhood's majority label. A cell is suspect when the majority
    label differs from its own and holds at least ``min_share`` of the neighbours. Cells without a label
    or labelled one of ``exclude`` are neither scored nor counted as votes. Writes
    ``obs["omics_cl_label_agreement"]``, ``obs["omics_cl_neighbourhood_label"]``,
    ``obs["omics_cl_label_suspect"]``. Returns one row per (given, neighbourhood) label pair of suspect
    cells, largest first: ``n_cells``, ``mean_agreement``, ``fraction_of_label`` and ``markers``, the
    ``n_markers`` RNA genes detected in more of these cells than of the agreeing cells of their label.
    """
    raw = _column(data, label_key)
    usable = raw.notna().to_numpy() & ~raw.astype(str).isin([str(e) for e in exclude]).to_numpy()
    labels = raw.astype(str).to_numpy()
    if len(np.unique(labels[usable])) < 2:
        raise ValueError(f"{label_key!r} has fewer than 2 usable labels; nothing to compare")
    idx, _ = graph.knn(_rep(data, use_rep), n_neighbors + 1, "cosine", seed)
    agreement = np.full(data.n_obs, np.nan)
    majority = np.full(data.n_obs, None, dtype=object)
    share = np.zeros(data.n_obs)
    for i in np.flatnonzero(usable):
        nb = idx[i][(idx[i] != i) & usable[idx[i]]][:n_neighbors]
        if len(nb) == 0:
            continue
        values, counts = np.unique(labels[nb], return_counts=True)
        agreement[i] = float(np.mean(labels[nb] == labels[i]))
        majority[i], share[i] = values[counts.argmax()], counts.max() / len(nb)
    suspect = usable & (majority != labels) & (majority != None) & (share >= min_share)  # noqa: E711
    rna = _rna_of(data)
    x = rna.layers[layer] if layer else rna.X
    counts_view = ad.AnnData(x, obs=pd.DataFrame(index=rna.obs_names), var=pd.DataFrame(index=rna.var_names))
    rows = []
    for (given, neighbourhood), cells in pd.DataFrame({"g": labels[suspect], "n": majority[suspect]},
                                                      index=np.flatnonzero(suspect)).groupby(["g", "n"]).groups.items():
        cells = np.asarray(cells)
        agreeing = np.flatnonzero(usable & ~suspect & (labels == given))
        rows.append({"given_label": given, "neighbourhood_label": neighbourhood, "n_cells": len(cells),
                     "mean_agreement": float(agreement[cells].mean()),
                     "fraction_of_label": len(cells) / int((usable & (labels == given)).sum()),
                     "markers": ", ".join(_marker_genes(counts_view, cells, agreeing, n_markers))})
    table = pd.DataFrame(rows, columns=["given_label", "neighbourhood_label", "n_cells", "mean_agreement",
                                        "fraction_of_label", "markers"])
    table = table.sort_values("n_cells", ascending=False, ignore_index=True)
    data.obs["omics_cl_label_agreement"] = agreement
    data.obs["omics_cl_neighbourhood_label"] = pd.Categorical(majority)
    data.obs["omics_cl_label_suspect"] = suspect
    _record(data, "label_consistency", {"label_key": label_key, "use_rep": use_rep, "n_neighbors": n_neighbors,
                                        "min_share": min_share, "n_suspect": int(suspect.sum())})
    return table


def trajectory(data, root_group: str, groupby: str, use_rep: str = "X_sci2cl", n_neighbors: int = 15,
               seed: int = 0) -> dict:
    """PAGA over ``groupby`` and diffusion pseudotime on the embedding, rooted in ``root_group``.

    The root cell is the cell of ``root_group`` nearest to the group's median in diffusion-map space (a
    typical cell of the group, not an outlier). Writes ``obs["omics_cl_pseudotime"]``
    and ``uns["omics_cl_paga"]`` (group names and the connectivity matrix); returns ``{"root",
    "group_pseudotime"}`` with the median pseudotime per group.
    """
    import scanpy as sc

    labels = _column(data, groupby)
    if str(root_group) not in set(labels.astype(str)):
        raise ValueError(f"root group {root_group!r} not in {groupby!r}; groups: {sorted(set(labels.astype(str)))}")
    work = ad.AnnData(obs=pd.DataFrame({"g": pd.Categorical(labels.astype(str))}, index=data.obs_names),
                      obsm={"rep": _rep(data, use_rep)})
    sc.pp.neighbors(work, n_neighbors=n_neighbors, use_rep="rep", metric="cosine", random_state=seed)
    sc.tl.paga(work, groups="g")
    sc.tl.diffmap(work, random_state=seed)
    diffusion = work.obsm["X_diffmap"][:, 1:]
    in_root = np.flatnonzero((work.obs["g"] == str(root_group)).to_numpy())
    centre = np.median(diffusion[in_root], axis=0)
    root = int(in_root[np.argmin(((diffusion[in_root] - centre) ** 2).sum(1))])
    work.uns["iroot"] = root
    sc.tl.dpt(work)
    data.obs["omics_cl_pseudotime"] = work.obs["dpt_pseudotime"].to_numpy()
    groups = list(work.obs["g"].cat.categories)
    data.uns["omics_cl_paga"] = {"groups": groups, "connectivities": work.uns["paga"]["connectivities"].toarray()}
    by_group = work.obs.assign(t=work.obs["dpt_pseudotime"]).groupby("g", observed=True)["t"].median()
    _record(data, "trajectory", {"root_group": str(root_group), "groupby": groupby, "use_rep": use_rep,
                                 "root_cell": str(data.obs_names[root])})
    return {"root": str(data.obs_names[root]), "group_pseudotime": by_group.sort_values()}
