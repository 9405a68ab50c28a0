"""PCA baseline: 50 components of the log-normalised HVGs, genes standardised first (unit variance, clipped
at 10 sd, as scanpy's ``sc.pp.scale(max_value=10)`` recipe; kept sparse, see
``data.preprocess.fit_principal_components``); the cell graph uses the first 30. ``pca_unscaled``: the same
without standardising (the baseline before 2026-11-30)."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from omics_cl.data import preprocess
from omics_cl.models.method import Method


@dataclass(frozen=True)
class PCAConfig:
    n_comps: int = 50
    graph_comps: int = 30
    standardize: bool = True


def embed(model, source, config: PCAConfig, train, ctx):
    x = source.lognorm_sparse()
    n_comps = min(config.n_comps, min(x.shape) - 1)
    z = preprocess.principal_components(x, n_comps, ctx.seed, standardize=config.standardize)
    return {"embedding": np.asarray(z, dtype=np.float32)}, {"n_comps": n_comps,
                                                             "graph_dims": min(config.graph_comps, n_comps)}


PCA = Method(name="pca", job="cluster", config=PCAConfig(), train=None,
             source=lambda prepared, config, ctx: prepared.source(), embed=embed,
             summary="50 principal components of the standardised log-normalised HVGs (baseline), Leiden on the "
                     "first 30")
PCA_UNSCALED = replace(PCA, name="pca_unscaled", config=PCAConfig(standardize=False),
                       summary="PCA baseline without standardising genes")
