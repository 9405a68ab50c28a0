"""Read results back from AnnData / MuData (like ``scanpy.get``): obs columns, representations, run records."""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

TRANSFER_OBS_PREFIX = "omics_cl"  # prefix of a label transfer's obs columns without key_added (omics_cl_label, ...)
TRANSFER_OBS_NAMES = ("label", "confidence", "novelty", "is_novel", "query_cluster", "label_support",
                      "confidence_novelty")  # a label transfer's obs columns after their prefix


def obs_column(data, key: str) -> pd.Series:
    """``obs[key]`` of an AnnData or MuData (for a MuData also the first modality whose own obs has ``key``).

    Parameters
    ----------
    data
        An AnnData or a MuData.
    key
        The obs column.

    Returns
    -------
    pandas.Series
        The column, indexed by the cell names of ``data``.
    """
    if key in data.obs:
        return data.obs[key]
    for mod in getattr(data, "mod", {}).values():
        if key in mod.obs:
            return mod.obs[key].reindex(data.obs_names)
    raise ValueError(f"obs column {key!r} not found; columns: {list(data.obs.columns)}")


def rep(data, use_rep: str) -> np.ndarray:
    """``obsm[use_rep]`` as an array, with an error naming what is present.

    Parameters
    ----------
    data
        An AnnData or a MuData.
    use_rep
        Key in ``obsm``.

    Returns
    -------
    numpy.ndarray
        ``obsm[use_rep]`` as an array (cells x dimensions).
    """
    if use_rep not in data.obsm:
        raise ValueError(f"obsm[{use_rep!r}] not found (run an omics_cl.tl tool first?); present: "
                         f"{list(data.obsm.keys())}")
    return np.asarray(data.obsm[use_rep])


def rna_modality(data) -> ad.AnnData:
    """The RNA AnnData of a MuData (cells in the MuData's order), or ``data`` itself.

    Parameters
    ----------
    data
        A MuData with an ``rna`` modality, or an AnnData.

    Returns
    -------
    AnnData
        The RNA cells in the order of ``data``, or ``data`` itself.
    """
    mods = getattr(data, "mod", None)
    return mods["rna"][data.obs_names] if mods is not None else data


def run_record(data, key: str) -> dict:
    """The record ``uns["omics_cl"][key]`` written by a tool.

    Parameters
    ----------
    data
        An AnnData or a MuData.
    key
        The record's name, usually the method (e.g. ``"sci2cl"``).

    Returns
    -------
    dict
        The stored record.
    """
    records = data.uns.get("omics_cl", {})
    if key not in records:
        raise ValueError(f"uns['omics_cl'] has no record {key!r} (records: {sorted(records)}); run the tool first")
    return records[key]


def transfer_method(adata: ad.AnnData, method: str | None = None) -> str:
    """The key of the label transfer whose results ``adata`` holds (the method's name, or the transfer's
    ``key_added``): ``method`` if given, else the latest one recorded by ``omics_cl.tl.transfer_labels`` or
    ``map_query`` (``uns["omics_cl"]["transfer_method"]``).

    Parameters
    ----------
    adata
        The ATAC query of a label transfer.
    method
        A method name or ``key_added``; ``None`` reads the recorded one.

    Returns
    -------
    str
        The transfer's key.
    """
    if method is not None:
        return method
    recorded = adata.uns.get("omics_cl", {}).get("transfer_method")
    if recorded is None:
        raise ValueError("no label-transfer results in uns['omics_cl']; run omics_cl.tl.transfer_labels first")
    return str(recorded)


def transfer_column(adata: ad.AnnData, name: str, method: str | None = None) -> str:
    """The obs column of a label transfer's per-cell ``name`` (one of ``TRANSFER_OBS_NAMES``: ``label``,
    ``confidence``, ``novelty``, ``is_novel``; scncl also ``query_cluster``, ``label_support``,
    ``confidence_novelty``): ``omics_cl_<name>``, or ``<key>_<name>`` for a transfer run with ``key_added=key``
    (the run record's ``obs_prefix``).

    Parameters
    ----------
    adata
        The ATAC query of a label transfer.
    name
        The column's name after its prefix.
    method
        The transfer's key (method name or ``key_added``); ``None`` reads the recorded one.

    Returns
    -------
    str
        The obs column's name.
    """
    prefix = run_record(adata, transfer_method(adata, method)).get("obs_prefix", TRANSFER_OBS_PREFIX)
    return f"{prefix}_{name}"


def transfer_probabilities(adata: ad.AnnData, method: str | None = None) -> pd.DataFrame:
    """A label transfer's class probabilities, cells x reference classes: ``obsm["<method>_probabilities"]``
    (a plain array, because class names such as ``L2/3`` cannot be h5ad column names) labelled with the
    run record's classes.

    Parameters
    ----------
    adata
        The ATAC query of a label transfer.
    method
        The transfer method (``None``: the recorded one).

    Returns
    -------
    DataFrame
        Probabilities indexed by cell, one column per reference class.
    """
    return _class_matrix(adata, "probabilities", method)


def transfer_class_support(adata: ad.AnnData, method: str | None = None) -> pd.DataFrame | None:
    """Each query cell's support for each reference class by its own gene activity (standardised per class over
    the query), cells x classes: ``obsm["<method>_class_support"]`` labelled with the run record's classes;
    ``None`` when the transfer wrote none (scncl does unless ``support_weight=0`` and ``novelty_support=False``).

    Parameters
    ----------
    adata
        The query after a label transfer.
    method
        Transfer method; ``None`` reads the recorded one.

    Returns
    -------
    DataFrame or None
        One row per cell, one column per reference class.
    """
    method = transfer_method(adata, method)
    return _class_matrix(adata, "class_support", method) if f"{method}_class_support" in adata.obsm else None


def _class_matrix(adata: ad.AnnData, name: str, method: str | None = None) -> pd.DataFrame:
    """``obsm["<method>_<name>"]`` (cells x reference classes) as a DataFrame with the run record's classes."""
    method = transfer_method(adata, method)
    return pd.DataFrame(np.asarray(adata.obsm[f"{method}_{name}"]), index=adata.obs_names,
                        columns=pd.Index(run_record(adata, method)["classes"]))
