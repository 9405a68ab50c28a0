"""Embed and cluster new paired RNA + ATAC cells with an integration model saved by
``integrate(..., save_model=DIR)``, without retraining (``map_paired``).

What is saved: the trained parameters, the config, the seed, the kept genes and peaks by name, the
cross-attention context (the training run's context cells' Z_r and Z_a) and, when the joint embedding reads the
RNA PCA (the default), that PCA's projection: the genes' means and standard deviations (standardising, clipped at
10 sd), the centre and the loadings. What is computed on the new cells: their library sizes (over all their
features), Z_r / Z_a, the cross-attention against the saved context, the PCA view (projected onto the saved
loadings; ``pca="refit"``: a PCA of the new cells), the fusion weights (from the new cells' own neighbourhoods)
and the Leiden clusters.
"""
from __future__ import annotations

import os
import warnings
from functools import partial

import anndata as ad
import numpy as np
import scipy.sparse as sp

from omics_cl import models
from omics_cl.checks import check_key_added
from omics_cl.data.counts import counts_matrix
from omics_cl.data.paired import Modality, PairedQuery, paired_modalities
from omics_cl.data.preprocess import LogNormalizer
from omics_cl.environment import provenance
from omics_cl.fallbacks import recorded
from omics_cl.tl._integrate import clustered, modalities_without_features, write_results
from omics_cl.tl._saved import LoadedModel, load_method_model

PCA_MODES = ("project", "refit")
SAVED = ("genes", "peaks", "context_rna", "context_atac")


def _empty(n_features: int) -> Modality:
    return Modality(sp.csr_matrix((0, n_features), dtype=np.float32), LogNormalizer(np.arange(n_features), np.zeros(0)),
                    np.zeros(0, np.float32))


def _build(model_dir, method: models.Method, config, meta: dict, arrays: dict):
    """A freshly initialised model of the saved shapes: the method's own init on an empty source."""
    missing = sorted(set(SAVED) - set(arrays))
    if missing or method.map_query is None:
        raise ValueError(f"{model_dir} cannot map new cells: it lacks {missing or 'a query mapping'}")
    ctx = models.Context(int(meta["seed"]))
    shape = (_empty(len(arrays["genes"])), _empty(len(arrays["peaks"])))
    return method.init(method.source(shape, config, ctx), config, ctx)


def load_integration_model(model_dir: str | os.PathLike) -> LoadedModel:
    """Read an integration model saved by :func:`integrate` (``save_model=``). ``ValueError`` when the
    directory is missing, corrupt, of another format version or not an integration model.

    Parameters
    ----------
    model_dir
        Directory written by ``integrate(..., save_model=)``.

    Returns
    -------
    LoadedModel
        The saved method, its configs, model and arrays.
    """
    return load_method_model(model_dir, "integrate", partial(_build, model_dir))


@recorded
def map_paired(data=None, model_dir: str | os.PathLike | None = None, rna: ad.AnnData | None = None,
               atac: ad.AnnData | None = None, n_clusters: int | None = None, resolution: float = 1.0,
               rna_layer: str | None = None, atac_layer: str | None = None, n_neighbors: int = 15,
               pca: str = "project", key_added: str | None = None) -> dict:
    """Embed and cluster new paired cells with a saved integration model (no training).

    ``data`` (a MuData with ``rna`` and ``atac``) or ``rna=`` and ``atac=``, cells matched by name as in
    :func:`integrate`; ``model_dir`` from ``integrate(..., save_model=)``. Writes the same ``obsm`` / ``obs``
    keys and run record as :func:`integrate`, clustering as it does (``n_clusters`` / ``resolution``,
    ``n_neighbors``; the model's seed). Genes and peaks are matched to the model's by name: missing ones are
    zero-filled with a warning and counted in the record (``n_missing_genes``, ``n_missing_peaks``); none shared
    is an error. ``pca``: ``"project"`` puts the cells on the training run's PCA axes (as scanpy's ``ingest``);
    ``"refit"`` fits a PCA to these cells. The fusion weights are always computed among these cells. Mapping the
    training cells gives the original Z_r, Z_a and cross-attention output bit for bit; with ``pca="refit"`` every
    output (the projection agrees to float32 rounding). ``key_added``: write under that name instead of the
    method's (as :func:`integrate`). Returns the run record.

    Parameters
    ----------
    data
        MuData with ``rna`` and ``atac`` (or ``None`` with ``rna`` and ``atac``).
    model_dir
        Directory of a saved integration model.
    rna
        Paired RNA AnnData (raw counts), instead of ``data``.
    atac
        Paired ATAC AnnData (raw counts), instead of ``data``.
    n_clusters
        Number of clusters, reached by bisecting the resolution (``None``: use ``resolution``).
    resolution
        Leiden resolution (used when ``n_clusters`` is ``None``).
    rna_layer
        Layer of ``rna`` holding the raw counts (``None``: ``X``).
    atac_layer
        Layer of ``atac`` holding the raw counts (``None``: ``X``).
    n_neighbors
        Neighbours of the cosine kNN graph used for Leiden.
    pca
        ``"project"`` or ``"refit"``.
    key_added
        Name the results are written under (``None``: the method's name).

    Returns
    -------
    dict
        The run record.
    """
    if model_dir is None:
        raise ValueError("give model_dir, the directory written by integrate(..., save_model=...)")
    if pca not in PCA_MODES:
        raise ValueError(f"pca must be one of {PCA_MODES}, got {pca!r}")
    check_key_added(key_added)
    saved = load_integration_model(model_dir)
    meta, method = saved.meta, saved.method.name
    rna_view, atac_view = paired_modalities(data, rna, atac)
    modalities, missing = {}, {}
    for name, view, layer, what in (("RNA", rna_view, rna_layer, "genes"), ("ATAC", atac_view, atac_layer, "peaks")):
        try:
            modalities[name], missing[what] = Modality.aligned(counts_matrix(view, layer), view.var_names,
                                                               saved.arrays[what], what)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
        if missing[what]:
            warnings.warn(f"{len(missing[what])} of the model's {len(saved.arrays[what])} {what} are not in the "
                          f"{name} data (e.g. {missing[what][:3]}); they are set to zero", stacklevel=2)
    empty = modalities_without_features(modalities)
    seed = int(meta["seed"])
    query = PairedQuery(modalities["RNA"], modalities["ATAC"], saved.arrays, refit_pca=pca == "refit")
    arrays, notes = saved.method.map_query(saved.model, query, saved.config, models.Context(seed))
    record = {"method": method, "job": "integrate", "mapped_with": str(os.path.abspath(model_dir)), "seed": seed,
              "n_genes": len(saved.arrays["genes"]), "n_peaks": len(saved.arrays["peaks"]),
              "n_missing_genes": len(missing["genes"]), "n_missing_peaks": len(missing["peaks"]), **empty,
              "pca": pca if "pca_components" in saved.arrays else None,
              "n_neighbors": n_neighbors, "params": {**meta["record"]["params"], **notes},
              "model_versions": meta["versions"], **provenance()}
    key = key_added or method
    carrier = clustered(rna_view.obs_names, key, arrays, record, n_clusters, resolution, seed, n_neighbors)
    write_results(data, rna, atac, carrier, key, record)
    return record
