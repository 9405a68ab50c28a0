"""PCA baseline: 50 components of the log-normalised HVGs (sparse, implicitly centred, no scaling);
the cell graph uses the first 30."""
from __future__ import annotations

import numpy as np


def embed_pca(prepared, seed: int = 0, progress: bool = True, n_comps: int = 50, graph_comps: int = 30):
    import scanpy as sc

    x = prepared.lognorm_sparse()
    n_comps = min(n_comps, min(x.shape) - 1)
    z = sc.pp.pca(x, n_comps=n_comps, random_state=seed, svd_solver="arpack")
    return np.asarray(z, dtype=np.float32), {"n_comps": n_comps, "graph_dims": min(graph_comps, n_comps)}
