"""Raw counts: where they are held, their validation, and row-chunk iteration.

Every check runs over chunks of rows, so the same code serves in-memory and ``backed="r"`` AnnData.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator

import anndata as ad
import numpy as np
import scipy.sparse as sp

CHUNK_ROWS = 8192


def counts_matrix(adata: ad.AnnData, layer: str | None = None):
    """The matrix holding raw counts: ``adata.layers[layer]`` or ``adata.X``."""
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"the AnnData is empty ({adata.n_obs} cells x {adata.n_vars} genes)")
    if layer is None:
        if adata.X is None:
            raise ValueError("adata.X is empty; pass layer=... naming the layer that holds raw counts "
                             f"(layers present: {list(adata.layers.keys())})")
        return adata.X
    if layer not in adata.layers:
        raise ValueError(f"layer {layer!r} not found; layers present: {list(adata.layers.keys()) or 'none'}. "
                         "Pass layer=None to use adata.X")
    return adata.layers[layer]


def row_chunks(x, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[int, int, object]]:
    """``(start, stop, rows)`` over row blocks of a dense, sparse or backed matrix.

    Parameters
    ----------
    x
        Dense, sparse or backed matrix.
    chunk_rows
        Rows per block.

    Returns
    -------
    Iterator[tuple[int, int, object]]
        ``(start, stop, rows)`` per block.
    """
    for start in range(0, x.shape[0], chunk_rows):
        stop = min(start + chunk_rows, x.shape[0])
        yield start, stop, x[start:stop]


def _values(block) -> np.ndarray:
    return block.data if sp.issparse(block) else np.asarray(block).ravel()


def check_finite_counts(block, what: str = "counts") -> None:
    """Raise ``ValueError`` when a block has NaN/inf, negative or non-integer values."""
    v = _values(block)
    if v.size == 0:
        return
    if not np.issubdtype(v.dtype, np.number):
        raise ValueError(f"{what} must be numeric, got dtype {v.dtype}")
    bad = ~np.isfinite(v)
    if bad.any():
        raise ValueError(f"{what} contain {int(bad.sum())} NaN/inf values; remove or impute them first")
    if (v < 0).any():
        raise ValueError(f"{what} contain negative values (min {v.min():g}); raw counts are expected, "
                         "not scaled or log-transformed data. Pass layer=... if counts are in a layer")
    frac = np.abs(v - np.round(v))
    if (frac > 1e-6).any():
        example = v[frac > 1e-6][0]
        raise ValueError(f"{what} contain non-integer values (e.g. {example:g}); raw counts are expected, "
                         "not normalised or log-transformed data. Pass layer=... if counts are in a layer")


def validated_counts(adata: ad.AnnData, layer: str | None = None, what: str = "counts"):
    """``counts_matrix`` after checking every row chunk with ``check_finite_counts``.

    Parameters
    ----------
    adata
        The AnnData.
    layer
        Layer holding the raw counts (``None``: ``X``).
    what
        What the counts are, for error messages.

    Returns
    -------
    matrix
        The counts matrix as stored (dense, sparse or backed).
    """
    x = counts_matrix(adata, layer)
    for _ in _checked_rows(x, what):
        pass
    return x


def _checked_rows(x, what: str):
    """Row chunks of ``x``, each checked with ``check_finite_counts`` before it is yielded."""
    for _, _, rows in row_chunks(x):
        check_finite_counts(rows, what)
        yield rows


def cells_without_counts(x, columns: np.ndarray | None = None) -> int:
    """Rows of ``x`` (dense, sparse or backed) with no nonzero value in ``columns`` (``None``: any column), counted
    in row chunks."""
    return sum(_empty_rows(rows if columns is None else rows[:, columns]) for _, _, rows in row_chunks(x))


def _empty_rows(rows) -> int:
    return int((np.asarray((rows != 0).sum(axis=1)).ravel() == 0).sum())


def nonempty_counts(adata: ad.AnnData, layer: str | None = None, what: str = "counts"):
    """``(validated_counts(adata, layer, what), number of cells without a count)`` in one pass over the row
    chunks; ``ValueError`` when no cell has a count."""
    x = counts_matrix(adata, layer)
    empty = sum(_empty_rows(rows) for rows in _checked_rows(x, what))
    if empty == x.shape[0]:
        raise ValueError(f"{what} hold no count at all ({x.shape[0]} cells x {x.shape[1]} features)")
    return x, empty


def mito_fraction(adata: ad.AnnData, layer: str | None = None, prefix: tuple[str, ...] = ("MT-", "mt-")) -> np.ndarray:
    """Fraction of each cell's counts in genes whose names start with a mitochondrial prefix.

    Parameters
    ----------
    adata
        Cells x genes AnnData of raw counts.
    layer
        Layer holding the raw counts (``None``: ``X``).
    prefix
        Gene-name prefixes that mark mitochondrial genes.

    Returns
    -------
    numpy.ndarray
        Mitochondrial fraction per cell (0 for cells without counts).
    """
    x = counts_matrix(adata, layer)
    is_mt = np.asarray(adata.var_names.str.startswith(prefix))
    if not is_mt.any():
        warnings.warn("no mitochondrial genes found (names starting with MT- or mt-)", stacklevel=2)
    total = np.zeros(adata.n_obs)
    mt = np.zeros(adata.n_obs)
    for start, stop, rows in row_chunks(x):
        total[start:stop] = np.asarray(rows.sum(1)).ravel()
        mt[start:stop] = np.asarray(rows[:, is_mt].sum(1)).ravel()
    return np.divide(mt, total, out=np.zeros_like(mt), where=total > 0)
