"""Paired RNA + ATAC integration (``integrate``) with any registered integrate-job method."""
from __future__ import annotations

import os
import time

import anndata as ad
import numpy as np
import pandas as pd

from omics_cl import models
from omics_cl.checks import check_feature_count, check_key_added
from omics_cl.core import graph
from omics_cl.data.counts import cells_without_counts, counts_matrix
from omics_cl.data.paired import Modality, paired_modalities
from omics_cl.environment import provenance
from omics_cl.fallbacks import recorded
from omics_cl.tl._cluster import check_leiden_consensus, check_overcluster, cluster_embedding
from omics_cl.tl._common import store_record, warn_cells_without_features
from omics_cl.tl._saved import check_saveable, save_method_model


def modalities_without_features(modalities: dict[str, Modality], stacklevel: int = 3) -> dict[str, int]:
    """``{"n_rna_cells_without_features": ..., "n_atac_cells_without_features": ...}``: cells with no count among a
    modality's kept features (its encoder gets one and the same input for all of them), with a warning when any."""
    return warn_cells_without_features(
        {name: cells_without_counts(m.counts) for name, m in modalities.items()},
        "the kept genes (RNA) or peaks (ATAC)", "that modality's encoder gets one and the same input for all of them",
        stacklevel=stacklevel)


@recorded
def integrate(data=None, method: str = "sci2cl", rna: ad.AnnData | None = None, atac: ad.AnnData | None = None,
              n_clusters: int | None = None, resolution: float = 1.0, seed: int = 0, rna_layer: str | None = None,
              atac_layer: str | None = None, n_top_genes: int | None = 2000, n_top_peaks: int | None = 10000,
              n_neighbors: int = 15, progress: bool = True, save_model: str | os.PathLike | None = None,
              leiden_consensus: int | None = None, overcluster: float = graph.OVERCLUSTER, key_added: str | None = None,
              **model_params) -> dict:
    """Joint embedding of paired RNA + ATAC cells with ``method`` (a registered integrate method; default
    scI2CL, METHODS.md section 4), then Leiden clusters.

    ``data`` is a MuData with modalities ``rna`` and ``atac``; or pass ``rna=`` and ``atac=`` AnnData.
    Cells are matched by name (ATAC reordered if needed). Raw counts come from ``X`` or the given
    layers; RNA keeps ``n_top_genes`` seurat_v3 HVGs, ATAC the ``n_top_peaks`` most often accessible
    peaks (cells with counts but none among a modality's kept features are warned about and counted:
    ``n_rna_cells_without_features``, ``n_atac_cells_without_features``). Extra keyword arguments go to the
    method's config / training config (e.g. ``epochs=50``, ``mom_weight=0``). Clusters: ``resolution``, or
    ``n_clusters`` by bisection. No labels are used.
    ``save_model``: a new directory where the trained model is saved for :func:`map_paired` (checked before
    any work).

    Writes (on the MuData, or on both AnnData): ``obsm["X_<method>"]`` (joint embedding),
    ``obsm["X_<method>_rna"]`` / ``obsm["X_<method>_atac"]`` (the aligned per-modality embeddings) and any
    further per-cell array the method gives (sci2cl: ``_xattn``, ``_pca``, ``_view_weights``),
    ``obs["<method>_cluster"]`` and the run record ``uns["omics_cl"]["<method>"]``, all under ``key_added`` instead
    of the method's name where given. Nothing is written when an error is raised.

    Parameters
    ----------
    data
        MuData with ``rna`` and ``atac`` (or ``None`` with ``rna`` and ``atac``).
    method
        Registered integrate method.
    rna
        Paired RNA AnnData (raw counts), instead of ``data``.
    atac
        Paired ATAC AnnData (raw counts), instead of ``data``.
    n_clusters
        Number of clusters, reached by bisecting the resolution (``None``: use ``resolution``).
    resolution
        Leiden resolution (used when ``n_clusters`` is ``None``).
    seed
        Random seed.
    rna_layer
        Layer of ``rna`` holding the raw counts (``None``: ``X``).
    atac_layer
        Layer of ``atac`` holding the raw counts (``None``: ``X``).
    n_top_genes
        Number of RNA HVGs (``None``: all genes).
    n_top_peaks
        Number of most often accessible peaks (``None``: all peaks).
    n_neighbors
        Neighbours of the cosine kNN graph used for Leiden.
    progress
        Show a training progress bar.
    save_model
        New directory to save the trained model in (``None``: not saved).
    leiden_consensus
        Leiden runs pooled into the clusters (``None``: 10 up to 100,000 cells, else 1; see
        :func:`cluster_embedding`).
    overcluster
        With ``n_clusters``: clusters made before merging, as a multiple of it (see :func:`cluster_embedding`).
    key_added
        Name the results are written under (``None``: the method's name).
    **model_params
        Method config / training config values.

    Returns
    -------
    dict
        The run record.
    """
    spec = models.get(method, "integrate")
    models.configure(spec, **model_params)  # a wrong parameter fails before any work
    check_leiden_consensus(leiden_consensus)
    check_overcluster(overcluster)
    check_feature_count(n_top_genes, "n_top_genes")
    check_feature_count(n_top_peaks, "n_top_peaks")
    check_key_added(key_added)
    if save_model is not None:
        if spec.map_query is None or spec.query_state is None:
            raise ValueError(f"{method} cannot map new cells, so its model cannot be saved")
        check_saveable(save_model, spec)
    rna_view, atac_view = paired_modalities(data, rna, atac)
    start = time.perf_counter()
    modalities = {}
    for name, view, layer, n_top, selection in (("RNA", rna_view, rna_layer, n_top_genes, "hvg"),
                                                ("ATAC", atac_view, atac_layer, n_top_peaks, "accessible")):
        try:
            modalities[name] = Modality.fit(counts_matrix(view, layer), n_top, selection)  # validates the counts
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
    empty = modalities_without_features(modalities)
    inputs, ctx = (modalities["RNA"], modalities["ATAC"]), models.Context(seed)
    trained = models.train_method(spec, inputs, ctx, progress, **model_params)
    train_seconds = time.perf_counter() - start
    record = {"method": method, "job": "integrate", "seed": seed, "n_genes": modalities["RNA"].n_features,
              "n_peaks": modalities["ATAC"].n_features, "hvg_flavor": modalities["RNA"].selected_by, "n_neighbors": n_neighbors,
              **empty, "train_seconds": train_seconds,
              "params": trained.record, **provenance()}
    key = key_added or method
    carrier = clustered(rna_view.obs_names, key, trained.arrays, record, n_clusters, resolution, seed, n_neighbors,
                        leiden_consensus, overcluster)
    if save_model is not None:
        state = spec.query_state(trained.arrays, trained.state, trained.config, ctx)
        features = {key: np.asarray(view.var_names[m.columns], dtype=str)
                    for key, view, m in (("genes", rna_view, inputs[0]), ("peaks", atac_view, inputs[1]))}
        save_method_model(save_model, trained, {**features, **state}, seed=seed, record=record)
    write_results(data, rna, atac, carrier, key, record)
    return record


def clustered(cells: pd.Index, key: str, arrays: dict, record: dict, n_clusters: int | None,
              resolution: float, seed: int, n_neighbors: int, leiden_consensus: int | None = None,
              overcluster: float = graph.OVERCLUSTER) -> ad.AnnData:
    """An AnnData of ``cells`` holding the method's per-cell ``arrays`` as ``obsm["X_<key>[_<part>]"]`` and
    Leiden clusters of the joint embedding (``obs["<key>_cluster"]``); the clustering enters ``record``."""
    carrier = ad.AnnData(obs=pd.DataFrame(index=cells),
                         obsm={f"X_{key}" if part == "joint" else f"X_{key}_{part}": array
                               for part, array in arrays.items()})
    record.update(cluster_embedding(carrier, f"X_{key}", n_clusters, resolution, f"{key}_cluster", seed,
                                    n_neighbors, leiden_consensus=leiden_consensus, overcluster=overcluster))
    return carrier


def write_results(data, rna: ad.AnnData | None, atac: ad.AnnData | None, carrier: ad.AnnData, key: str,
                  record: dict) -> None:
    """Write the ``carrier``'s obsm / clusters and ``record`` into the MuData ``data``, or into ``rna`` and
    ``atac``, each in its own cell order."""
    for target in [data] if data is not None else [rna, atac]:
        order = carrier.obs_names.get_indexer(target.obs_names)
        for name, value in carrier.obsm.items():
            target.obsm[name] = value[order]
        target.obs[f"{key}_cluster"] = carrier.obs[f"{key}_cluster"].to_numpy()[order]
        store_record(target, key, record)
