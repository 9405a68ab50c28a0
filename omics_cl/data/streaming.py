"""Streaming counts from a matrix that need not fit in memory (a backed ``.h5ad``): :class:`StreamingCountsSource`.

Rows are read as contiguous chunks (one sequential read each, kept to the HVG columns), at most ``window``
chunks held at a time, and batches are built ``prefetch`` ahead in a background thread
(``omics_cl.core.prefetch``). The recipe itself (library sizes, HVGs) is fitted in row chunks by
``omics_cl.data.preprocess.fit_lognormalizer`` (seurat_v3 from chunked gene moments), so nothing loads the
whole matrix.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from threading import Lock

import numpy as np
import scipy.sparse as sp

from omics_cl.data.preprocess import LogNormalizer
from omics_cl.data.sources import KEYS, CountsSource

CHUNK_ROWS = 4096
WINDOW = 8
PREFETCH = 2


class StreamingCountsSource(CountsSource):
    """Log-normalised rows of ``x`` read chunk by chunk; ``get`` gives the same values as ``CountsSource.get``.

    Sampling scheme (:meth:`epoch_order`), deterministic per ``(seed, epoch)``: the rows are cut into chunks of
    ``chunk_rows`` consecutive rows; the chunks are shuffled, taken ``window`` at a time, and the requested
    cells within each group of ``window`` chunks are shuffled together; the epoch visits the groups one after
    another. A minibatch therefore mixes cells from ``window`` random places of the file, not from all of it
    (a full random permutation would cost one random read per cell), and each chunk is read once per epoch.
    """

    prefetch = PREFETCH

    def __init__(self, x, normalizer: LogNormalizer, chunk_rows: int = CHUNK_ROWS, window: int = WINDOW):
        if chunk_rows < 1 or window < 1:
            raise ValueError(f"chunk_rows and window must be >= 1, got {chunk_rows} and {window}")
        super().__init__(x, normalizer)
        self.chunk_rows, self.window = chunk_rows, window
        self.n_chunks = -(-self.n_obs // chunk_rows)
        self.kept = replace(normalizer, genes=np.arange(normalizer.n_features))  # for chunks already cut to HVGs
        self.cache: OrderedDict[int, object] = OrderedDict()
        self.lock = Lock()
        self.chunks_read = 0

    def _read(self, chunk: int):
        start = chunk * self.chunk_rows
        rows = self.x[start:min(start + self.chunk_rows, self.n_obs)]
        genes = self.transform.genes
        return sp.csr_matrix(rows)[:, genes] if sp.issparse(rows) else np.asarray(rows)[:, genes]

    def _chunks(self, chunks: np.ndarray) -> dict[int, object]:
        """The rows of ``chunks`` (cut to the HVGs): cached ones first, then the others read, evicting the least
        recently used beyond ``window``."""
        with self.lock:
            out = {}
            for c in sorted(chunks.tolist(), key=lambda c: c not in self.cache):
                if c in self.cache:
                    self.cache.move_to_end(c)
                else:
                    self.cache[c] = self._read(c)
                    self.chunks_read += 1
                    if len(self.cache) > self.window:
                        self.cache.popitem(last=False)
                out[c] = self.cache[c]
            return out

    def get(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        indices = np.asarray(indices)
        chunk_of = indices // self.chunk_rows
        rows = self._chunks(np.unique(chunk_of))
        out = np.empty((len(indices), self.n_features), np.float32)
        for c, block in rows.items():
            at = np.flatnonzero(chunk_of == c)
            out[at] = self.kept(block[indices[at] - c * self.chunk_rows], indices[at])
        return {KEYS.X: out}

    def epoch_order(self, indices: np.ndarray, seed: int, epoch: int) -> np.ndarray:
        """``indices`` in the order of the sampling scheme (class docstring) for ``(seed, epoch)``."""
        rng = np.random.default_rng([seed, epoch])
        indices = np.sort(np.asarray(indices))
        bounds = np.searchsorted(indices, np.arange(1, self.n_chunks) * self.chunk_rows)
        members = np.split(indices, bounds)
        chunks = rng.permutation(self.n_chunks)
        groups = [np.concatenate([members[c] for c in chunks[w:w + self.window]])
                  for w in range(0, self.n_chunks, self.window)]
        return np.concatenate([rng.permutation(g) for g in groups])
