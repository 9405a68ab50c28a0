"""Minibatch sources: rows of a (sparse, dense or backed) matrix through a per-batch transform.

Only the requested rows are read and densified, so a whole matrix never becomes dense.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp


def dense_rows(x, rows) -> np.ndarray:
    """``x[rows]`` as a dense float32 array (sparse rows are densified here, per batch)."""
    out = x[rows]
    return (out.toarray() if sp.issparse(out) else np.asarray(out)).astype(np.float32, copy=False)


class RowSource:
    """``get(indices) -> {"x": transform(rows, indices)}`` in the order of ``indices``."""

    def __init__(self, x, transform: Callable[[object, np.ndarray], np.ndarray]):
        self.x = x
        self.transform = transform
        self.n_obs = x.shape[0]

    def get(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        indices = np.asarray(indices)
        order = np.argsort(indices, kind="stable")  # sorted reads are much faster on backed files
        sorted_idx = indices[order]
        out = self.transform(self.x[sorted_idx], sorted_idx)
        restore = np.empty_like(order)
        restore[order] = np.arange(len(order))
        return {"x": out[restore]}
