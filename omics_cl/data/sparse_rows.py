"""Sparse matrices built in row blocks, so that an atlas of 10^6 cells needs the result's memory and little more."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from omics_cl.data.counts import CHUNK_ROWS


def index_dtype(nnz: int, n_cols: int) -> type:
    """int32 column indices where they and the entry count fit (as scipy keeps them), else int64."""
    return np.int32 if nnz < np.iinfo(np.int32).max and n_cols < np.iinfo(np.int32).max else np.int64


def stack_rows(blocks: list[sp.csr_matrix], n_cols: int) -> sp.csr_matrix:
    """CSR ``blocks`` (each ``n_cols`` wide) stacked by rows without a COO copy; each block is dropped from the list
    as soon as it is copied."""
    nnz = sum(b.nnz for b in blocks)
    dtype = np.result_type(*(b.dtype for b in blocks)) if blocks else np.float32
    data, indices = np.empty(nnz, dtype), np.empty(nnz, index_dtype(nnz, n_cols))
    indptr, pos, rows = [np.zeros(1, np.int64)], 0, 0
    for i, block in enumerate(blocks):
        data[pos:pos + block.nnz], indices[pos:pos + block.nnz] = block.data, block.indices
        indptr.append(block.indptr[1:].astype(np.int64) + pos)
        pos, rows = pos + block.nnz, rows + block.shape[0]
        blocks[i] = None
    return sp.csr_matrix((data, indices, np.concatenate(indptr)), shape=(rows, n_cols))


def hstack_rows(parts: list, rows: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> sp.csr_matrix:
    """Rows ``rows`` of ``scipy.sparse.hstack(parts).tocsr()`` (``parts``: dense arrays or sparse matrices of the same
    cells), the same matrix entry for entry, built ``chunk_rows`` at a time into arrays sized once: memory is the
    result plus one block, where ``hstack`` makes a COO copy of every part first."""
    parts = [p if sp.issparse(p) else np.asarray(p) for p in parts]
    sparse = [sp.csr_matrix(p) if sp.issparse(p) else None for p in parts]
    row_nnz = np.zeros(len(rows), np.int64)
    for p, s in zip(parts, sparse):
        row_nnz += np.diff(s.indptr)[rows] if s is not None else np.count_nonzero(p[rows], axis=1)
    nnz = int(row_nnz.sum())
    n_cols = sum(p.shape[1] for p in parts)
    data = np.empty(nnz, np.result_type(*(p.dtype for p in parts)))
    indices = np.empty(nnz, index_dtype(nnz, n_cols))
    indptr = np.concatenate([[0], np.cumsum(row_nnz)])
    for start in range(0, len(rows), chunk_rows):
        chunk = rows[start:start + chunk_rows]
        block = sp.hstack([s[chunk] if s is not None else sp.csr_matrix(p[chunk])
                           for p, s in zip(parts, sparse)]).tocsr()
        lo, hi = indptr[start], indptr[start + len(chunk)]
        if block.nnz != hi - lo:
            raise AssertionError("a block's entries do not match the counted ones")
        data[lo:hi], indices[lo:hi] = block.data, block.indices
    return sp.csr_matrix((data, indices, indptr), shape=(len(rows), n_cols))
