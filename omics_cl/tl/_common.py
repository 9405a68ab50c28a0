"""Shared by the tools: the run record stored in ``uns["omics_cl"]`` (with the fallbacks the run took), the
warning about cells with no count among the kept features, and group-vs-background markers."""
from __future__ import annotations

import warnings

import anndata as ad
import numpy as np

from omics_cl.checks import check_key_added
from omics_cl.fallbacks import taken


def h5ad_safe(value):
    """uns must be writable to .h5ad: drop None, tuples to lists, recurse into dicts."""
    if isinstance(value, dict):
        return {str(k): h5ad_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, tuple):
        return list(value)
    return value


def store_record(data, key: str, record: dict) -> None:
    """``uns["omics_cl"][key] = record`` (made writable to .h5ad); the fallbacks the run took, if any, are added to
    ``record`` as ``fallbacks`` first (``omics_cl.fallbacks``)."""
    if taken():
        record["fallbacks"] = taken()
    data.uns.setdefault("omics_cl", {})[key] = h5ad_safe(record)


def check_result_key(data, key_added: str | None, job: str) -> None:
    """Refuse a ``key_added`` of a checking tool (``check_annotations``, ``label_consistency``: the record's
    ``job``) that holds another job's record in ``uns["omics_cl"]`` (the transfer or run it checks, say), which the
    check would overwrite."""
    check_key_added(key_added)
    held = data.uns.get("omics_cl", {}).get(key_added) if key_added is not None else None
    if held is not None and held.get("job") != job:
        raise ValueError(f"key_added={key_added!r} names the record of another run in uns['omics_cl'] (method "
                         f"{held.get('method', '?')!r}), which {job} would overwrite; pick another key")


def warn_cells_without_features(counts: dict[str, int], features: str, consequence: str,
                                stacklevel: int = 2) -> dict[str, int]:
    """``{"n_<name>_cells_without_features": count}`` for each named count of cells with no count among
    ``features`` (name ``""``: ``"n_cells_without_features"``), with one warning saying ``consequence`` when any
    is nonzero; ``stacklevel`` as ``warnings.warn``'s would be in the caller."""
    if any(counts.values()):
        said = " and ".join(f"{n} {name}".rstrip() for name, n in counts.items() if n)
        warnings.warn(f"{said} cells have no count among {features}: {consequence}; consider removing cells with few "
                      "counts (e.g. sc.pp.filter_cells(adata, min_genes=...))", stacklevel=stacklevel + 1)
    return {"_".join(filter(None, ("n", name.lower(), "cells_without_features"))): n for name, n in counts.items()}


def marker_genes(activity: ad.AnnData, group: np.ndarray, background: np.ndarray, n: int) -> list[str]:
    """Genes with the largest gain in the fraction of cells with nonzero values, group vs background."""
    x = activity.X

    def detected(rows):
        return np.asarray((x[rows] > 0).mean(0)).ravel() if len(rows) else np.zeros(activity.n_vars)

    gain = detected(group) - detected(background)
    top = np.argsort(-gain, kind="stable")[:n]
    return [str(activity.var_names[i]) for i in top if gain[i] > 0]
