"""Downstream analyses of a (joint) embedding: sub-populations, label consistency, trajectory."""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from omics_cl import get
from omics_cl.core.neighbors import knn
from omics_cl.data.counts import check_finite_counts
from omics_cl.data.preprocess import fit_lognormalizer
from omics_cl.tl._annotation_rules import annotation_flags, confusion_groups, flagged_groups
from omics_cl.tl._cluster import cluster_embedding
from omics_cl.tl._common import check_result_key, marker_genes, store_record


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

    Parameters
    ----------
    data
        MuData (RNA counts from ``rna``) or RNA AnnData, with ``obsm[use_rep]``.
    groupby
        Label column in ``obs``.
    group
        The label to split.
    use_rep
        Key in ``obsm`` of the joint embedding.
    resolution
        Leiden resolution (used when ``n_clusters`` is ``None``).
    n_clusters
        Number of clusters, reached by bisecting the resolution (``None``: use ``resolution``).
    n_neighbors
        Neighbours of the cosine kNN graph.
    n_genes
        Marker genes per sub-cluster.
    layer
        RNA layer to rank genes on (``None``: ``X``).
    gene_activity
        Cells x genes gene activity, same cells as ``data``, for ``activity_markers``.
    key_added
        obs column for the sub-clusters.
    seed
        Random seed.

    Returns
    -------
    dict[str, pandas.DataFrame | None]
        ``markers`` and ``activity_markers``.
    """
    labels = get.obs_column(data, groupby).astype(str).to_numpy()
    cells = np.flatnonzero(labels == str(group))
    if len(cells) < 2 * n_neighbors:
        raise ValueError(f"{groupby} == {group!r} has {len(cells)} cells; sub-clustering needs at least "
                         f"{2 * n_neighbors}")
    part = ad.AnnData(obs=pd.DataFrame(index=data.obs_names[cells]), obsm={"rep": get.rep(data, use_rep)[cells]})
    info = cluster_embedding(part, "rep", n_clusters, resolution, "sub", seed, n_neighbors)
    sub = (f"{group}." + part.obs["sub"].astype(str)).to_numpy()
    if info["n_clusters"] < 2:
        raise ValueError(f"{group!r} forms a single cluster at resolution {resolution}; raise it or give n_clusters")
    sizes = part.obs["sub"].value_counts()
    if sizes.min() < 2:
        raise ValueError(f"{int((sizes < 2).sum())} of the {len(sizes)} sub-clusters of {group!r} hold one cell; "
                         "marker genes need at least 2 per sub-cluster: lower n_clusters or the resolution")
    column = np.full(data.n_obs, None, dtype=object)
    column[cells] = sub
    markers = rank_genes(get.rna_modality(data)[cells], sub, layer, n_genes)
    activity = None
    if gene_activity is not None:
        if not gene_activity.obs_names.equals(data.obs_names):
            raise ValueError("gene_activity must have the same cells as data, in the same order")
        activity = rank_genes(gene_activity[cells], sub, None, n_genes)
    data.obs[key_added] = pd.Categorical(column)
    store_record(data, "subclusters", {"groupby": groupby, "group": str(group), "use_rep": use_rep, **info})
    return {"markers": markers, "activity_markers": activity}


def rank_genes(adata: ad.AnnData, groups: np.ndarray, layer: str | None, n_genes: int) -> pd.DataFrame:
    import scanpy as sc

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
                      min_enrichment: float = 4.0, min_group_cells: int = 20, seed: int = 0,
                      key_added: str | None = None) -> pd.DataFrame:
    """Cells whose given label disagrees with their neighbourhood in the joint embedding more than the
    embedding's own mixing of labels explains (the group rule of :func:`annotation_flags`).

    For each labelled cell: ``agreement`` = share of its ``n_neighbors`` cosine neighbours (labelled ones)
    carrying its label, and the neighbourhood's majority label. Candidates: the majority label differs from
    the cell's own and holds at least ``min_share`` of the neighbours. A candidate is suspect when its
    (given, neighbourhood) group has at least ``min_group_cells`` cells and ``min_enrichment`` times the count
    the opposite group explains (:func:`confusion_groups`: two types the embedding mixes leave disagreements
    both ways, a relabelled subset one way); ``min_enrichment=0`` keeps every candidate (the cell-level rule).
    Cells without a label or labelled one of ``exclude`` are neither scored nor counted as votes. Writes
    ``obs["omics_cl_label_agreement"]``, ``obs["omics_cl_neighbourhood_label"]``, ``obs["omics_cl_label_suspect"]``
    and the record ``uns["omics_cl"]["label_consistency"]``; under ``key_added`` ``obs["<key>_label_agreement"]``,
    ... and ``uns["omics_cl"]["<key>"]`` instead (a second check beside the first).
    Returns one row per (given, neighbourhood) label group of suspect cells, the group its mixing explains
    least first: ``n_cells``, ``expected``, ``estimated_precision`` (label-free), ``mean_agreement``,
    ``fraction_of_label`` and ``markers``, the ``n_markers`` RNA genes detected in more of these cells than of
    the agreeing cells of their label.

    Parameters
    ----------
    data
        MuData (RNA counts from ``rna``) or RNA AnnData, with ``obsm[use_rep]``.
    label_key
        Label column in ``obs``.
    use_rep
        Key in ``obsm`` of the joint embedding.
    n_neighbors
        Neighbours per cell.
    min_share
        Smallest share of the neighbours the majority label needs.
    exclude
        Labels neither scored nor voting.
    layer
        RNA layer for the markers (``None``: ``X``).
    n_markers
        Marker genes per group.
    min_enrichment
        Times the explained count a group must reach (0: no group rule).
    min_group_cells
        Smallest group that can be suspect.
    seed
        Random seed.
    key_added
        Name to write the results under (``None``: ``omics_cl_*`` columns, record ``label_consistency``).

    Returns
    -------
    pandas.DataFrame
        One row per suspect group, as described above.
    """
    check_result_key(data, key_added, "label_consistency")
    raw = get.obs_column(data, label_key)
    usable = raw.notna().to_numpy() & ~raw.astype(str).isin([str(e) for e in exclude]).to_numpy()
    labels = raw.astype(str).to_numpy()
    if len(np.unique(labels[usable])) < 2:
        raise ValueError(f"{label_key!r} has fewer than 2 usable labels; nothing to compare")
    idx, _ = knn(get.rep(data, use_rep), n_neighbors + 1, "cosine", seed)
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
    given = np.where(usable, labels, None)
    neighbourhood = majority.astype(str)
    suspect, _ = annotation_flags(given, neighbourhood, share, np.unique(labels[usable]), None, min_share,
                                  min_enrichment, min_group_cells, min_agreement=0.0)
    candidates, _ = annotation_flags(given, neighbourhood, share, np.unique(labels[usable]), None, min_share,
                                     0.0, 0, min_agreement=0.0)
    table = confusion_groups(labels, neighbourhood, candidates)
    table = flagged_groups(table, labels, neighbourhood, suspect)
    table = table.rename(columns={"atlas_label": "given_label", "transferred_label": "neighbourhood_label"})
    rna = get.rna_modality(data)
    x = rna.layers[layer] if layer else rna.X
    counts_view = ad.AnnData(x, obs=pd.DataFrame(index=rna.obs_names), var=pd.DataFrame(index=rna.var_names))
    extra = []
    for label, suggested in zip(table["given_label"], table["neighbourhood_label"]):
        cells = np.flatnonzero(suspect & (labels == label) & (neighbourhood == suggested))
        agreeing = np.flatnonzero(usable & ~candidates & (labels == label))
        extra.append({"mean_agreement": float(agreement[cells].mean()),
                      "fraction_of_label": len(cells) / int((usable & (labels == label)).sum()),
                      "markers": ", ".join(marker_genes(counts_view, cells, agreeing, n_markers))})
    table = pd.concat([table.reset_index(drop=True), pd.DataFrame(extra, columns=["mean_agreement",
                       "fraction_of_label", "markers"])], axis=1)
    table = table.iloc[np.argsort(-(table["n_cells"] - table["expected"]).to_numpy(), kind="stable")]
    table = table.reset_index(drop=True)
    excess = np.maximum(table["n_cells"] - table["expected"], 0).sum()
    prefix = key_added or "omics_cl"
    data.obs[f"{prefix}_label_agreement"] = agreement
    data.obs[f"{prefix}_neighbourhood_label"] = pd.Categorical(majority)
    data.obs[f"{prefix}_label_suspect"] = suspect
    store_record(data, key_added or "label_consistency", {
        "job": "label_consistency", "label_key": label_key, "use_rep": use_rep, "n_neighbors": n_neighbors,
        "min_share": min_share, "min_enrichment": min_enrichment, "min_group_cells": min_group_cells,
        "n_suspect": int(suspect.sum()),
        "estimated_precision": float(excess / suspect.sum()) if suspect.any() else None})
    return table


def trajectory(data, root_group: str, groupby: str, use_rep: str = "X_sci2cl", n_neighbors: int = 15,
               seed: int = 0) -> dict:
    """PAGA over ``groupby`` and diffusion pseudotime on the embedding, rooted in ``root_group``.

    The root cell is the cell of ``root_group`` nearest to the group's median in diffusion-map space (a
    typical cell of the group, not an outlier). Writes ``obs["omics_cl_pseudotime"]``
    and ``uns["omics_cl_paga"]`` (group names and the connectivity matrix); returns ``{"root",
    "group_pseudotime"}`` with the median pseudotime per group.

    Parameters
    ----------
    data
        AnnData or MuData with ``obsm[use_rep]``.
    root_group
        Label of the root group.
    groupby
        Label column in ``obs``.
    use_rep
        Key in ``obsm`` of the joint embedding.
    n_neighbors
        Neighbours of the cosine kNN graph.
    seed
        Random seed.

    Returns
    -------
    dict
        ``root`` (the root cell) and ``group_pseudotime``.
    """
    import scanpy as sc

    labels = get.obs_column(data, groupby)
    if str(root_group) not in set(labels.astype(str)):
        raise ValueError(f"root group {root_group!r} not in {groupby!r}; groups: {sorted(set(labels.astype(str)))}")
    work = ad.AnnData(obs=pd.DataFrame({"g": pd.Categorical(labels.astype(str))}, index=data.obs_names),
                      obsm={"rep": get.rep(data, use_rep)})
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
    store_record(data, "trajectory", {"root_group": str(root_group), "groupby": groupby, "use_rep": use_rep,
                                 "root_cell": str(data.obs_names[root])})
    return {"root": str(data.obs_names[root]), "group_pseudotime": by_group.sort_values()}
