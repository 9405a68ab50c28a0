"""Fragment files (``atac_fragments.tsv.gz``: chrom, start, end, barcode, count) -> cells x features counts.

Counting convention: each fragment contributes its two Tn5 insertions, at ``start`` and ``end - 1``
(0-based), each counted in every feature that contains it, so a fragment lying inside one peak adds 2.
This is what Cell Ranger (ATAC / ARC peak-barcode matrices) and ArchR count; Signac's ``FeatureMatrix``
counts a fragment once per overlapping feature, SnapATAC2 offers both (and ``paired-insertion``, once per
fragment and feature). The count column (duplicate reads of the fragment) is ignored: a fragment counts once.

The file is streamed in chunks with pandas' C parser through gzip (a bgzipped file is valid gzip); a
whole-file pass needs no tabix index, so pysam/snapatac2 would add a compiled dependency for nothing
used here. Memory is bounded by the chunk plus the sparse result: pairs (cell, feature) are summed into
a compact sparse matrix whenever ``FLUSH_AT`` of them are pending.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from omics_cl.data import gene_activity as ga
from omics_cl.data.intervals import (
    IntervalIndex,
    TileIndex,
    Vocabulary,
    feature_var,
    read_peaks,
)

CHUNK_LINES = 250_000
FLUSH_AT = 1 << 24
FORMAT = "tab-separated chrom, start, end, barcode[, count], '#' header lines allowed"


def iter_fragments(path, chunksize: int = CHUNK_LINES) -> Iterator[pd.DataFrame]:
    """Chunks of ``chrom, start, end, barcode`` (``start``/``end`` int64) from a plain or gzipped file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"fragments file {path} not found")
    dtype = {0: str, 1: np.int64, 2: np.int64, 3: str}
    reader = None
    while True:
        try:  # pandas parser errors are ValueErrors; a bad gzip stream raises OSError, EOFError or zlib.error
            if reader is None:
                reader = iter(pd.read_csv(path, sep="\t", header=None, comment="#", usecols=[0, 1, 2, 3],
                                          dtype=dtype, chunksize=chunksize, compression="infer"))
            chunk = next(reader)
        except StopIteration:
            break
        except (ValueError, OSError, EOFError, zlib.error) as err:
            raise ValueError(f"cannot read {path} as a fragments file ({FORMAT}): {type(err).__name__}: {err}") from None
        chunk.columns = ["chrom", "start", "end", "barcode"]
        bad = (chunk["start"] < 0) | (chunk["end"] <= chunk["start"])
        if bad.any():
            raise ValueError(f"fragments file {path} has {int(bad.sum())} rows with start < 0 or end <= start, "
                             f"e.g. {chunk[bad].iloc[0].tolist()}")
        yield chunk


def read_barcodes(barcodes) -> list[str]:
    """Whitelist from a sequence or a file (one barcode per line, first column; ``barcodes.tsv.gz`` works)."""
    if isinstance(barcodes, (str, Path)):
        path = Path(barcodes)
        if not path.is_file():
            raise ValueError(f"barcodes file {path} not found")
        values = pd.read_csv(path, sep="\t", header=None, usecols=[0], dtype=str, compression="infer")[0].tolist()
    else:
        values = [str(b) for b in barcodes]
    if not values:
        raise ValueError("the barcode whitelist is empty")
    if len(set(values)) != len(values):
        raise ValueError(f"the barcode whitelist lists {len(values) - len(set(values))} barcodes twice")
    return values


class PairCounts:
    """Sum of (row, column) pairs as a sparse count matrix, compressed every ``flush_at`` pending pairs."""

    def __init__(self, flush_at: int):
        self.flush_at, self.pending = flush_at, 0
        self.rows, self.cols, self.vals = [], [], []

    def add(self, rows: np.ndarray, cols: np.ndarray) -> None:
        self.rows.append(rows)
        self.cols.append(cols)
        self.vals.append(np.ones(len(rows), dtype=np.int64))
        self.pending += len(rows)
        if self.pending >= self.flush_at:
            self.compress()

    def compress(self, shape: tuple[int, int] | None = None) -> sp.coo_matrix:
        rows, cols, vals = (np.concatenate(x) if x else np.zeros(0, np.int64) for x in (self.rows, self.cols, self.vals))
        if shape is None:
            shape = (int(rows.max(initial=-1)) + 1, int(cols.max(initial=-1)) + 1)
        summed = sp.coo_matrix((vals, (rows, cols)), shape=shape).tocsr().tocoo()
        self.rows, self.cols, self.vals = [summed.row.astype(np.int64)], [summed.col.astype(np.int64)], [summed.data]
        self.pending = 0
        return summed


def count_insertions(path, index, barcodes=None, chunksize: int = CHUNK_LINES):
    """Stream ``path`` and count each cell's insertions per column of ``index`` (``IntervalIndex`` or
    ``TileIndex``). Returns (cells x columns CSR, barcodes, fragments per cell, fragments in the file)."""
    cells = Vocabulary(None if barcodes is None else read_barcodes(barcodes))
    counts, n_fragments, total = PairCounts(FLUSH_AT), np.zeros(len(cells), dtype=np.int64), 0
    for chunk in iter_fragments(path, chunksize):
        total += len(chunk)
        cell = cells.codes(chunk["barcode"].to_numpy())
        keep = cell >= 0
        if not keep.any():
            continue
        cell, chrom = cell[keep], chunk["chrom"].to_numpy()[keep]
        n_fragments = np.pad(n_fragments, (0, len(cells) - len(n_fragments)))
        n_fragments += np.bincount(cell, minlength=len(cells))
        pos = np.concatenate([chunk["start"].to_numpy()[keep], chunk["end"].to_numpy()[keep] - 1])
        col = index.locate(np.concatenate([chrom, chrom]), pos)
        hit = col >= 0
        counts.add(np.concatenate([cell, cell])[hit], col[hit])
    if not n_fragments.any():
        example = next(iter_fragments(path, 5))["barcode"].tolist()
        raise ValueError(f"no barcode of the whitelist occurs in {path}: the file has e.g. {example}, the whitelist "
                         f"{cells.values()[:3]} (a '-1' suffix differs?)")
    matrix = counts.compress((len(cells), index.n_columns)).tocsr()
    return matrix, cells.values(), np.pad(n_fragments, (0, len(cells) - len(n_fragments))), total


def read_fragments(path, peaks=None, tile_size: int | None = None, barcodes=None,
                   chunksize: int = CHUNK_LINES) -> ad.AnnData:
    """Cells x peaks (or x genome tiles) insertion counts from a fragment file, streamed in chunks.

    ``peaks``: a BED path, a DataFrame or peak names (``read_peaks``); or ``tile_size`` bp bins (tiles
    with no insertion are left out). ``barcodes``: whitelist (sequence or file) giving the rows, in its
    order; without it every barcode in the file is a row. ``obs["n_fragments"]``: the cell's fragments
    in the file, in features or not. ``var``: ``chrom, chromStart, chromEnd``. Counting: module docstring.

    Parameters
    ----------
    path
        Fragment file (``atac_fragments.tsv.gz``; read whole, no index needed).
    peaks
        Peaks: a BED path, a DataFrame or peak names.
    tile_size
        Tile width in bp, used when ``peaks`` is ``None``.
    barcodes
        Barcode whitelist (a sequence or a file, one per line); ``None``: every barcode in the file.
    chunksize
        Fragment lines read per chunk.

    Returns
    -------
    AnnData
        Cells x peaks (or tiles) sparse insertion counts.
    """
    if (peaks is None) == (tile_size is None):
        raise ValueError("give exactly one of peaks (BED file, DataFrame or names) and tile_size")
    if peaks is not None:
        var = read_peaks(peaks)
        index = IntervalIndex(var["chrom"], var["start"], var["end"])
        matrix, names, n_fragments, total = count_insertions(path, index, barcodes, chunksize)
        matrix = matrix @ index.cover
        var = feature_var(var["chrom"], var["start"], var["end"])
    else:
        index = TileIndex(tile_size)
        matrix, names, n_fragments, total = count_insertions(path, index, barcodes, chunksize)
        var, order = index.var()
        matrix = matrix[:, order]
    out = ad.AnnData(sp.csr_matrix(matrix, dtype=np.float32), obs=pd.DataFrame(index=pd.Index(names)), var=var)
    out.obs["n_fragments"] = n_fragments
    out.uns["omics_cl"] = {"fragments": {
        "path": str(path), "features": "peaks" if peaks is not None else f"tiles of {tile_size} bp",
        "counting": "Tn5 insertions (start, end - 1)", "n_fragments_in_file": int(total),
        "n_fragments_in_cells": int(n_fragments.sum()), "n_cells_without_fragments": int((n_fragments == 0).sum())}}
    return out


def gene_activity_from_fragments(path, annotation, barcodes=None, upstream: int = 2000,
                                 chunksize: int = CHUNK_LINES) -> ad.AnnData:
    """Cells x genes insertions in each gene's body extended ``upstream`` bp before its TSS (strand-aware
    windows of ``gene_activity.gene_windows``), from a fragment file, streamed.

    Records sharing a gene name are united (an insertion counts once per name); genes with no insertion
    in any cell are left out. ``annotation`` and ``barcodes`` as in ``pp.gene_activity`` / ``read_fragments``.

    Parameters
    ----------
    path
        Fragment file (``atac_fragments.tsv.gz``; read whole, no index needed).
    annotation
        Gene annotation: a GTF / GFF3 / BED / TSV path or a DataFrame.
    barcodes
        Barcode whitelist (a sequence or a file, one per line); ``None``: every barcode in the file.
    upstream
        Bases before the TSS added to each gene body.
    chunksize
        Fragment lines read per chunk.

    Returns
    -------
    AnnData
        Cells x genes sparse insertion counts.
    """
    genes = ga.read_annotation(annotation)
    w_start, w_end = ga.gene_windows(genes, upstream)
    index = IntervalIndex(genes["chrom"], w_start, w_end)
    segments, names, n_fragments, _ = count_insertions(path, index, barcodes, chunksize)
    by_name, var = ga.merge_genes_by_name(index.cover, genes)
    matrix = (segments @ by_name).tocsc()
    keep = np.flatnonzero(np.diff(matrix.indptr) > 0)
    if not len(keep):
        raise ValueError(f"no insertion of {path} falls in a gene window: is the annotation for the same genome "
                         f"build (annotation chromosomes {sorted(set(genes['chrom']))[:5]})?")
    out = ad.AnnData(sp.csr_matrix(matrix[:, keep], dtype=np.float32), obs=pd.DataFrame(index=pd.Index(names)),
                     var=var.iloc[keep].drop(columns="n_peaks"))
    out.obs["n_fragments"] = n_fragments
    source = "DataFrame" if isinstance(annotation, pd.DataFrame) else str(annotation)
    out.uns["omics_cl"] = {"gene_activity": {"source": source, "upstream": upstream, "fragments": str(path),
                                             "counting": "Tn5 insertions (start, end - 1)"}}
    return out
