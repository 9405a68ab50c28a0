"""Property-based tests (hypothesis): the peak / gene / fragment interval overlap code, each checked against a
brute-force numpy computation on random inputs."""
import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from omics_cl import pp
from omics_cl.data import gene_activity as ga
from omics_cl.data.fragments import read_fragments
from omics_cl.data.intervals import IntervalIndex, TileIndex, ramp

# chromosome identity -> spellings that must all match it (chr prefix in any case, M / MT)
SPELLINGS = {"1": ["1", "chr1", "Chr1", "CHR1"], "2": ["2", "chr2"], "X": ["X", "chrX"],
             "MT": ["MT", "M", "chrM", "chrMT"], "KI270728.1": ["KI270728.1", "chrKI270728.1"]}
BIG = 2**40  # beyond any int32 coordinate


# ---------------------------------------------------------------- intervals: peaks, genes, fragments

coordinate = st.one_of(st.integers(0, 60), st.integers(0, 3000), st.integers(BIG - 50, BIG))


@st.composite
def intervals(draw, min_size=0, max_size=12, min_length=0):
    """``(identity, spelling, start, end)`` rows on a few chromosomes, small and huge coordinates, zero-length
    and touching intervals, in random (unsorted) order."""
    rows = []
    for _ in range(draw(st.integers(min_size, max_size))):
        ident = draw(st.sampled_from(sorted(SPELLINGS)))
        start = draw(coordinate)
        if rows and draw(st.booleans()):  # touch or repeat an earlier interval's boundary
            start = draw(st.sampled_from([rows[-1][2], rows[-1][3]]))
        length = draw(st.one_of(st.integers(min_length, 5), st.integers(min_length, 400), st.just(min_length)))
        rows.append((ident, draw(st.sampled_from(SPELLINGS[ident])), start, start + length))
    return rows


def _brute_overlaps(p_ident, p_start, p_end, g_ident, w_start, w_end) -> np.ndarray:
    """Peaks x windows: same chromosome and the half-open intervals intersect, all pairs."""
    return ((np.asarray(p_ident)[:, None] == np.asarray(g_ident)[None, :])
            & (np.asarray(p_start)[:, None] < np.asarray(w_end)[None, :])
            & (np.asarray(w_start)[None, :] < np.asarray(p_end)[:, None]))


@st.composite
def gene_tables(draw, min_size=1):
    rows = draw(intervals(min_size=min_size))
    strand = draw(st.lists(st.sampled_from(["+", "-", "."]), min_size=len(rows), max_size=len(rows)))
    names = draw(st.lists(st.sampled_from("ABCDEF"), min_size=len(rows), max_size=len(rows)))
    genes = pd.DataFrame({"chrom": [r[1] for r in rows], "start": [r[2] for r in rows],
                          "end": [r[3] for r in rows], "gene_name": names, "strand": strand})
    return genes, [r[0] for r in rows]


def _windows(genes: pd.DataFrame, upstream: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force strand-aware windows, row by row."""
    w = [(max(s - (0 if d == "-" else upstream), 0), e + (0 if d == "+" else upstream))
         for s, e, d in zip(genes["start"], genes["end"], genes["strand"])]
    return np.array([a for a, _ in w], dtype=np.int64), np.array([b for _, b in w], dtype=np.int64)


@given(intervals(min_size=1), gene_tables(), st.sampled_from([0, 1, 100, 2000]))
def test_peak_gene_overlaps_match_brute_force(peak_rows, gene_table, upstream):
    genes, g_ident = gene_table
    peaks = pd.DataFrame({"chrom": [r[1] for r in peak_rows], "start": [r[2] for r in peak_rows],
                          "end": [r[3] for r in peak_rows]})
    w_start, w_end = _windows(genes, upstream)
    assert all(np.array_equal(a, b) for a, b in zip(ga.gene_windows(genes, upstream), (w_start, w_end)))
    expected = _brute_overlaps([r[0] for r in peak_rows], peaks["start"], peaks["end"], g_ident, w_start, w_end)
    if not expected.any():
        with pytest.raises(ValueError, match="no peak overlaps"):
            ga.peak_gene_overlaps(peaks, genes, upstream)
        return
    overlaps = ga.peak_gene_overlaps(peaks, genes, upstream)
    assert overlaps.shape == expected.shape and set(np.unique(overlaps.data)) == {1.0}
    assert np.array_equal(overlaps.toarray(), expected)


@given(intervals(min_size=1, min_length=1), gene_tables(), st.integers(0, 500), st.integers(1, 4), st.data())
def test_gene_activity_conserves_peak_counts(peak_rows, gene_table, upstream, n_cells, data):
    """``pp.gene_activity`` equals counts @ (brute-force overlaps united by gene name): each peak's counts reach
    every gene name it overlaps, once."""
    genes, g_ident = gene_table
    var = pd.DataFrame({"chrom": [r[1] for r in peak_rows], "chromStart": [r[2] for r in peak_rows],
                        "chromEnd": [r[3] for r in peak_rows]})
    var.index = [f"p{i}" for i in range(len(var))]
    x = data.draw(hnp.arrays(np.int64, (n_cells, len(var)), elements=st.integers(0, 9)))
    atac = ad.AnnData(sp.csr_matrix(x.astype(np.float32)), var=var)
    w_start, w_end = _windows(genes, upstream)
    hit = _brute_overlaps([r[0] for r in peak_rows], var["chromStart"], var["chromEnd"], g_ident, w_start, w_end)
    names = list(dict.fromkeys(genes["gene_name"]))
    by_name = np.stack([hit[:, (genes["gene_name"] == n).to_numpy()].any(1) for n in names], axis=1)
    kept = by_name.any(0)
    if not kept.any():
        with pytest.raises(ValueError, match="no peak overlaps"):
            pp.gene_activity(atac, genes, upstream)
        return
    out = pp.gene_activity(atac, genes, upstream)
    assert list(out.var_names) == [n for n, k in zip(names, kept) if k]
    assert np.array_equal(out.var["n_peaks"].to_numpy(), by_name[:, kept].sum(0))
    assert np.array_equal(out.X.toarray(), x @ by_name[:, kept])
    assert out.X.sum() == (x * by_name.sum(1)).sum()  # counts conserved: each peak's counts, once per gene name


@given(intervals(min_size=1), st.lists(st.tuples(st.sampled_from(sorted(SPELLINGS)), coordinate, st.integers(0, 3)),
                                       max_size=30), st.data())
def test_interval_index_finds_every_containing_feature(feature_rows, raw_positions, data):
    """Segment lookup (``locate`` then ``cover``) equals the brute-force ``start <= pos < end`` per feature,
    so insertions summed per feature are conserved whatever the overlaps, touching ends or empty features."""
    f_ident = np.array([r[0] for r in feature_rows])
    f_start, f_end = np.array([r[2] for r in feature_rows]), np.array([r[3] for r in feature_rows])
    index = IntervalIndex([r[1] for r in feature_rows], f_start, f_end)
    # positions near feature boundaries too: start - 1, start, end - 1, end
    bounds = [(r[0], max(b + d, 0)) for r in feature_rows for b in r[2:] for d in (-1, 0)]
    pos_rows = [(i, p + d) for i, p, d in raw_positions] + bounds
    p_ident = np.array([i for i, _ in pos_rows])
    pos = np.array([p for _, p in pos_rows], dtype=np.int64)
    p_chrom = np.array([data.draw(st.sampled_from(SPELLINGS[i])) for i in p_ident])
    seg = index.locate(p_chrom, pos)
    contains = ((p_ident[:, None] == f_ident[None, :]) & (f_start[None, :] <= pos[:, None])
                & (pos[:, None] < f_end[None, :]))
    assert np.array_equal(seg >= 0, contains.any(1))  # -1 exactly where no feature holds the position
    found = np.zeros_like(contains)
    found[seg >= 0] = index.cover[seg[seg >= 0]].toarray() > 0
    assert np.array_equal(found, contains)
    assert index.cover.shape == (index.n_columns, len(feature_rows))


@given(st.lists(st.tuples(st.sampled_from(["chr1", "2", "chrM"]), st.integers(0, 2**32 - 1)), min_size=1,
                max_size=30), st.sampled_from([1, 7, 500, 5000]))
def test_tile_index_puts_each_position_in_its_tile(rows, tile_size):
    index = TileIndex(tile_size)
    chrom, pos = np.array([c for c, _ in rows]), np.array([p for _, p in rows], dtype=np.int64)
    col = index.locate(chrom, pos)
    var, order = index.var()
    assert index.n_columns == len(set(zip(chrom, pos // tile_size))) == len(var)
    tile = var.iloc[np.argsort(order)[col]]  # column -> its row of var
    assert np.array_equal(tile["chrom"].to_numpy(), chrom)
    assert ((tile["chromStart"].to_numpy() <= pos) & (pos < tile["chromEnd"].to_numpy())).all()


@given(st.lists(st.integers(0, 20), max_size=10))
def test_ramp_is_concatenated_aranges(lengths):
    expected = np.concatenate([np.arange(n) for n in lengths]) if lengths else np.zeros(0)
    assert np.array_equal(ramp(np.array(lengths, dtype=np.int64)), expected)


@settings(max_examples=40)
@given(intervals(min_size=1, min_length=1), intervals(min_size=1, max_size=20, min_length=1),
       st.lists(st.sampled_from(["AAA-1", "CCC-1", "GGG-1"]), min_size=20, max_size=20))
def test_read_fragments_counts_insertions_like_brute_force(tmp_path_factory, peak_rows, fragment_rows, barcodes):
    """Cells x peaks from a fragment file written here: each fragment's two insertions (start, end - 1) counted
    in every peak containing them."""
    peak_names = list(dict.fromkeys(f"{r[1]}:{r[2]}-{r[3]}" for r in peak_rows))
    peak_rows = list({f"{r[1]}:{r[2]}-{r[3]}": r for r in peak_rows}.values())
    frag = pd.DataFrame({"chrom": [r[1] for r in fragment_rows], "start": [r[2] for r in fragment_rows],
                         "end": [r[3] for r in fragment_rows], "barcode": barcodes[:len(fragment_rows)]})
    path = tmp_path_factory.mktemp("frag") / "fragments.tsv"
    frag.to_csv(path, sep="\t", header=False, index=False)
    out = read_fragments(path, peaks=peak_names, chunksize=7)
    cells = list(dict.fromkeys(frag["barcode"]))
    assert list(out.obs_names) == cells
    p_ident = np.array([r[0] for r in peak_rows])
    p_start, p_end = np.array([r[2] for r in peak_rows]), np.array([r[3] for r in peak_rows])
    expected = np.zeros((len(cells), len(peak_rows)))
    f_ident = [r[0] for r in fragment_rows]
    for ident, cell, s, e in zip(f_ident, frag["barcode"], frag["start"], frag["end"]):
        for insertion in (s, e - 1):
            expected[cells.index(cell)] += (p_ident == ident) & (p_start <= insertion) & (insertion < p_end)
    assert np.array_equal(out.X.toarray(), expected)
    assert np.array_equal(out.obs["n_fragments"].to_numpy(), frag["barcode"].value_counts()[cells].to_numpy())
