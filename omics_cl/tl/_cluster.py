"""Clustering: ``cluster`` (any registered cluster-job method) and ``cluster_embedding`` (Leiden on any
representation).

Keys written by :func:`cluster` for ``method="<m>"`` (``<m>`` is ``key_added`` where given):

- ``obsm["X_<m>"]``: the embedding;
- ``obsm["X_<m>_latent"]``: the learnt latent, when the embedding is a fusion of it with another view (``cae``
  with ``fusion="wnn"``, ``scinno`` / ``siamese`` with ``readout="leiden"``);
- ``obsp["<m>_connectivities"]``: with ``n_members`` > 1 (an ensemble, ``omics_cl.models.members``), the mean of
  the members' kNN graphs; ``obsm["X_<m>"]`` (and ``"X_<m>_latent"``) then hold the members' arrays side by side;
- ``obs["<m>_cluster"]``: clusters (categorical, "0" is the largest): Leiden on the embedding (an ensemble: on the
  members' mean graph), or for the self-clustering methods with ``readout="argmax"`` (``scinno``, ``siamese``) the
  argmax of their soft memberships;
- ``obsm["<m>_membership"]``: those soft memberships (cells x K, columns in the order of the cluster names);
- ``uns["omics_cl"]["<m>"]``: parameters, seed, protocol, resolution, cluster count, HVG flavour used
  (``hvg_flavor``), loss per epoch, library versions and the machine (``omics_cl.environment``).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import replace

import anndata as ad
import numpy as np
import pandas as pd

from omics_cl import models
from omics_cl.checks import check_feature_count, check_key_added, check_positive_int
from omics_cl.core import graph
from omics_cl.data.counts import counts_matrix
from omics_cl.data.device_sources import in_memory
from omics_cl.data.preprocess import prepare_counts
from omics_cl.environment import provenance
from omics_cl.fallbacks import recorded
from omics_cl.tl._common import store_record, warn_cells_without_features


def check_leiden_consensus(runs: int | None, leiden_restarts: int = 1) -> None:
    """Refuse a ``leiden_consensus`` that is neither ``None`` nor a positive integer, or that asks to pool runs
    together with ``leiden_restarts`` > 1 (which keeps the most modular run)."""
    check_positive_int(runs, "leiden_consensus", allow_none=True)
    if leiden_restarts > 1 and runs not in (None, 1):
        raise ValueError("leiden_restarts > 1 keeps the most modular run; it cannot be pooled: pass "
                         "leiden_consensus=1 with it")


def check_overcluster(overcluster: float) -> None:
    """Refuse an ``overcluster`` factor below 1 (or not a number) before any work."""
    if isinstance(overcluster, bool) or not isinstance(overcluster, (int, float, np.integer, np.floating)) \
            or not overcluster >= 1:
        raise ValueError(f"overcluster must be a number >= 1, got {overcluster!r}")


def cluster_embedding(adata: ad.AnnData, use_rep: str, n_clusters: int | None = None, resolution: float = 1.0,
                      key_added: str | None = None, seed: int = 0, n_neighbors: int = 15,
                      n_dims: int | None = None, leiden_restarts: int = 1, leiden_consensus: int | None = None,
                      overcluster: float = graph.OVERCLUSTER) -> dict:
    """Leiden on a cosine kNN graph of ``obsm[use_rep]`` (first ``n_dims`` columns if given).

    Protocols: ``resolution`` as given, or, when ``n_clusters`` is set, the resolution found by
    bisection that yields that many clusters. Writes ``obs[key_added]`` (default
    ``"<rep>_cluster"``) and returns ``{"protocol", "resolution", "n_clusters", "leiden_consensus"}`` (with
    ``n_clusters``, also ``"overcluster"`` and ``"clusters_before_merge"``).

    Parameters
    ----------
    adata
        AnnData with ``obsm[use_rep]``.
    use_rep
        Key in ``obsm`` of the embedding.
    n_clusters
        Number of clusters, reached by bisecting the resolution (``None``: use ``resolution``).
    resolution
        Leiden resolution (used when ``n_clusters`` is ``None``).
    key_added
        obs column for the clusters (``None``: ``"<rep>_cluster"``).
    seed
        Random seed.
    n_neighbors
        Neighbours of the cosine kNN graph.
    n_dims
        Use only the first ``n_dims`` columns (``None``: all).
    leiden_restarts
        Leiden runs per resolution; the most modular is kept (with ``n_clusters``: the most modular
        partition with that count around the bisected resolution). 10 made PCA + Leiden seed-stable on
        the registry sets but lowered its median ARI on cbmc (benchmarks/clustering.md); 1: a single run.
    leiden_consensus
        Leiden runs pooled into one partition (:func:`omics_cl.core.graph.consensus_leiden`: clusters of
        the graph reweighted by how often the runs keep two cells together); ``None``: 10 up to 100,000
        cells, else 1; 1: a single run. Not combined with ``leiden_restarts`` > 1.
    overcluster
        With ``n_clusters``: Leiden first makes ``overcluster`` x ``n_clusters`` clusters (at most one per 100
        cells: :func:`omics_cl.core.graph.overcluster_target`), then the most connected pairs are merged down to
        ``n_clusters`` (:func:`omics_cl.core.graph.merge_clusters`), so small distinct populations are kept
        rather than a large one split (benchmarks/clustering.md); 1: bisect straight to ``n_clusters`` (the protocol
        before 2026-12-03). Not used with ``leiden_restarts`` > 1. On an embedding whose clusters keep little of
        their edge weight inside (cae's contrastive latent alone) the greedy merge can snowball one cluster; compare
        with 1 there.

    Returns
    -------
    dict
        ``protocol``, ``resolution`` and ``n_clusters``.
    """
    if use_rep not in adata.obsm:
        raise ValueError(f"obsm[{use_rep!r}] not found; present: {list(adata.obsm.keys())}")
    if resolution <= 0:
        raise ValueError(f"resolution must be > 0, got {resolution}")
    z = np.asarray(adata.obsm[use_rep])[:, :n_dims]
    if not np.isfinite(z).all():
        raise ValueError(f"obsm[{use_rep!r}] contains NaN/inf")
    check_leiden_consensus(leiden_consensus, leiden_restarts)
    check_overcluster(overcluster)
    adjacency = graph.neighbor_graph(z, n_neighbors, "cosine", seed)
    key = key_added or f"{use_rep.removeprefix('X_')}_cluster"
    return cluster_graph(adata, adjacency, key, n_clusters, resolution, seed, leiden_restarts, leiden_consensus,
                         overcluster)


def cluster_graph(adata: ad.AnnData, adjacency, key_added: str, n_clusters: int | None = None,
                  resolution: float = 1.0, seed: int = 0, leiden_restarts: int = 1,
                  leiden_consensus: int | None = None, overcluster: float = graph.OVERCLUSTER) -> dict:
    """Leiden on a cell graph (``adjacency``, cells x cells) as :func:`cluster_embedding` runs it on its kNN
    graph; writes ``obs[key_added]`` and returns the same record."""
    protocol = "resolution" if n_clusters is None else "n_clusters"
    if leiden_restarts > 1:  # the most modular restart, not pooled
        runs = 1
        if n_clusters is None:
            labels = graph.leiden(adjacency, resolution, seed, restarts=leiden_restarts)
        else:
            labels, resolution = graph.leiden_n_clusters(adjacency, n_clusters, seed, restarts=leiden_restarts)
    else:
        labels, resolution, runs = graph.consensus_leiden(adjacency, seed, leiden_consensus, resolution, n_clusters,
                                                          overcluster=overcluster)
    k = int(labels.max()) + 1
    adata.obs[key_added] = pd.Categorical(labels.astype(str), categories=[str(i) for i in range(k)])
    merged = {} if n_clusters is None or leiden_restarts > 1 else {
        "overcluster": float(overcluster),
        "clusters_before_merge": graph.overcluster_target(adjacency.shape[0], n_clusters, overcluster)}
    return {"protocol": protocol, "resolution": float(resolution), "n_clusters": k, "leiden_consensus": runs,
            **merged}


def write_memberships(adata: ad.AnnData, key: str, labels: np.ndarray, memberships: np.ndarray,
                      protocol: str, resolution: float) -> dict:
    """Argmax clusters renamed by decreasing size ("0" largest; empty clusters last) as ``obs["<key>_cluster"]`` and
    the memberships in that column order as ``obsm["<key>_membership"]``."""
    order = graph.size_order(labels, memberships.shape[1])
    rank = np.argsort(order)
    names = [str(i) for i in range(len(order))]
    adata.obs[f"{key}_cluster"] = pd.Categorical(np.asarray(names)[rank[labels]], categories=names)
    adata.obsm[f"{key}_membership"] = memberships[:, order]
    return {"protocol": protocol, "resolution": float(resolution), "n_clusters": len(np.unique(labels)),
            "n_centres": len(order)}


@recorded
def cluster(adata: ad.AnnData, method: str = "cae", n_clusters: int | None = None, resolution: float = 1.0,
            seed: int = 0, layer: str | None = None, n_top_genes: int | None = 2000, n_neighbors: int = 15,
            progress: bool = True, leiden_restarts: int = 1, leiden_consensus: int | None = None,
            stream: bool | None = None, overcluster: float = graph.OVERCLUSTER, key_added: str | None = None,
            **method_params) -> dict:
    """Embed cells with ``method`` (any registered cluster method, ``omics_cl.models.names("cluster")``)
    and cluster them.

    ``"pca"``, ``"ae"`` and ``"cae"`` give an embedding clustered by Leiden (``resolution``, or the
    resolution bisected to ``n_clusters``). Self-clustering methods (``"scinno"``, ``"siamese"``) train
    ``n_clusters`` centres; without it they estimate K by Leiden at ``resolution`` on their pretrained latent
    and report it (``k_estimated`` in the record's ``params``). Their default read-off is Leiden on their
    embedding fused with PCA views, as for cae; ``readout="argmax"`` (the seeds' recipe) writes the argmax
    of their soft memberships as clusters.
    Counts are read from ``adata.layers[layer]`` or ``adata.X`` (raw integer counts; backed
    AnnData works), normalised to 1e4, log1p, and restricted to ``n_top_genes`` seurat_v3 HVGs (when its
    loess fails: wider spans, then Pearson residuals, with a warning; ``hvg_flavor`` in the record). Cells with
    counts but none among the HVGs are kept, warned about and counted (``n_cells_without_features``).
    Extra keyword arguments go to the method's config or training config (e.g. ``epochs=50``,
    ``temperature=0.1``; ``config={...}`` / ``train={...}`` for a name both have).
    A backed AnnData (``sc.read_h5ad(path, backed="r")``) is streamed by methods that can (``cae``, ``ae``):
    rows are read in chunks, batches prepared ahead in a background thread and the epochs visit the cells in
    shuffled chunk groups (``omics_cl.data.streaming.StreamingCountsSource``), so the matrix is never loaded
    whole; the file is only read. ``stream`` forces this on (any AnnData) or off (backed: random row reads,
    the in-memory results but far slower). No labels are used. Returns the run record also stored in
    ``uns["omics_cl"][method]``; its ``graph_dims`` (PCA: 30) is how many embedding columns the cell graph used.
    ``key_added`` writes every result under that name instead of the method's (as scanpy's ``key_added``), so runs
    of one method with other settings can sit side by side.

    Parameters
    ----------
    adata
        Cells x genes AnnData of raw counts.
    method
        Registered cluster method.
    n_clusters
        Number of clusters, reached by bisecting the resolution (``None``: use ``resolution``).
    resolution
        Leiden resolution (used when ``n_clusters`` is ``None``).
    seed
        Random seed.
    layer
        Layer holding the raw counts (``None``: ``X``).
    n_top_genes
        Number of HVGs (``None``: all genes).
    n_neighbors
        Neighbours of the cosine kNN graph used for Leiden.
    progress
        Show a training progress bar.
    leiden_restarts
        Leiden runs per resolution (see :func:`cluster_embedding`), also for the self-clustering methods'
        centres and K estimate.
    leiden_consensus
        Leiden runs pooled for the embedding methods' clusters (see :func:`cluster_embedding`).
    overcluster
        With ``n_clusters``: clusters made before merging, as a multiple of it (see :func:`cluster_embedding`).
    stream
        Stream the counts in chunks (``None``: when they are backed and the method can;
        ``True`` for a method or config that cannot: ``models.StreamingError``).
    key_added
        Name the results are written under: ``obsm["X_<key>"]``, ``obs["<key>_cluster"]``,
        ``uns["omics_cl"]["<key>"]``, ... (``None``: the method's name).
    **method_params
        Method config / training config values.

    Returns
    -------
    dict
        The run record.
    """
    spec = models.get(method, "cluster")
    config, _ = models.configure(spec, **method_params)  # a wrong parameter fails before any work
    check_leiden_consensus(leiden_consensus, leiden_restarts)
    check_overcluster(overcluster)
    check_feature_count(n_top_genes, "n_top_genes")
    check_key_added(key_added)
    if n_clusters is not None and not (isinstance(n_clusters, (int, np.integer)) and 1 <= n_clusters <= adata.n_obs):
        raise ValueError(f"n_clusters must be an integer between 1 and the number of cells ({adata.n_obs}), "
                         f"got {n_clusters!r}")
    can_stream = spec.can_stream(config)
    if stream and not can_stream:
        raise models.StreamingError(f"method {method!r} cannot stream its input with these parameters; streaming "
                                    f"methods: {models.streaming_names()} (cae / ae with fusion='none')",
                                    method, by_config=bool(spec.streams))
    backed = not in_memory(counts_matrix(adata, layer))
    if stream is None and backed and spec.streams and not can_stream:
        warnings.warn(f"{method} with these parameters reads the whole matrix (fusion's PCA view), so the backed "
                      "AnnData is read, not streamed; pass fusion='none' to stream it", stacklevel=2)
    stream = can_stream and backed if stream is None else stream
    start = time.perf_counter()
    prepared = replace(prepare_counts(adata, layer, n_top_genes), stream=stream)
    empty = warn_cells_without_features({"": prepared.n_cells_without_features()},
                                        f"the {prepared.normalizer.n_features} selected genes",
                                        "the model gets one and the same input for all of them")
    ctx = models.Context(seed, n_clusters, resolution, n_neighbors, leiden_restarts)
    run = models.run_members if getattr(config, "n_members", 1) > 1 else models.run  # pca has no ensembles
    out, info = run(spec, prepared, ctx, progress, **method_params)
    train_seconds = time.perf_counter() - start
    key = key_added or method
    adata.obsm[f"X_{key}"] = out["embedding"]
    for name, value, store in ((f"X_{key}_latent", out.get("latent"), adata.obsm),
                               (f"{key}_connectivities", out.get("graph"), adata.obsp)):
        if value is None:
            store.pop(name, None)  # not left from an earlier run
        else:
            store[name] = value
    graph_dims = info.pop("graph_dims", None)
    if "graph" in out:
        clusters = cluster_graph(adata, out["graph"], f"{key}_cluster", n_clusters, resolution, seed,
                                 leiden_restarts, leiden_consensus, overcluster)
    elif "memberships" in out:
        u = out["memberships"]
        clusters = write_memberships(adata, key, u.argmax(1), u,
                                     "resolution" if info["k_estimated"] else "n_clusters", resolution)
    else:
        adata.obsm.pop(f"{key}_membership", None)  # not left from an earlier argmax run
        clusters = cluster_embedding(adata, f"X_{key}", n_clusters, resolution, f"{key}_cluster", seed,
                                     n_neighbors, graph_dims, leiden_restarts, leiden_consensus, overcluster)
    record = {"method": method, "job": "cluster", "seed": seed, "layer": layer, "n_top_genes": n_top_genes,
              "n_features": prepared.normalizer.n_features, "hvg_flavor": prepared.hvg_flavor,
              "n_neighbors": n_neighbors, "graph_dims": graph_dims, "stream": stream,
              "leiden_restarts": leiden_restarts, **empty,
              "train_seconds": train_seconds, **clusters, "params": info, **provenance()}
    store_record(adata, key, record)
    return record
