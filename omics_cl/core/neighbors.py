"""Nearest neighbours of embedding rows: exact (JAX blocked top-k, scikit-learn) or approximate (pynndescent),
and the class vote of a query's nearest reference rows."""
from __future__ import annotations

import numpy as np

EXACT_KNN_MAX_CELLS = 20_000  # on the CPU, rows of x up to which a kNN graph of x is scikit-learn's exact one
JAX_KNN_MAX_CELLS = 50_000  # ... and above it, up to which it is JAX's exact search (pynndescent above)
KNN_METHODS = ("auto", "jax", "pynndescent", "brute")
JAX_METRICS = ("cosine", "euclidean")  # the metrics blocked_knn computes
KNN_BLOCK_VALUES = 1 << 26  # distances per block of the JAX kNN (256 MiB of float32)


def knn(x: np.ndarray, k: int = 15, metric: str = "cosine", seed: int = 0,
        query: np.ndarray | None = None, method: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Indices and distances of each row's ``k`` nearest rows of ``x`` (itself first, at distance 0), or, given
    ``query``, of each query row's ``k`` nearest rows of ``x``.

    ``method``: ``"jax"`` (exact, :func:`blocked_knn`), ``"pynndescent"`` (approximate), ``"brute"`` (exact,
    scikit-learn) or ``"auto"``: ``"jax"`` on an accelerator. On the CPU (benchmarks/knn_query.py): up to
    ``EXACT_KNN_MAX_CELLS`` rows of ``x``, ``"brute"`` for a graph of ``x`` itself and ``"jax"`` for a ``query``
    (about 3x scikit-learn, the same neighbours but for near-ties); up to ``JAX_KNN_MAX_CELLS``, ``"jax"`` (faster
    than pynndescent's first call in a process, which compiles, and exact); ``"pynndescent"`` above. Metrics other
    than cosine and euclidean take scikit-learn, then pynndescent.
    """
    if method not in KNN_METHODS:
        raise ValueError(f"method must be one of {KNN_METHODS}, got {method!r}")
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"a kNN graph needs at least 2 cells, got {n}")
    k = min(k, n)
    if query is not None:
        query = np.asarray(query, dtype=np.float32)
    if method == "auto":
        import jax

        jax_metric = metric in JAX_METRICS
        if jax_metric and jax.default_backend() != "cpu":
            method = "jax"
        elif n <= EXACT_KNN_MAX_CELLS and (query is None or not jax_metric):
            method = "brute"
        elif jax_metric and n <= JAX_KNN_MAX_CELLS:
            method = "jax"
        else:
            method = "pynndescent"
    if method == "jax":
        idx, dist = blocked_knn(x, k, metric, query)
    elif method == "brute":
        from sklearn.neighbors import NearestNeighbors

        dist, idx = NearestNeighbors(n_neighbors=k, metric=metric, algorithm="brute").fit(x).kneighbors(
            x if query is None else query)
    else:
        from pynndescent import NNDescent

        index = NNDescent(x, n_neighbors=k, metric=metric, random_state=seed, n_jobs=1)
        idx, dist = index.neighbor_graph if query is None else index.query(query, k=k)
    idx, dist = idx.astype(np.int64), dist.astype(np.float32)
    if query is None:  # a row's distance to itself is 0, not float32 rounding (it sets UMAP's rho, as in scanpy)
        dist[idx == np.arange(n)[:, None]] = 0.0
    return idx, dist


def blocked_knn(x: np.ndarray, k: int, metric: str = "cosine", query: np.ndarray | None = None,
                block_values: int = KNN_BLOCK_VALUES) -> tuple[np.ndarray, np.ndarray]:
    """Exact kNN in JAX: ``jax.lax.top_k`` over blocks of query rows against all rows of ``x`` (full float32
    matmul precision), each block's distance matrix at most ``block_values`` entries; euclidean distances of
    the chosen neighbours are recomputed as differences (the expanded form rounds near 0). ``metric``: ``"cosine"``
    (1 - cosine similarity; zero rows have similarity 0) or ``"euclidean"``."""
    import jax
    import jax.numpy as jnp

    if metric not in JAX_METRICS:
        raise ValueError(f"the JAX kNN supports metric 'cosine' or 'euclidean', got {metric!r}")
    query = x if query is None else query

    def prepared(a):
        a = jnp.asarray(a, jnp.float32)
        if metric == "cosine":
            norm = jnp.linalg.norm(a, axis=1, keepdims=True)
            return a / jnp.where(norm > 0, norm, 1.0)
        return a

    ref = prepared(x)
    ref_sq = jnp.sum(ref * ref, axis=1)

    @jax.jit
    def nearest(q):
        dot = jnp.matmul(q, ref.T, precision=jax.lax.Precision.HIGHEST)
        if metric == "cosine":
            neg, idx = jax.lax.top_k(dot - 1.0, k)
            return idx, -neg
        _, idx = jax.lax.top_k(2 * dot - ref_sq, k)  # |q|^2 is the same for the whole row
        return idx, jnp.sqrt(jnp.sum((q[:, None, :] - ref[idx]) ** 2, axis=-1))  # exact, also near 0

    rows = max(1, min(query.shape[0], block_values // x.shape[0]))
    q = prepared(np.concatenate([query, np.zeros((-query.shape[0] % rows, x.shape[1]), np.float32)]))
    parts = [nearest(q[s:s + rows]) for s in range(0, q.shape[0], rows)]
    idx, dist = (np.concatenate([np.asarray(p[i]) for p in parts])[:query.shape[0]] for i in (0, 1))
    return idx, dist


def knn_vote(reference: np.ndarray, query: np.ndarray, labels: np.ndarray, n_classes: int, k: int = 30,
             metric: str = "cosine", seed: int = 0) -> np.ndarray:
    """Share of each query row's ``k`` nearest reference rows (:func:`knn`) in each class: query x
    ``n_classes``."""
    idx, _ = knn(reference, k, metric, seed, query=query)
    votes = np.zeros((idx.shape[0], n_classes), dtype=np.float32)
    np.add.at(votes, (np.repeat(np.arange(idx.shape[0]), idx.shape[1]), np.asarray(labels)[idx].ravel()),
              1.0 / idx.shape[1])
    return votes
