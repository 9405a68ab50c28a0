"""Device-resident forms of the batch sources: arrays put on the device once, and a pure JAX ``gather`` that
builds a batch from an index array inside the jitted step (no host copy per batch).

A :class:`DeviceData` holds host arrays (a pytree) and ``gather(arrays, indices, **draws) -> batch`` giving the
same batch as the source's ``get(indices)`` (same keys, shapes and float32 values, bit for bit).
A matrix is kept dense, or as padded rows of (values, columns) when that is smaller (a sparse matrix with few
nonzeros per row); rows are densified by the gather. Backed (on-disk) matrices have no device form.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

VALUES, COLUMNS, DENSE = "values", "columns", "dense"


@dataclass(frozen=True)
class DeviceData:
    """``arrays``: host arrays (a pytree) to put on the device; ``gather(device arrays, indices, **draws) ->
    batch``. ``draws(host indices) -> dict``: per-batch integer arrays drawn on the host (a source whose batches
    use host randomness: the draws are made there as for its host batches, the rows gathered on the device);
    ``None``: the gather needs the indices alone."""

    arrays: Any
    gather: Callable[..., dict]
    draws: Callable[[np.ndarray], dict] | None = None

    def host_draws(self, indices: np.ndarray) -> dict:
        """The batch's host draws (``{}`` without ``draws``)."""
        return {} if self.draws is None else self.draws(indices)

    @property
    def nbytes(self) -> int:
        return sum(np.asarray(a).nbytes for a in jax.tree.leaves(self.arrays))


def in_memory(x) -> bool:
    """Whether ``x`` is an in-memory dense or sparse matrix (a backed matrix is not)."""
    return isinstance(x, np.ndarray) or sp.issparse(x)


def matrix_arrays(x) -> dict[str, np.ndarray]:
    """``x`` (dense or sparse) as float32 device arrays: ``{DENSE}``, or ``{VALUES, COLUMNS}`` (rows padded to
    the longest row's nonzero count, padding value 0 at column 0) when that is smaller."""
    n, d = x.shape
    if not sp.issparse(x):
        return {DENSE: np.asarray(x, dtype=np.float32)}
    x = sp.csr_matrix(x)
    lengths = np.diff(x.indptr)
    width = max(int(lengths.max(initial=0)), 1)
    if width * 8 >= d * 4:
        return {DENSE: x.toarray().astype(np.float32, copy=False)}
    slot = np.arange(x.nnz) - np.repeat(x.indptr[:-1], lengths)
    rows = np.repeat(np.arange(n), lengths)
    values = np.zeros((n, width), np.float32)
    columns = np.zeros((n, width), np.int32)
    values[rows, slot] = x.data
    columns[rows, slot] = x.indices
    return {VALUES: values, COLUMNS: columns, DENSE: np.zeros((0, d), np.float32)}


def gather_rows(m: dict, idx: jax.Array) -> jax.Array:
    """Dense float32 rows ``idx`` of a matrix from :func:`matrix_arrays` (on the device, inside jit)."""
    if VALUES not in m:
        return m[DENSE][idx]
    values, columns = m[VALUES][idx], m[COLUMNS][idx]
    rows = jnp.broadcast_to(jnp.arange(idx.shape[0])[:, None], columns.shape)
    return jnp.zeros((idx.shape[0], m[DENSE].shape[1]), jnp.float32).at[rows, columns].add(values)


def rows_data(x, key: str) -> DeviceData:
    """Rows of a prepared feature matrix: ``{key: x[indices]}``."""
    return DeviceData({"m": matrix_arrays(x)}, lambda a, idx: {key: gather_rows(a["m"], idx)})


def lognorm_data(counts, normalizer, key: str) -> DeviceData:
    """Log-normalised rows: ``{key: normalizer(counts[indices], indices)}``. The whole matrix is normalised once
    on the host (``LogNormalizer.sparse``: the same float32 operations as per batch), so batches are bit for bit
    the host's."""
    return rows_data(normalizer.sparse(counts), key)


def arrays_data(arrays: dict[str, np.ndarray]) -> DeviceData:
    """Rows of in-memory arrays: ``{key: array[indices]}``."""
    return DeviceData(dict(arrays), lambda a, idx: {k: v[idx] for k, v in a.items()})


def graph_data(rows: DeviceData, neighbors: np.ndarray, keys) -> DeviceData:
    """Cells with their neighbours' rows, as ``GraphSource.get`` (``keys``: the ``KEYS`` namespace)."""

    def gather(a, idx):
        nb = a["neighbors"][idx]
        x = rows.gather(a["rows"], jnp.concatenate([idx, nb.ravel()]))[keys.X]
        return {keys.X: x[:idx.shape[0]], keys.NEIGHBOR_X: x[idx.shape[0]:].reshape(*nb.shape, -1),
                keys.NEIGHBOR_MASK: jnp.ones(nb.shape, dtype=bool)}

    return DeviceData({"rows": rows.arrays, "neighbors": np.asarray(neighbors, np.int32)}, gather)


def paired_data(rna, atac, keys) -> DeviceData:
    """Both modalities' ``{X, COUNTS, SIZE_FACTOR}``, as ``PairedSource.get`` (``keys``: the ``KEYS`` namespace);
    inputs normalised once on the host, as in :func:`lognorm_data`."""

    def modality(m) -> dict:
        return {"x": matrix_arrays(m.normalizer.sparse(m.counts)), "counts": matrix_arrays(m.counts),
                "size_factor": np.asarray(m.size_factor, np.float32)}

    def one(a, idx):
        return {keys.X: gather_rows(a["x"], idx), keys.COUNTS: gather_rows(a["counts"], idx),
                keys.SIZE_FACTOR: a["size_factor"][idx]}

    return DeviceData({keys.RNA: modality(rna), keys.ATAC: modality(atac)},
                      lambda a, idx: {keys.RNA: one(a[keys.RNA], idx), keys.ATAC: one(a[keys.ATAC], idx)})


def transfer_data(rna_x, rna_y: np.ndarray, atac_x, neighbors: np.ndarray, draws: Callable[[np.ndarray], dict],
                  keys) -> DeviceData:
    """``TransferSource.get``'s batch: ATAC rows and one drawn neighbour each, drawn RNA rows with their labels;
    ``draws(indices) -> {"neighbor", "rna"}`` are the source's own host draws (``keys``: the ``KEYS`` namespace)."""

    def gather(a, idx, neighbor, rna):
        return {keys.RNA: {keys.X: gather_rows(a["rna"], rna), keys.LABEL: a["rna_y"][rna]},
                keys.ATAC: {keys.X: gather_rows(a["atac"], idx), keys.NEIGHBOR_X: gather_rows(a["atac"], neighbor)}}

    arrays = {"rna": matrix_arrays(rna_x), "rna_y": np.asarray(rna_y, np.int32), "atac": matrix_arrays(atac_x)}
    return DeviceData(arrays, gather, draws)


def member_data(inner: DeviceData, orders: list[np.ndarray], members_key: str) -> DeviceData:
    """``MemberSource.get``'s batch: member ``i`` gathers ``inner`` at ``orders[i][indices]`` with its own draws."""

    def draws(indices):
        member_indices = [order[indices].astype(np.int32) for order in orders]
        return {"members": [{"idx": idx, **inner.host_draws(idx)} for idx in member_indices]}

    def gather(a, idx, members):
        return {members_key: [inner.gather(a, m["idx"], **{k: v for k, v in m.items() if k != "idx"})
                              for m in members]}

    return DeviceData(inner.arrays, gather, draws)
