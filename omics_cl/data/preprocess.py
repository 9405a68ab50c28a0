"""The log-normalisation + HVG recipe, computed in row chunks.

Nothing here densifies the whole matrix: statistics are accumulated over chunks of rows,
so the same code serves in-memory and ``backed="r"`` AnnData.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import anndata as ad
import numpy as np
import scipy.sparse as sp

from omics_cl.data.components import column_sums, unit_variance
from omics_cl.data.counts import cells_without_counts, counts_matrix, row_chunks
from omics_cl.data.hvg import gene_stats, select_hvg


@dataclass
class LogNormalizer:
    """``log1p(counts[:, genes] / library_size * target_sum)`` applied to any row subset; when standardised
    (``clip`` and ``scale`` set, :meth:`standardized`), each gene is then clipped at ``clip`` and times
    ``scale``."""

    genes: np.ndarray
    library_size: np.ndarray
    target_sum: float = 1e4
    hvg_flavor: str | None = None  # how ``genes`` were chosen (``select_hvg``); None when set by hand
    clip: np.ndarray | None = None  # per kept gene: log-normalised mean + max_value sd
    scale: np.ndarray | None = None  # per kept gene: 1 / sd (0 for constant genes)

    @property
    def n_features(self) -> int:
        return len(self.genes)

    def __call__(self, rows, cell_idx: np.ndarray) -> np.ndarray:
        """The transformed ``rows`` (dense float32); ``cell_idx``: their cells' indices into ``library_size``.
        Sparse rows are transformed on their stored values and densified once (zeros stay zero)."""
        scale = (self.target_sum / self.library_size[cell_idx]).astype(np.float32)
        if not sp.issparse(rows):
            return self._log_standardize(np.asarray(rows)[:, self.genes].astype(np.float32) * scale[:, None])
        rows = sp.csr_matrix(rows)
        rows = rows if self.keeps_all_columns(rows.shape[1]) else rows[:, self.genes]
        if not rows.has_canonical_format:
            rows = rows.copy()
            rows.sum_duplicates()
        data = self._log_standardize(rows.data.astype(np.float32) * np.repeat(scale, np.diff(rows.indptr)),
                                     rows.indices)
        return sp.csr_matrix((data, rows.indices, rows.indptr), shape=rows.shape).toarray()

    def keeps_all_columns(self, n_columns: int) -> bool:
        """Whether ``genes`` is every one of ``n_columns`` columns in order (no column selection needed)."""
        return len(self.genes) == n_columns and np.array_equal(self.genes, np.arange(n_columns))

    def sparse(self, x) -> sp.csr_matrix:
        """The whole transformed matrix, built chunk by chunk, kept sparse."""
        blocks = []
        for start, stop, rows in row_chunks(x):
            rows = sp.csr_matrix(rows[:, self.genes], dtype=np.float32)
            rows = sp.diags((self.target_sum / self.library_size[start:stop]).astype(np.float32)) @ rows
            rows.data = self._log_standardize(rows.data, rows.indices)
            blocks.append(rows)
        return sp.vstack(blocks).tocsr()

    def _log_standardize(self, scaled: np.ndarray, columns=slice(None)) -> np.ndarray:
        """log1p of library-scaled counts, then the standardisation when set; ``columns``: each value's kept-gene
        index (a sparse matrix's stored values) or all kept genes along the last axis (a dense batch)."""
        out = np.log1p(scaled)
        return out if self.scale is None else np.minimum(out, self.clip[columns]) * self.scale[columns]

    @property
    def unstandardized(self) -> LogNormalizer:
        """The same recipe without the standardisation."""
        return replace(self, clip=None, scale=None)

    def standardized(self, x, max_value: float = 10.0) -> LogNormalizer:
        """This recipe with each kept gene scaled to unit variance and clipped at ``max_value`` sd above its mean,
        the statistics taken over all rows of the counts ``x`` (read in chunks; backed matrices work). As the
        standardised ``pca`` (``sc.pp.scale(max_value=...)``) but not centred: zeros stay zeros, so the input
        stays sparse and the augmentations (gene dropout, library scaling) keep their meaning."""
        if max_value <= 0:
            raise ValueError(f"max_value must be > 0, got {max_value}")
        base = self.unstandardized
        sums = np.zeros(self.n_features)
        squares = np.zeros(self.n_features)
        for start, stop, rows in row_chunks(x):
            block_sums, block_squares = column_sums(base(rows, np.arange(start, stop)))
            sums += block_sums
            squares += block_squares
        clip, scale = unit_variance(sums, squares, x.shape[0], max_value)
        return replace(base, clip=clip.astype(np.float32), scale=scale)


def fit_lognormalizer(x, n_top_genes: int | None = 2000, target_sum: float = 1e4) -> LogNormalizer:
    """Validate counts and fit the recipe: library sizes, then HVGs on the counts (``omics_cl.data.hvg.select_hvg``:
    seurat_v3, with a fallback when its loess fails; the flavour used is ``hvg_flavor``).

    All genes are kept when ``n_top_genes`` is None or not smaller than the gene count.
    Cells with zero total counts are refused (they cannot be normalised).
    """

    n_cells, n_genes = x.shape
    if n_cells == 0 or n_genes == 0:
        raise ValueError(f"the count matrix is empty ({n_cells} cells x {n_genes} genes)")
    gene_sum, gene_sumsq, library = gene_stats(x)
    empty = int((library == 0).sum())
    if empty:
        raise ValueError(f"{empty} of {n_cells} cells have zero total counts and cannot be normalised; "
                         "remove them first, e.g. sc.pp.filter_cells(adata, min_counts=1)")
    if int((gene_sum > 0).sum()) < 2:
        raise ValueError(f"only {int((gene_sum > 0).sum())} genes have any counts; at least 2 are needed")
    genes, flavor = select_hvg(x, n_top_genes, gene_sum, gene_sumsq, library)
    return LogNormalizer(genes, library, target_sum, flavor)


@dataclass
class PreparedCounts:
    """Raw counts (in memory or backed) plus the fitted recipe that turns rows into model input; with
    ``stream``, batches are read in chunks (``omics_cl.data.streaming``)."""

    counts: object
    normalizer: LogNormalizer
    stream: bool = False

    @property
    def n_obs(self) -> int:
        return self.counts.shape[0]

    def source(self):
        """Batches of log-normalised rows (``omics_cl.data.sources.CountsSource``, or with ``stream``
        ``omics_cl.data.streaming.StreamingCountsSource``)."""
        from omics_cl.data.sources import CountsSource
        from omics_cl.data.streaming import StreamingCountsSource

        return (StreamingCountsSource if self.stream else CountsSource)(self.counts, self.normalizer)

    def standardized(self, max_value: float = 10.0) -> PreparedCounts:
        """The same recipe with genes standardised over these cells (``LogNormalizer.standardized``)."""
        return replace(self, normalizer=self.normalizer.standardized(self.counts, max_value))

    def with_detected_genes(self, min_fraction: float) -> PreparedCounts:
        """The same recipe keeping only the genes with a nonzero count in at least ``min_fraction`` of cells."""
        if self.normalizer.scale is not None:
            raise ValueError("select genes before standardising: the standardisation is per kept gene")
        genes = self.normalizer.genes
        nonzero = np.zeros(len(genes))
        for _, _, rows in row_chunks(self.counts):
            nonzero += np.asarray((rows[:, genes] != 0).sum(0)).ravel()
        keep = genes[nonzero >= min_fraction * self.n_obs]
        if len(keep) < 2:
            raise ValueError(f"only {len(keep)} genes are detected in at least {min_fraction:.0%} of cells; "
                             "lower min_detection")
        return replace(self, normalizer=replace(self.normalizer, genes=keep))

    def n_cells_without_features(self) -> int:
        """Cells with no count among the kept genes (one pass over the rows): the model sees one and the same
        input for all of them."""
        return cells_without_counts(self.counts, self.normalizer.genes)

    @property
    def hvg_flavor(self) -> str | None:
        """The HVG flavour actually used (``"seurat_v3"`` unless its loess failed; see ``select_hvg``)."""
        return self.normalizer.hvg_flavor

    def lognorm_sparse(self) -> sp.csr_matrix:
        return self.normalizer.sparse(self.counts)


def prepare_counts(adata: ad.AnnData, layer: str | None = None, n_top_genes: int | None = 2000,
                   target_sum: float = 1e4) -> PreparedCounts:
    """METHODS.md section 1 recipe: validate counts, normalize_total, log1p, seurat_v3 HVGs (``select_hvg``), no
    scaling."""
    x = counts_matrix(adata, layer)
    return PreparedCounts(x, fit_lognormalizer(x, n_top_genes, target_sum))
