"""Cell graphs on embeddings: UMAP-style connectivities of the kNN (:mod:`omics_cl.core.neighbors`), Leiden,
consensus, and K by bisection and merging."""
from __future__ import annotations

import random

import igraph
import numpy as np
import scipy.sparse as sp

from omics_cl.core.fuzzy import connectivities
from omics_cl.core.neighbors import knn

LEIDEN_RESTARTS = 1  # 10 made PCA + Leiden seed-stable but chose the worse cbmc solution (benchmarks/clustering.md)
NEIGHBOUR_RESOLUTIONS = (0.8, 0.9, 1.1, 1.25)
CONSENSUS_RUNS = 10  # Leiden runs pooled by consensus_leiden (benchmarks/clustering.md, "Consensus Leiden")
CONSENSUS_MAX_CELLS = 100_000  # above this, consensus_leiden's default is one run (each run costs a full Leiden)
# n_clusters: Leiden makes this many times the clusters, merge_clusters joins them (benchmarks/clustering.md)
OVERCLUSTER = 3.0
OVERCLUSTER_MIN_CELLS = 100  # ... but at most one cluster per this many cells before merging (small data: plain bisection)


def neighbor_graph(x: np.ndarray, k: int = 15, metric: str = "cosine", seed: int = 0,
                   method: str = "auto") -> sp.csr_matrix:
    """:func:`connectivities` of :func:`knn` (``method`` as there)."""
    return connectivities(*knn(x, k, metric, seed, method=method))


def leiden(adjacency: sp.spmatrix, resolution: float = 1.0, seed: int = 0, n_iterations: int = 2,
           restarts: int = LEIDEN_RESTARTS) -> np.ndarray:
    """Leiden (modularity, igraph implementation) on a weighted undirected graph; labels sorted by size.

    Runs ``restarts`` times (random streams derived from ``seed``) and keeps the partition with the
    highest modularity at ``resolution``, the objective Leiden optimises (no labels involved).
    """
    return _best_partition(_weighted_graph(adjacency), resolution, seed, n_iterations, restarts)


def _weighted_graph(adjacency: sp.spmatrix) -> igraph.Graph:
    adjacency = sp.triu(sp.csr_matrix(adjacency), k=1).tocoo()
    return igraph.Graph(n=adjacency.shape[0], edges=np.column_stack([adjacency.row, adjacency.col]).tolist(),
                        directed=False, edge_attrs={"weight": adjacency.data.tolist()})


def _partitions(g: igraph.Graph, resolution: float, seed: int, n_iterations: int, restarts: int,
                ) -> list[np.ndarray]:
    """``restarts`` Leiden memberships at ``resolution``, labels sorted by size; restart 0 uses the stream
    of ``seed`` itself, so one restart is the single run of that seed."""
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    out = []
    try:
        for restart in range(restarts):
            igraph.set_random_number_generator(random.Random(seed if restart == 0 else f"{seed}:{restart}"))
            labels = np.asarray(g.community_leiden(objective_function="modularity", weights="weight",
                                                   resolution=resolution, beta=0.01,
                                                   n_iterations=n_iterations).membership)
            # relabel 0..K-1 by decreasing size so labels do not depend on igraph's internal order
            out.append(np.argsort(size_order(labels))[labels])
    finally:
        igraph.set_random_number_generator(random)
    return out


def _most_modular(g: igraph.Graph, partitions: list[np.ndarray], resolution: float) -> np.ndarray:
    return max(partitions, key=lambda labels: g.modularity(labels.tolist(), weights="weight", resolution=resolution))


def _best_partition(g: igraph.Graph, resolution: float, seed: int, n_iterations: int, restarts: int,
                    ) -> np.ndarray:
    return _most_modular(g, _partitions(g, resolution, seed, n_iterations, restarts), resolution)


def size_order(labels: np.ndarray, n_labels: int = 0) -> np.ndarray:
    """Label ids 0..max(n_labels, K)-1 sorted by decreasing cluster size (ties by id; empty ones last)."""
    sizes = np.bincount(labels, minlength=n_labels)
    return np.lexsort((np.arange(len(sizes)), -sizes))


def leiden_n_clusters(adjacency: sp.spmatrix, n_clusters: int, seed: int = 0, max_steps: int = 40,
                      restarts: int = LEIDEN_RESTARTS, n_iterations: int = 2) -> tuple[np.ndarray, float]:
    """Leiden with ``n_clusters`` clusters at the resolution that bisection gives (with ``restarts`` > 1: the
    highest-modularity such partition found around it).

    The count at each resolution comes from :func:`leiden` (``restarts``, ``n_iterations``). With one
    restart, the smallest resolution giving ``n_clusters`` is used. With more, once a
    resolution r gives ``n_clusters``, r x ``NEIGHBOUR_RESOLUTIONS`` are run too, and of every restart with
    exactly ``n_clusters`` clusters the one with the highest modularity at resolution 1 (comparable across
    resolutions) is returned with its resolution. No labels are involved. When no resolution gives
    exactly ``n_clusters`` (the count is not monotone in the resolution), the closest count is returned.
    """
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
    n_cells = adjacency.shape[0]
    if n_clusters > n_cells:
        raise ValueError(f"n_clusters={n_clusters} is larger than the number of cells ({n_cells})")
    g = _weighted_graph(adjacency)
    tried: dict[float, list[np.ndarray]] = {}
    counts: dict[float, int] = {}

    def run(res: float) -> int:
        tried[res] = _partitions(g, res, seed, n_iterations, restarts)
        counts[res] = int(_most_modular(g, tried[res], res).max()) + 1
        return counts[res]

    lo, hi = 0.0, 1.0
    while run(hi) < n_clusters and hi < 1e3:
        lo, hi = hi, hi * 2
    for _ in range(max_steps):
        if counts[hi] == n_clusters:
            break
        mid = 0.5 * (lo + hi)
        if run(mid) < n_clusters:
            lo = mid
        else:
            hi = mid
    if counts[hi] != n_clusters or restarts == 1:  # one run per resolution: the smallest resolution, closest count
        best = min(counts, key=lambda r: (abs(counts[r] - n_clusters), r))
        return _most_modular(g, tried[best], best), best
    for factor in NEIGHBOUR_RESOLUTIONS:
        run(hi * factor)
    exact = [(res, labels) for res, runs in tried.items() for labels in runs if int(labels.max()) + 1 == n_clusters]
    res, labels = max(exact, key=lambda pair: (g.modularity(pair[1].tolist(), weights="weight"), -pair[0]))
    return labels, res


def coassociation_graph(adjacency: sp.spmatrix, partitions: list[np.ndarray]) -> sp.csr_matrix:
    """``adjacency`` with each edge's weight times the share of ``partitions`` that put its two cells in one
    cluster (edges no partition keeps together are dropped)."""
    edges = sp.triu(sp.csr_matrix(adjacency), k=1).tocoo()
    together = np.mean([labels[edges.row] == labels[edges.col] for labels in partitions], axis=0)
    upper = sp.csr_matrix((edges.data * together, (edges.row, edges.col)), shape=adjacency.shape)
    upper.eliminate_zeros()
    return (upper + upper.T).tocsr()


def merge_clusters(adjacency: sp.spmatrix, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Join clusters pairwise down to ``n_clusters``: each step merges the pair (i, j) whose edge weight between
    them is the largest share of the smaller one's total edge weight, ``w_ij / min(vol_i, vol_j)``. Pieces of
    one population send much of their weight to each other and merge first; a small population with few
    edges out of it stays apart, which modularity at a low resolution would absorb into a neighbour. Labels
    are sorted by size; no labels of cell types are involved."""
    n_current = int(labels.max()) + 1
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
    onehot = sp.csr_matrix((np.ones(len(labels)), (np.arange(len(labels)), labels)), shape=(len(labels), n_current))
    weights = (onehot.T @ sp.csr_matrix(adjacency) @ onehot).toarray()
    group = np.arange(n_current)  # current cluster of each original label
    while weights.shape[0] > n_clusters:
        volume = np.maximum(weights.sum(1), np.finfo(float).tiny)
        share = weights / np.minimum.outer(volume, volume)
        np.fill_diagonal(share, -np.inf)
        i, j = sorted(np.unravel_index(int(np.argmax(share)), share.shape))
        weights[i] += weights[j]
        weights[:, i] += weights[:, j]
        weights = np.delete(np.delete(weights, j, 0), j, 1)
        group = np.where(group == j, i, np.where(group > j, group - 1, group))
    merged = group[labels]
    return np.argsort(size_order(merged))[merged]


def overcluster_target(n_cells: int, n_clusters: int, overcluster: float = OVERCLUSTER) -> int:
    """Clusters Leiden makes before :func:`merge_clusters` joins them down to ``n_clusters``:
    ``round(overcluster x n_clusters)``, at most one per ``OVERCLUSTER_MIN_CELLS`` cells (merging pieces of a few
    dozen cells follows noise: on 700 PBMCs it cost the trained embeddings up to .14 ARI), never below
    ``n_clusters``."""
    if overcluster < 1:
        raise ValueError(f"overcluster must be >= 1, got {overcluster}")
    return max(n_clusters, min(round(overcluster * n_clusters), n_cells // OVERCLUSTER_MIN_CELLS))


def consensus_leiden(adjacency: sp.spmatrix, seed: int = 0, runs: int | None = None, resolution: float = 1.0,
                     n_clusters: int | None = None, n_iterations: int = 2,
                     overcluster: float = OVERCLUSTER) -> tuple[np.ndarray, float, int]:
    """Leiden pooled over ``runs`` random streams: the partition of one run (at ``resolution``, or bisected to
    ``n_clusters``), ``runs`` runs at that resolution (the first is that partition), and Leiden again, the same
    way, on :func:`coassociation_graph` of them. Edges between cells that the runs split now and then weigh
    less, so the result no longer flips with the seed. No labels are involved.

    ``runs``: ``None`` is ``CONSENSUS_RUNS`` up to ``CONSENSUS_MAX_CELLS`` cells and 1 above; 1 is a single
    Leiden run (:func:`leiden` / :func:`leiden_n_clusters`). With ``n_clusters``, the bisection aims at
    :func:`overcluster_target` clusters and :func:`merge_clusters` joins them on ``adjacency`` down to
    ``n_clusters`` (``overcluster`` 1: bisect to ``n_clusters`` itself). Returns ``(labels, resolution,
    runs)``, the resolution of the Leiden partition before any merging.
    """
    if runs is None:
        runs = CONSENSUS_RUNS if adjacency.shape[0] <= CONSENSUS_MAX_CELLS else 1
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if n_clusters is not None and not 1 <= n_clusters <= adjacency.shape[0]:
        raise ValueError(f"n_clusters must be between 1 and the number of cells ({adjacency.shape[0]}), "
                         f"got {n_clusters}")
    target = None if n_clusters is None else overcluster_target(adjacency.shape[0], n_clusters, overcluster)

    def partition(adj: sp.spmatrix) -> tuple[np.ndarray, float]:
        if target is None:
            return leiden(adjacency=adj, resolution=resolution, seed=seed, n_iterations=n_iterations), resolution
        return leiden_n_clusters(adj, target, seed, n_iterations=n_iterations)

    labels, res = partition(adjacency)
    if runs > 1:
        pooled = _partitions(_weighted_graph(adjacency), res, seed, n_iterations, runs)
        labels, res = partition(coassociation_graph(adjacency, pooled))
    if n_clusters is not None and labels.max() + 1 > n_clusters:
        labels = merge_clusters(adjacency, labels, n_clusters)
    return labels, res, runs
