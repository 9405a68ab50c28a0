"""Genomic features for counting fragments: peak tables, an interval index that finds every feature
containing a position, fixed genome tiles, and growing vocabularies (barcodes, tiles seen so far).

Coordinates are 0-based half-open (BED). Chromosomes of peaks and fragments are compared with
``gene_activity.chrom_key`` (``chr1`` matches ``1``).
"""
from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from omics_cl.checks import check_positive_int
from omics_cl.data import gene_activity as ga

BED_HEADER = ("#", "track", "browser")


def ramp(lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(n) for n in lengths])`` without a Python loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.arange(lengths.sum(), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def read_peaks(peaks) -> pd.DataFrame:
    """``chrom, start, end`` per peak from a BED path, a DataFrame (chrom/chromStart/chromEnd or
    chrom/start/end columns, else coordinate-like index) or a sequence of names like ``chr1:100-200``."""
    if isinstance(peaks, (str, Path)):
        path = Path(peaks)
        if not path.is_file():
            raise ValueError(f"peaks file {path} not found")
        with (gzip.open if path.name.endswith(".gz") else open)(path, "rt") as f:
            skip = sum(1 for _ in itertools.takewhile(lambda line: line.startswith(BED_HEADER), f))
        try:
            table = pd.read_csv(path, sep="\t", header=None, comment="#", dtype=str, skiprows=skip)
        except (ValueError, OSError, EOFError) as err:
            raise ValueError(f"cannot read peaks file {path} as BED: {type(err).__name__}: {err}") from None
        if table.shape[1] < 3 or table.empty:
            raise ValueError(f"peaks file {path} needs BED rows with at least chrom, start, end (tab-separated)")
        start, end = pd.to_numeric(table[1], errors="coerce"), pd.to_numeric(table[2], errors="coerce")
        if start.isna().any() or end.isna().any():
            bad = table[start.isna() | end.isna()].iloc[0, :3].tolist()
            raise ValueError(f"peaks file {path} has non-integer start/end, e.g. {bad}")
        coords = pd.DataFrame({"chrom": table[0].to_numpy(), "start": start.to_numpy(np.int64),
                               "end": end.to_numpy(np.int64)})
    elif isinstance(peaks, pd.DataFrame):
        coords = ga.peak_coordinates(peaks, peaks.index)
    else:
        names = pd.Index(np.asarray(peaks, dtype=str))
        coords = ga.peak_coordinates(pd.DataFrame(index=names), names)
    if coords.empty:
        raise ValueError("no peaks given")
    bad = (coords["start"] < 0) | (coords["end"] <= coords["start"])
    if bad.any():
        raise ValueError(f"{int(bad.sum())} peaks have start < 0 or end <= start, e.g. "
                         f"{coords[bad].iloc[0].tolist()}")
    names = coords["chrom"] + ":" + coords["start"].astype(str) + "-" + coords["end"].astype(str)
    if names.duplicated().any():
        raise ValueError(f"{int(names.duplicated().sum())} peaks are listed twice, e.g. {names[names.duplicated()].iloc[0]}")
    coords.index = pd.Index(names.to_numpy())
    return coords


def feature_var(chrom, start, end) -> pd.DataFrame:
    """``var`` of a peak or tile matrix: ``chrom, chromStart, chromEnd``, named ``chrom:start-end``."""
    var = pd.DataFrame({"chrom": np.asarray(chrom, dtype=str), "chromStart": np.asarray(start, dtype=np.int64),
                        "chromEnd": np.asarray(end, dtype=np.int64)})
    var.index = pd.Index(var["chrom"] + ":" + var["chromStart"].astype(str) + "-" + var["chromEnd"].astype(str))
    return var


class Vocabulary:
    """Integer codes for values (barcodes, tile keys): fixed by a whitelist, or growing as values are seen."""

    def __init__(self, fixed=None):
        self.ids: dict = {} if fixed is None else {v: i for i, v in enumerate(fixed)}
        self.growing = fixed is None

    def __len__(self) -> int:
        return len(self.ids)

    def values(self) -> list:
        return list(self.ids)

    def codes(self, values) -> np.ndarray:
        """Code of each value; ``-1`` for values outside a fixed vocabulary."""
        local, uniques = pd.factorize(np.asarray(values))
        if self.growing:
            ids = np.fromiter((self.ids.setdefault(u, len(self.ids)) for u in uniques), np.int64, len(uniques))
        else:
            ids = np.fromiter((self.ids.get(u, -1) for u in uniques), np.int64, len(uniques))
        return ids[local]


class IntervalIndex:
    """Every feature containing a position, through elementary segments: each chromosome is cut at all
    feature boundaries, so a position falls in one segment and ``cover`` (segments x features, binary)
    says which features hold it. Overlapping features (gene windows) are handled like disjoint peaks."""

    def __init__(self, chrom, start, end):
        keys = ga.chrom_key(chrom)
        start, end = np.asarray(start, dtype=np.int64), np.asarray(end, dtype=np.int64)
        self.bounds: dict[str, tuple[np.ndarray, int]] = {}
        rows, cols, offset = [], [], 0
        for key in pd.unique(keys):
            idx = np.flatnonzero(keys == key)
            b = np.unique(np.concatenate([start[idx], end[idx]]))
            first, last = np.searchsorted(b, start[idx]), np.searchsorted(b, end[idx])
            rows.append(offset + np.repeat(first, last - first) + ramp(last - first))
            cols.append(np.repeat(idx, last - first))
            self.bounds[key] = (b, offset)
            offset += len(b) - 1
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        cover = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(offset, len(keys)))
        covered = np.diff(cover.indptr) > 0
        self.segment = np.where(covered, np.cumsum(covered) - 1, -1)  # segment -> covered segment, or -1 (gap)
        self.cover = cover[covered]
        self.n_columns = self.cover.shape[0]

    def locate(self, chrom: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Covered segment holding each position, ``-1`` where no feature holds it."""
        out = np.full(len(pos), -1, dtype=np.int64)
        local, uniques = pd.factorize(chrom)
        for i, key in enumerate(ga.chrom_key(uniques)):
            if key not in self.bounds:
                continue
            b, offset = self.bounds[key]
            m = local == i
            seg = np.searchsorted(b, pos[m], side="right") - 1
            inside = (seg >= 0) & (seg < len(b) - 1)
            out[np.flatnonzero(m)[inside]] = self.segment[offset + seg[inside]]
        return out


class TileIndex:
    """Fixed ``tile_size`` bins per chromosome, created as fragments reach them (no chromosome sizes needed)."""

    def __init__(self, tile_size: int):
        check_positive_int(tile_size, "tile_size")
        self.tile_size = int(tile_size)
        self.chroms, self.tiles = Vocabulary(), Vocabulary()

    @property
    def n_columns(self) -> int:
        return len(self.tiles)

    def locate(self, chrom: np.ndarray, pos: np.ndarray) -> np.ndarray:
        return self.tiles.codes((self.chroms.codes(chrom) << 32) + pos // self.tile_size)

    def var(self) -> tuple[pd.DataFrame, np.ndarray]:
        """Tile ``var`` sorted by chromosome (file order) and start, and the column order giving it."""
        keys = np.asarray(self.tiles.values(), dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        chrom = np.asarray(self.chroms.values(), dtype=object)[keys[order] >> 32]
        start = (keys[order] & 0xFFFFFFFF) * self.tile_size
        return feature_var(chrom, start, start + self.tile_size), order
