"""Tools (scanpy style): AnnData in, results written back into it.

Keys written by :func:`cluster` for ``method="<m>"``:

- ``obsm["X_<m>"]``: the embedding;
- ``obs["<m>_cluster"]``: Leiden clusters (categorical, "0" is the largest);
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
from omics_cl.data.preprocess import prepare_counts, validated_counts
from omics_cl.data.transfer import transfer_features
from omics_cl.models import CLUSTER_METHODS
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


def cluster(adata: ad.AnnData, method: str = "cae", n_clusters: int | None = None, resolution: float = 1.0,
            seed: int = 0, layer: str | None = None, n_top_genes: int | None = 2000, n_neighbors: int = 15,
            progress: bool = True, **method_params) -> dict:
    """Embed cells with ``method`` (``"cae"``, ``"ae"`` or ``"pca"``) and cluster them with Leiden.

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
    z, info = CLUSTER_METHODS[method](prepared, seed=seed, progress=progress, **method_params)
    train_seconds = time.perf_counter() - start
    adata.obsm[f"X_{method}"] = z
    graph_dims = info.pop("graph_dims", None)
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

