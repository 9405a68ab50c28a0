"""PCA baseline: 50 components of the log-normalised HVGs, genes standardised first (unit variance, clipped
at 10 sd, as scanpy's ``sc.pp.scale(max_value=10)`` recipe; kept sparse, see
``data.components.fit_principal_components``); the cell graph uses the first 30. ``pca_unscaled``: the same
without standardising (the baseline before 2026-11-30). ``pca_pearson``: 50 components of the HVGs' analytic Pearson
residuals (``data.pearson``; ``sc.experimental.pp.recipe_pearson_residuals``' normalisation), which take
sequencing depth out of each gene without a log."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from omics_cl.data import components, pearson
from omics_cl.models.method import Method


@dataclass(frozen=True)
class PCAConfig:
    n_comps: int = 50
    graph_comps: int = 30
    standardize: bool = True  # log-normalised input only
    residuals: str = "log"  # "log": log-normalised HVGs; "pearson": their analytic Pearson residuals
    theta: float = pearson.DEFAULT_THETA  # the Pearson residuals' overdispersion

    def __post_init__(self):
        pearson.check_residuals(self.residuals)
        pearson.check_theta(self.theta)
        if self.residuals == "pearson" and self.standardize:
            raise ValueError("Pearson residuals are not standardised: pass standardize=False")


def embed(model, source, config: PCAConfig, train, ctx):
    if config.residuals == "pearson":
        normalizer = source.transform
        z = pearson.principal_components(source.x, normalizer.genes, normalizer.library_size, config.n_comps,
                                         config.theta)
    else:
        z = components.principal_components(source.lognorm_sparse(), config.n_comps, ctx.seed,
                                            standardize=config.standardize)
    n_comps = z.shape[1]
    return {"embedding": np.asarray(z, dtype=np.float32)}, {"n_comps": n_comps,
                                                             "graph_dims": min(config.graph_comps, n_comps)}


PCA = Method(name="pca", job="cluster", config=PCAConfig(), train=None,
             source=lambda prepared, config, ctx: prepared.source(), embed=embed,
             summary="50 principal components of the standardised log-normalised HVGs (baseline), Leiden on the "
                     "first 30")
PCA_UNSCALED = replace(PCA, name="pca_unscaled", config=PCAConfig(standardize=False),
                       summary="PCA baseline without standardising genes")
PCA_PEARSON = replace(PCA, name="pca_pearson", config=PCAConfig(standardize=False, residuals="pearson"),
                      summary="50 principal components of the HVGs' analytic Pearson residuals (theta 100), Leiden on "
                              "the first 30")
