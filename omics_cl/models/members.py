"""Seed ensembles of a cluster method (``n_members`` > 1 in its config): members trained one after another with
seeds derived from the run's seed (member 0 is the single run with that seed), each read off as a single run
would be; the members' cosine kNN graphs of their embeddings are averaged, and ``tl.cluster`` runs Leiden on
that graph. No labels are used."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from omics_cl.core import fusion, graph
from omics_cl.models.method import Context, Method, configure, train_method


def member_seeds(seed: int, n_members: int) -> list[int]:
    """The members' seeds: ``seed`` itself, then seeds drawn from ``numpy.random.SeedSequence([seed, m])``."""
    return [seed, *(int(np.random.SeedSequence([seed, m]).generate_state(1)[0] % 2**31) for m in range(1, n_members))]


def unit_blocks(blocks: list[np.ndarray]) -> np.ndarray:
    """The blocks side by side, each row of each block scaled to length ``1 / sqrt(len(blocks))`` (the equal-weight
    :func:`omics_cl.core.fusion.weighted_concat`)."""
    equal = np.full((len(blocks[0]), len(blocks)), 1.0 / len(blocks), dtype=np.float32)
    return fusion.weighted_concat(blocks, equal)


def member_params(params: dict, train, member: int) -> dict:
    """A member's parameters: one model; members after the first checkpoint to ``<checkpoint_path>.member<m>``."""
    path = getattr(train, "checkpoint_path", None)
    return {**params, "n_members": 1, **({"checkpoint_path": f"{path}.member{member}"} if path and member else {})}


def run_members(method: Method, data: Any, ctx: Context = Context(), progress: bool = True,
                **params: Any) -> tuple[dict, dict]:
    """``(arrays, record)`` of an ensemble of the config's ``n_members`` runs of a cluster ``method``: ``graph``,
    the mean of the members' cosine kNN graphs (``ctx.n_neighbors``; each on its embedding's ``graph_dims``
    columns, built with the member's seed); ``embedding`` and ``latent`` (when the members have one), the members'
    arrays side by side, each row-normalised (:func:`unit_blocks`). The record is member 0's, with
    ``member_seeds`` and each member's loss ``member_histories``. Members after the first checkpoint to
    ``<checkpoint_path>.member<m>`` (:func:`member_params`)."""
    config, train = configure(method, **params)
    seeds = member_seeds(ctx.seed, config.n_members)
    runs = [train_method(method, data, replace(ctx, seed=s), progress, **member_params(params, train, m))
            for m, s in enumerate(seeds)]
    record = runs[0].record
    dims = record.get("graph_dims")
    adjacency = sum(graph.neighbor_graph(np.asarray(r.arrays["embedding"])[:, :dims], ctx.n_neighbors, "cosine", s)
                    for r, s in zip(runs, seeds)) / len(runs)
    arrays = {"graph": adjacency.tocsr(), "embedding": unit_blocks([r.arrays["embedding"] for r in runs])}
    if "latent" in runs[0].arrays:
        arrays["latent"] = unit_blocks([r.arrays["latent"] for r in runs])
    record = {**record, "n_members": config.n_members, "member_seeds": seeds,
              "member_histories": [r.record.get("history") for r in runs]}
    return arrays, record
