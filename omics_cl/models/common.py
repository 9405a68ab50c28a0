"""Helpers shared by model files: the encoder's latent of a batch (a ``predict`` function), inference context
cells, cluster centres from Leiden on a latent (the stage init of the self-clustering methods), re-seeding of
centres that lost all their cells, and a latent's fusion with the ``pca`` baseline's view (cae's embedding, and the
self-clustering methods' Leiden read-off)."""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from omics_cl import metrics
from omics_cl.core import fusion, graph
from omics_cl.data import components, pearson, preprocess
from omics_cl.data.sources import KEYS

READOUTS = ("argmax", "leiden")
# fixed fusion weights by view: the log PCA view and the latent 0.425 each, the Pearson view 0.15 (cae's since
# 2026-12-02, scinno's since 2026-12-05; benchmarks/clustering.md, "cae's fixed weights", "scinno's MOp figure")
FIXED_VIEW_WEIGHTS = {"pca": 0.425, "pca_pearson": 0.15, "latent": 0.425}


def encoder_latent(model: nnx.Module, batch) -> jax.Array:
    """``model.encoder`` of a batch's feature rows (``predict``'s function for models with an ``encoder``)."""
    return model.encoder(batch[KEYS.X])


def context_cells(n_obs: int, size: int, seed: int) -> np.ndarray:
    """The fixed, seeded cells every cell attends to at inference (all cells when ``n_obs <= size``)."""
    if n_obs <= size:
        return np.arange(n_obs)
    return np.sort(np.random.default_rng([seed, 104729]).choice(n_obs, size, replace=False))


def leiden_centres(z: np.ndarray, n_clusters: int | None, n_neighbors: int, resolution: float,
                   seed: int, restarts: int = 1) -> np.ndarray:
    """Initial cluster centres from Leiden on a cosine kNN graph of ``z``: the mean L2-normalised row of
    each cluster. Leiden gives ``n_clusters`` clusters (resolution by bisection) or, when ``n_clusters``
    is None, as many as it finds at ``resolution`` (the label-free K estimate); ``restarts``: see
    ``graph.leiden``."""
    adjacency = graph.neighbor_graph(z, n_neighbors, "cosine", seed)
    if n_clusters is None:
        labels = graph.leiden(adjacency, resolution, seed, restarts=restarts)
    else:
        labels, _ = graph.leiden_n_clusters(adjacency, n_clusters, seed, restarts=restarts)
        if labels.max() + 1 != n_clusters:
            warnings.warn(f"no Leiden resolution gives {n_clusters} clusters on the pretrained latent; "
                          f"training {labels.max() + 1} centres (the closest count)", stacklevel=2)
    unit = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    return np.stack([unit[labels == k].mean(0) for k in range(labels.max() + 1)]).astype(np.float32)


def leiden_centres_init(build: Callable[[int], nnx.Module], latent: Callable[[nnx.Module], np.ndarray], ctx,
                        per_cluster: int = 1) -> Callable[[nnx.Module], tuple[nnx.Module, dict]]:
    """Stage init for self-clustering: Leiden centres on ``latent(previous model)``, then ``build(K)`` starts
    from the previous model's parameters (all but ``centres``) with those centres. ``ctx`` carries the
    request (``n_clusters`` or ``resolution``, ``n_neighbors``, ``seed``); with ``n_clusters`` given,
    ``per_cluster`` x ``n_clusters`` centres are made, at most one per cell (an estimated K: one per Leiden
    cluster). No labels are read."""
    per_cluster = 1 if ctx.n_clusters is None else per_cluster
    n_centres = None if ctx.n_clusters is None else ctx.n_clusters * per_cluster

    def init(previous: nnx.Module) -> tuple[nnx.Module, dict]:
        z = latent(previous)
        centres = leiden_centres(z, None if n_centres is None else min(n_centres, len(z)), ctx.n_neighbors,
                                 ctx.resolution, ctx.seed, ctx.leiden_restarts)
        model = build(len(centres))
        nnx.update(model, nnx.state(previous, nnx.Not(nnx.PathContains("centres"))))
        model.centres[...] = jnp.asarray(centres)
        return model, {"n_clusters": len(centres), "k_estimated": ctx.n_clusters is None,
                       "centres_per_cluster": per_cluster}

    return init


def reseed_empty_centres(centres: np.ndarray, assign: Callable[[np.ndarray], np.ndarray],
                         z: np.ndarray) -> tuple[np.ndarray, int]:
    """Centres with no cell (``assign(centres)``: each row of ``z``'s cluster) moved, one at a time, onto the
    cell of the largest cluster farthest (cosine) from that cluster's centre, rescaled to that centre's norm,
    as k-means implementations split the largest cluster; returns the centres and how many were moved."""
    centres = np.array(centres, dtype=np.float32)
    unit = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    moved = 0
    for _ in range(len(centres)):
        labels = assign(centres)
        sizes = np.bincount(labels, minlength=len(centres))
        empty = np.flatnonzero(sizes == 0)
        if not len(empty):
            break
        largest = int(np.argmax(sizes))
        members = np.flatnonzero(labels == largest)
        farthest = members[np.argmin(unit[members] @ centres[largest])]
        centres[empty[0]] = unit[farthest] * np.linalg.norm(centres[largest])
        moved += 1
    return centres, moved


def pca_view(counts, normalizer: preprocess.LogNormalizer, n_comps: int, residuals: str, seed: int,
             max_value: float = 10.0) -> np.ndarray:
    """``n_comps`` principal components of the normaliser's genes: of the standardised log-normalised rows (the
    ``pca`` baseline's view; the normaliser's own standardisation statistics are reused when it has them) with
    ``residuals="log"``, of their analytic Pearson residuals (``pca_pearson``'s view) with ``"pearson"``."""
    if residuals == "pearson":
        return pearson.principal_components(counts, normalizer.genes, normalizer.library_size, n_comps)
    x = normalizer.unstandardized.sparse(counts)
    statistics = None if normalizer.scale is None else (normalizer.clip, normalizer.scale)
    return components.principal_components(x, n_comps, seed, standardize=True, max_value=max_value,
                                           statistics=statistics)


def pca_views(counts, normalizer: preprocess.LogNormalizer, n_comps: int, residuals: str, seed: int,
              max_value: float = 10.0) -> dict[str, np.ndarray]:
    """The PCA views a fused embedding reads (:func:`pca_view`): ``{"pca": view}`` for ``residuals`` ``"log"`` or
    ``"pearson"``; with ``"both"``, ``{"pca": the log view, "pca_pearson": the Pearson view}``."""
    pearson.check_residuals(residuals, pearson.FUSED_RESIDUALS)
    if residuals == "both":
        return {"pca": pca_view(counts, normalizer, n_comps, "log", seed, max_value),
                "pca_pearson": pca_view(counts, normalizer, n_comps, "pearson", seed, max_value)}
    return {"pca": pca_view(counts, normalizer, n_comps, residuals, seed, max_value)}


def fused_view_names(residuals: str) -> list[str]:
    """Names of the views a fused embedding reads with ``pca_residuals=residuals`` (:func:`pca_views`, then the
    latent)."""
    return ["pca", "pca_pearson", "latent"] if residuals == "both" else ["pca", "latent"]


def check_fusion_weights(weights: dict[str, float] | None, residuals: str) -> None:
    """Refuse fixed fusion weights that name a view no fusion reads, miss one that this fusion reads
    (:func:`fused_view_names`), or are negative, non-finite or all 0 over the views read."""
    if weights is None:
        return
    names = fused_view_names(residuals)
    unknown = sorted(set(weights) - set(fused_view_names("both")))
    missing = [n for n in names if n not in weights]
    if unknown or missing:
        raise ValueError(f"fusion_weights needs a weight for each fused view {names} (pca_residuals={residuals!r})"
                         f" and no other names than {fused_view_names('both')}; got {sorted(weights)}")
    fusion.target_weights([weights[n] for n in names], len(names), "fusion_weights")


def fused_with_pca(pcs: dict[str, np.ndarray], z: np.ndarray, n_neighbors: int, seed: int,
                   shrinkage: float = 0.0, weights: dict[str, float] | None = None) -> tuple[dict, dict]:
    """``({"embedding": fusion of the views in pcs and z, "latent": z}, notes with the median fusion weight of each
    view, named as in pcs, and of ``latent``)`` (:func:`omics_cl.core.fusion.wnn_fuse`): WNN weights shrunk by
    ``shrinkage`` toward equal weights, or toward ``weights`` (fixed weights by view name, rescaled to sum 1;
    :func:`check_fusion_weights`)."""
    names = [*pcs, "latent"]
    target = None if weights is None else [weights[name] for name in names]
    fused, cell_weights = fusion.wnn_fuse([*pcs.values(), z], n_neighbors, seed, shrinkage, target)
    median = np.median(cell_weights, 0)
    return {"embedding": fused, "latent": z}, {"fusion_weights": {n: float(w) for n, w in zip(names, median)}}


def views_agreement(pcs: dict[str, np.ndarray], ctx) -> float:
    """The ARI between the clusters of the log PCA view alone and of the Pearson view alone (``pcs["pca"]``,
    ``pcs["pca_pearson"]``): consensus Leiden on each view's cosine kNN graph (``ctx.n_neighbors``) at
    ``ctx.n_clusters`` clusters, else at ``ctx.resolution`` (``tl.cluster_embedding``'s defaults otherwise). No
    labels are read."""
    labels = [graph.consensus_leiden(graph.neighbor_graph(pcs[name], ctx.n_neighbors, "cosine", ctx.seed), ctx.seed,
                                     None, ctx.resolution, ctx.n_clusters)[0] for name in ("pca", "pca_pearson")]
    return metrics.ari(*labels)


def agreement_weighting(pcs: dict[str, np.ndarray], ctx, shrinkage: float, weights: dict[str, float] | None,
                        threshold: float | None, agree_shrinkage: float) -> tuple[float, dict | None, dict]:
    """``(shrinkage, weights, notes)`` for :func:`fused_with_pca`: with both PCA views in ``pcs`` and a
    ``threshold``, the WNN weights shrunk by ``agree_shrinkage`` toward equal weights where
    :func:`views_agreement` is at least ``threshold``, else ``shrinkage`` toward ``weights`` as given; ``notes``
    record the agreement and the weighting used."""
    if threshold is None or set(pcs) != {"pca", "pca_pearson"}:
        return shrinkage, weights, {}
    agreement = views_agreement(pcs, ctx)
    agree = agreement >= threshold
    notes = {"views_agreement": agreement, "fusion_weighting": "wnn_shrunk" if agree else "fixed"}
    return (agree_shrinkage, None, notes) if agree else (shrinkage, weights, notes)


def check_members(n_members: int, readout: str = "leiden") -> None:
    """Refuse an ensemble size below 1, or members with ``readout="argmax"`` (their clusters cannot be pooled)."""
    if n_members < 1:
        raise ValueError(f"n_members must be at least 1, got {n_members}")
    if n_members > 1 and readout == "argmax":
        raise ValueError("readout='argmax' reads one model's memberships; use n_members=1 with it")


@dataclass(frozen=True)
class ReadoutConfig:
    """How a self-clustering method reads off its clusters: ``"leiden"`` (:func:`leiden_readout`, with these
    fusion settings) or ``"argmax"`` (its soft memberships'). With the Leiden read-off and a given K the clustering
    stage trains ``centres_per_cluster`` x K centres (:func:`leiden_centres_init`), so a wrong split of the
    pre-trained latent need not force a merge elsewhere."""

    readout: str = "leiden"
    pca_comps: int = 50
    pca_residuals: str = "log"  # the PCA views' input (``pca_views``)
    fusion_shrinkage: float = 1.0  # WNN weights shrunk toward fusion_weights (1: those weights; 0: WNN weights)
    fusion_weights: dict[str, float] | None = None  # fixed weights by view name (check_fusion_weights); None: equal
    fusion_neighbors: int = 20
    centres_per_cluster: int = 1  # clustering centres trained per requested cluster (Leiden read-off only)
    n_members: int = 1  # models trained with derived seeds, their graphs averaged (``omics_cl.models.members``)

    def __post_init__(self):
        check_members(self.n_members, self.readout)
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {self.readout!r}")
        if self.centres_per_cluster < 1:
            raise ValueError(f"centres_per_cluster must be at least 1, got {self.centres_per_cluster}")
        fusion.check_shrinkage(self.fusion_shrinkage)
        pearson.check_residuals(self.pca_residuals, pearson.FUSED_RESIDUALS)
        check_fusion_weights(self.fusion_weights, self.pca_residuals)

    @property
    def trained_centres_per_cluster(self) -> int:
        """``centres_per_cluster`` with the Leiden read-off; 1 with the argmax read-off (its clusters are the centres)."""
        return self.centres_per_cluster if self.readout == "leiden" else 1


def leiden_readout(z: np.ndarray, counts, normalizer: preprocess.LogNormalizer, config: ReadoutConfig,
                   seed: int) -> tuple[dict, dict]:
    """A self-clustering method's ``readout="leiden"`` arrays: its embedding ``z`` fused
    (``config.fusion_shrinkage``, ``config.fusion_weights``, ``config.fusion_neighbors``) with the PCA views
    (:func:`pca_views`, ``config.pca_comps``, ``config.pca_residuals``) of ``counts`` through ``normalizer``, ``z``
    kept as ``latent``; no memberships, so ``tl.cluster`` clusters the fused embedding with Leiden."""
    return fused_readout(pca_views(counts, normalizer, config.pca_comps, config.pca_residuals, seed), z, config, seed)


def fused_readout(pcs: dict[str, np.ndarray], z: np.ndarray, config: ReadoutConfig, seed: int) -> tuple[dict, dict]:
    """:func:`leiden_readout` on PCA views already computed (``pcs``), so several latents of one model can share
    them."""
    return fused_with_pca(pcs, np.asarray(z, dtype=np.float32), config.fusion_neighbors, seed, config.fusion_shrinkage,
                          config.fusion_weights)
