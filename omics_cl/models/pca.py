"""PCA baseline: 50 components of the log-normalised HVGs (sparse, implicitly centred, no scaling);
the cell graph uses the first 30."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omics_cl.models.method import Method


@dataclass(frozen=True)
class PCAConfig:
    n_comps: int = 50
    graph_comps: int = 30


def embed(model, source, config: PCAConfig, train, ctx):
    import scanpy as sc

    x = source.lognorm_sparse()
    n_comps = min(config.n_comps, min(x.shape) - 1)
    z = sc.pp.pca(x, n_comps=n_comps, random_state=ctx.seed, svd_solver="arpack")
    return {"embedding": np.asarray(z, dtype=np.float32)}, {"n_comps": n_comps,
                                                             "graph_dims": min(config.graph_comps, n_comps)}


PCA = Method(name="pca", job="cluster", config=PCAConfig(), train=None,
             source=lambda prepared, config, ctx: prepared.source(), embed=embed,
             summary="50 principal components of the log-normalised HVGs (baseline), Leiden on the first 30")
