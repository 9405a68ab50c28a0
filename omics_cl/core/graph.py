"""Cell graphs on embeddings: kNN, UMAP-style connectivities, Leiden, and K by bisection."""
from __future__ import annotations

import random

import igraph
import numpy as np
import scipy.sparse as sp

EXACT_KNN_MAX_CELLS = 20_000


def knn(x: np.ndarray, k: int = 15, metric: str = "cosine", seed: int = 0,
        query: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices and distances of each row's ``k`` nearest rows of ``x`` (itself first), or, given ``query``,
    of each query row's ``k`` nearest rows of ``x``.

    Exact (brute force) up to ``EXACT_KNN_MAX_CELLS`` rows of ``x``, pynndescent above.
    """
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"a kNN graph needs at least 2 cells, got {n}")
    k = min(k, n)
    if query is not None:
        query = np.asarray(query, dtype=np.float32)
    if n <= EXACT_KNN_MAX_CELLS:
        from sklearn.neighbors import NearestNeighbors

        dist, idx = NearestNeighbors(n_neighbors=k, metric=metric, algorithm="brute").fit(x).kneighbors(
            x if query is None else query)
    else:
        from pynndescent import NNDescent

        index = NNDescent(x, n_neighbors=k, metric=metric, random_state=seed, n_jobs=1)
        idx, dist = index.neighbor_graph if query is None else index.query(query, k=k)
    return idx.astype(np.int64), dist.astype(np.float32)


def knn_vote(reference: np.ndarray, query: np.ndarray, labels: np.ndarray, n_classes: int, k: int = 30,
             metric: str = "cosine", seed: int = 0) -> np.ndarray:
    """Share of each query row's ``k`` nearest reference rows (:func:`knn`) in each class: query x
    ``n_classes``."""
    idx, _ = knn(reference, k, metric, seed, query=query)
    votes = np.zeros((idx.shape[0], n_classes), dtype=np.float32)
    np.add.at(votes, (np.repeat(np.arange(idx.shape[0]), idx.shape[1]), np.asarray(labels)[idx].ravel()),
              1.0 / idx.shape[1])
    return votes


def connectivities(idx: np.ndarray, dist: np.ndarray) -> sp.csr_matrix:
    """Symmetric fuzzy-union connectivities of a kNN graph (the weights scanpy's neighbors computes)."""
    from umap.umap_ import fuzzy_simplicial_set

    n, k = idx.shape
    graph, _, _ = fuzzy_simplicial_set(sp.coo_matrix((n, 1)), k, None, None, knn_indices=idx, knn_dists=dist,
                                       set_op_mix_ratio=1.0, local_connectivity=1.0)
    return sp.csr_matrix(graph)


def neighbor_graph(x: np.ndarray, k: int = 15, metric: str = "cosine", seed: int = 0) -> sp.csr_matrix:
    return connectivities(*knn(x, k, metric, seed))


def leiden(adjacency: sp.spmatrix, resolution: float = 1.0, seed: int = 0, n_iterations: int = 2) -> np.ndarray:
    """Leiden (modularity, igraph implementation) on a weighted undirected graph; labels sorted by size."""
    adjacency = sp.triu(sp.csr_matrix(adjacency), k=1).tocoo()
    g = igraph.Graph(n=adjacency.shape[0], edges=np.column_stack([adjacency.row, adjacency.col]).tolist(),
                     directed=False, edge_attrs={"weight": adjacency.data.tolist()})
    igraph.set_random_number_generator(random.Random(seed))
    try:
        parts = g.community_leiden(objective_function="modularity", weights="weight", resolution=resolution,
                                   beta=0.01, n_iterations=n_iterations)
    finally:
        igraph.set_random_number_generator(random)
    labels = np.asarray(parts.membership)
    # relabel 0..K-1 by decreasing size so labels do not depend on igraph's internal order
    return np.argsort(size_order(labels))[labels]


def size_order(labels: np.ndarray, n_labels: int = 0) -> np.ndarray:
    """Label ids 0..max(n_labels, K)-1 sorted by decreasing cluster size (ties by id; empty ones last)."""
    sizes = np.bincount(labels, minlength=n_labels)
    return np.lexsort((np.arange(len(sizes)), -sizes))


def leiden_n_clusters(adjacency: sp.spmatrix, n_clusters: int, seed: int = 0, max_steps: int = 40,
                      ) -> tuple[np.ndarray, float]:
    """Leiden at the resolution found by bisection that gives ``n_clusters`` clusters.

    Returns the labels and the resolution. When no resolution gives exactly ``n_clusters``
    (the count is not monotone in the resolution), the closest count found is returned.
    """
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
    n_cells = adjacency.shape[0]
    if n_clusters > n_cells:
        raise ValueError(f"n_clusters={n_clusters} is larger than the number of cells ({n_cells})")
    tried: dict[float, np.ndarray] = {}

    def run(res: float) -> int:
        tried[res] = leiden(adjacency, res, seed)
        return int(tried[res].max()) + 1

    lo, hi = 0.0, 1.0
    while run(hi) < n_clusters and hi < 1e3:
        lo, hi = hi, hi * 2
    for _ in range(max_steps):
        if int(tried[hi].max()) + 1 == n_clusters:
            break
        mid = 0.5 * (lo + hi)
        if run(mid) < n_clusters:
            lo = mid
        else:
            hi = mid
    best = min(tried, key=lambda r: (abs(int(tried[r].max()) + 1 - n_clusters), r))
    return tried[best], best


def kmeans(x: np.ndarray, n_clusters: int, seed: int = 0) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(np.asarray(x))

