"""Batch sources: ``get(indices) -> dict of arrays`` with ``n_obs``, the protocol the training loop reads.

Every batch uses the keys of :data:`KEYS` (like scvi-tools' ``REGISTRY_KEYS``); a paired or transfer batch
nests one sub-batch per modality under ``KEYS.RNA`` / ``KEYS.ATAC``. Only the requested rows are read and
densified, so a whole matrix never becomes dense. Sources are built from arrays and AnnData-free recipes;
nothing here imports flax. ``device_data()`` gives a source's device-resident form
(``omics_cl.data.device_sources.DeviceData``), or None when its batches must be built on the host.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import scipy.sparse as sp

from omics_cl.core.neighbors import knn
from omics_cl.data import device_sources as dev
from omics_cl.data.components import principal_components

KEYS = SimpleNamespace(
    X="x",                          # model input rows (cells x features)
    COUNTS="counts",                # raw counts of the same rows (likelihood target)
    SIZE_FACTOR="size_factor",      # per-cell library size / median library size
    NEIGHBOR_X="neighbor_x",        # inputs of graph neighbours: (B, k, d), or (B, d) for one drawn neighbour
    NEIGHBOR_MASK="neighbor_mask",  # (B, k) bool, which neighbour slots are real
    LABEL="label",                  # integer class of a labelled reference cell
    RNA="rna",                      # per-modality sub-batches
    ATAC="atac",
    MEMBERS="members",              # one sub-batch per ensemble member (MemberSource)
)


def dense_rows(x, rows) -> np.ndarray:
    """``x[rows]`` as a dense float32 array (sparse rows are densified here, per batch)."""
    out = x[rows]
    return (out.toarray() if sp.issparse(out) else np.asarray(out)).astype(np.float32, copy=False)


class RowSource:
    """``get(indices) -> {X: transform(rows, indices)}`` in the order of ``indices``."""

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
        return {KEYS.X: out[restore]}

    def device_data(self) -> dev.DeviceData | None:
        """None: an arbitrary ``transform`` runs on the host."""
        return None


class CountsSource(RowSource):
    """Rows of a count matrix through a fitted ``LogNormalizer`` (``omics_cl.data.preprocess``)."""

    @property
    def n_features(self) -> int:
        return self.transform.n_features

    def lognorm_sparse(self) -> sp.csr_matrix:
        """The whole transformed matrix, kept sparse."""
        return self.transform.sparse(self.x)

    def device_data(self) -> dev.DeviceData | None:
        """The kept columns' counts and per-cell scales (in-memory counts only)."""
        return dev.lognorm_data(self.x, self.transform, KEYS.X) if dev.in_memory(self.x) else None


class DenseSource(RowSource):
    """Rows of an already prepared (sparse or dense) feature matrix, densified per batch."""

    def __init__(self, x):
        super().__init__(x, lambda rows, _cells: dense_rows(rows, slice(None)))

    def device_data(self) -> dev.DeviceData | None:
        return dev.rows_data(self.x, KEYS.X) if dev.in_memory(self.x) else None


def dense_source(x) -> DenseSource:
    """Rows of an already prepared (sparse or dense) feature matrix, densified per batch."""
    return DenseSource(x)


class ArraySource:
    """Rows of in-memory arrays (e.g. embeddings for chunked inference): ``get -> {key: array[indices]}``."""

    def __init__(self, **arrays: np.ndarray):
        self.arrays = arrays
        self.n_obs = len(next(iter(arrays.values())))

    def get(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[indices] for k, v in self.arrays.items()}

    def device_data(self) -> dev.DeviceData:
        return dev.arrays_data(self.arrays)


def cell_graph(rows: CountsSource, n_pcs: int, n_neighbors: int, seed: int) -> np.ndarray:
    """Neighbour indices (cells x n_neighbors, self excluded) of a cosine kNN on PCA of the log-normalised
    rows. Built from expression alone."""
    pcs = principal_components(rows.lognorm_sparse(), n_pcs, seed)
    idx, _ = knn(pcs, n_neighbors + 1, "cosine", seed)
    return idx[:, 1:]


class GraphSource:
    """Cells with their graph neighbours' inputs: ``{X, NEIGHBOR_X, NEIGHBOR_MASK}``."""

    def __init__(self, rows: RowSource, neighbors: np.ndarray):
        self.rows, self.neighbors = rows, neighbors
        self.n_obs = rows.n_obs

    def get(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Each distinct cell of the batch and its neighbours is read and transformed once (cells are often
        neighbours of several cells in a batch; the transform is row by row, so the rows are the same)."""
        nb = self.neighbors[indices]
        distinct, where = np.unique(np.concatenate([indices, nb.ravel()]), return_inverse=True)
        x = self.rows.get(distinct)[KEYS.X][where]
        return {KEYS.X: x[:len(indices)], KEYS.NEIGHBOR_X: x[len(indices):].reshape(*nb.shape, -1),
                KEYS.NEIGHBOR_MASK: np.ones(nb.shape, dtype=bool)}

    def device_data(self) -> dev.DeviceData | None:
        rows = self.rows.device_data()
        return None if rows is None else dev.graph_data(rows, self.neighbors, KEYS)


class PairedSource:
    """``get -> {RNA: {X, COUNTS, SIZE_FACTOR}, ATAC: {...}}``, rows of both modalities in the same order
    (each modality a ``omics_cl.data.paired.Modality``)."""

    def __init__(self, rna, atac):
        self.rna, self.atac = rna, atac
        self.n_obs = rna.counts.shape[0]

    @staticmethod
    def _modality(m, idx: np.ndarray) -> dict[str, np.ndarray]:
        rows = m.counts[idx]
        return {KEYS.X: m.normalizer(rows, idx), KEYS.COUNTS: rows.toarray(), KEYS.SIZE_FACTOR: m.size_factor[idx]}

    def get(self, indices: np.ndarray) -> dict:
        indices = np.asarray(indices)
        return {KEYS.RNA: self._modality(self.rna, indices), KEYS.ATAC: self._modality(self.atac, indices)}

    def device_data(self) -> dev.DeviceData:
        return dev.paired_data(self.rna, self.atac, KEYS)


class TransferSource:
    """Batches indexed by ATAC cell: ``{ATAC: {X, NEIGHBOR_X}, RNA: {X, LABEL}}`` with the ATAC rows, one
    random kNN neighbour of each, and as many labelled RNA cells drawn at random (uniformly over cells). The
    draws are seeded by ``seed`` and the batch's indices, so a batch is the same whenever it is requested
    (runs and resumes are reproducible). The draws use host randomness; the device form draws on the host too
    and gathers the rows on the device."""

    def __init__(self, rna_x, rna_y: np.ndarray, atac_x, neighbors: np.ndarray, n_classes: int, seed: int,
                 atac_peaks: np.ndarray | None = None, atac_tfidf=None):
        self.rna_x, self.rna_y, self.atac_x, self.neighbors, self.seed = rna_x, rna_y, atac_x, neighbors, seed
        # the query's peak-space embedding and peak TF-IDF, read by methods after training
        self.atac_peaks, self.atac_tfidf = atac_peaks, atac_tfidf
        self.n_classes, self.n_features = n_classes, atac_x.shape[1]
        self.n_obs = atac_x.shape[0]

    def _rng(self, indices: np.ndarray) -> np.random.Generator:
        digest = hashlib.blake2b(np.asarray(indices, dtype=np.int64).tobytes(), digest_size=8).digest()
        return np.random.default_rng([self.seed, *np.frombuffer(digest, dtype=np.uint32).tolist()])

    def draws(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """The batch's drawn kNN neighbour of each ATAC cell and its RNA cells (int32 row numbers)."""
        rng = self._rng(indices)
        neighbor = self.neighbors[indices, rng.integers(0, self.neighbors.shape[1], len(indices))]
        rna = rng.integers(0, self.rna_x.shape[0], len(indices))
        return {"neighbor": neighbor.astype(np.int32), "rna": rna.astype(np.int32)}

    def get(self, indices: np.ndarray) -> dict:
        drawn = self.draws(indices)
        return {KEYS.RNA: {KEYS.X: dense_rows(self.rna_x, drawn["rna"]), KEYS.LABEL: self.rna_y[drawn["rna"]]},
                KEYS.ATAC: {KEYS.X: dense_rows(self.atac_x, indices),
                            KEYS.NEIGHBOR_X: dense_rows(self.atac_x, drawn["neighbor"])}}

    def device_data(self) -> dev.DeviceData | None:
        if not (dev.in_memory(self.rna_x) and dev.in_memory(self.atac_x)):
            return None
        return dev.transfer_data(self.rna_x, self.rna_y, self.atac_x, self.neighbors, self.draws, KEYS)


class MemberSource:
    """One batch of ``source`` per ensemble member: member 0 gets the requested cells, member ``i`` the cells at
    the same positions of a fixed permutation seeded by ``(seed, i)``, so each member trains on its own
    batches (every cell once per epoch) within one step. ``get -> {MEMBERS: [batch of member 0, ...]}``."""

    def __init__(self, source, n_members: int, seed: int):
        self.source, self.n_obs = source, source.n_obs
        self.orders = [np.arange(self.n_obs)] + [np.random.default_rng([seed, i]).permutation(self.n_obs)
                                                 for i in range(1, n_members)]

    def get(self, indices: np.ndarray) -> dict:
        indices = np.asarray(indices)
        return {KEYS.MEMBERS: [self.source.get(order[indices]) for order in self.orders]}

    def device_data(self) -> dev.DeviceData | None:
        inner = self.source.device_data() if hasattr(self.source, "device_data") else None
        return None if inner is None else dev.member_data(inner, self.orders, KEYS.MEMBERS)
