"""Property-based tests (hypothesis): count validators, paired-cell matching and the peak / gene / fragment
interval overlap code, each checked against a brute-force numpy computation on random inputs."""
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from omics_cl import pp
from omics_cl.data import gene_activity as ga
from omics_cl.data.fragments import read_fragments
from omics_cl.data.intervals import IntervalIndex, TileIndex, ramp
from omics_cl.data.paired import paired_modalities
from omics_cl.data.preprocess import (
    check_finite_counts,
    counts_matrix,
    fit_lognormalizer,
    row_chunks,
    validated_counts,
)

# derandomize: the same examples on every run and machine; the autouse ``offline`` fixture only sets a variable
settings.register_profile("omics_cl", max_examples=100, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile("omics_cl")

# chromosome identity -> spellings that must all match it (chr prefix in any case, M / MT)
SPELLINGS = {"1": ["1", "chr1", "Chr1", "CHR1"], "2": ["2", "chr2"], "X": ["X", "chrX"],
             "MT": ["MT", "M", "chrM", "chrMT"], "KI270728.1": ["KI270728.1", "chrKI270728.1"]}
BIG = 2**40  # beyond any int32 coordinate


# ---------------------------------------------------------------- count validators

def _valid(values: np.ndarray) -> bool:
    v = np.asarray(values, dtype=np.float64)
    return bool(np.isfinite(v).all() and (v >= 0).all() and (np.abs(v - np.round(v)) <= 1e-6).all())


odd_values = st.one_of(st.integers(-3, -1).map(float), st.floats(-5, 5, allow_nan=False),
                       st.sampled_from([np.nan, np.inf, -np.inf, 0.5, 1 + 1e-7, 1e12]))


@st.composite
def count_blocks(draw):
    """A dense or sparse float/int block, mostly valid counts with some bad values sprinkled in."""
    shape = draw(st.tuples(st.integers(1, 8), st.integers(1, 8)) | st.sampled_from([(0, 3), (3, 0)]))
    dense = draw(hnp.arrays(np.float64, shape, elements=st.integers(0, 30).map(float)))
    if dense.size and draw(st.integers(0, 2)):
        flat = dense.ravel()
        for i in draw(st.lists(st.integers(0, dense.size - 1), min_size=1, max_size=3)):
            flat[i] = draw(odd_values)
    dtype = draw(st.sampled_from([np.float64, np.float32, np.int64, np.int32, np.uint16]))
    if not np.issubdtype(dtype, np.floating):
        dense = np.clip(np.nan_to_num(np.round(dense), posinf=0, neginf=0), 0 if dtype == np.uint16 else -5, 1e4)
    dense = dense.astype(dtype)
    return dense, draw(st.sampled_from(["dense", "csr", "csc"]))


def _as(dense: np.ndarray, kind: str):
    return dense if kind == "dense" else getattr(sp, f"{kind}_matrix")(dense)


@given(count_blocks())
def test_check_finite_counts_refuses_exactly_the_bad_blocks(block):
    dense, kind = block
    if _valid(dense):
        check_finite_counts(_as(dense, kind))
    else:
        with pytest.raises(ValueError, match="NaN/inf|negative|non-integer"):
            check_finite_counts(_as(dense, kind))


@given(st.integers(0, 40), st.integers(1, 50))
def test_row_chunks_cover_every_row_once(n_rows, chunk_rows):
    x = np.arange(n_rows * 2).reshape(n_rows, 2)
    chunks = list(row_chunks(x, chunk_rows))
    assert [s for s, _, _ in chunks] == list(range(0, n_rows, chunk_rows))
    assert all(np.array_equal(rows, x[s:e]) and 0 < e - s <= chunk_rows for s, e, rows in chunks)
    assert sum(e - s for s, e, _ in chunks) == n_rows


@given(count_blocks(), st.sampled_from([None, "counts", "absent"]))
def test_validated_counts_returns_the_counts_or_refuses(block, layer):
    dense, kind = block
    x = _as(dense, kind)
    a = ad.AnnData(np.zeros(dense.shape, np.float32))
    if layer is None:
        a.X = x
    else:
        a.layers["counts"] = x
    if 0 in dense.shape:
        with pytest.raises(ValueError, match="empty"):
            validated_counts(a, layer)
    elif layer == "absent":
        with pytest.raises(ValueError, match="layer 'absent' not found"):
            counts_matrix(a, layer)
    elif _valid(dense):
        out = validated_counts(a, layer, "RNA counts")
        assert out is counts_matrix(a, layer)
        assert np.array_equal(out.toarray() if sp.issparse(out) else out, dense)
    else:
        with pytest.raises(ValueError, match="^RNA counts contain"):
            validated_counts(a, layer, "RNA counts")


@st.composite
def sparse_counts(draw):
    """Small sparse-ish integer counts; most draws give every cell a count, some leave empty cells or genes."""
    x = draw(hnp.arrays(np.int64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=12),
                        elements=st.integers(0, 3) | st.just(0)))
    if x.size and draw(st.integers(0, 3)):
        x[np.arange(len(x)), draw(hnp.arrays(np.int64, len(x), elements=st.integers(0, x.shape[1] - 1)))] += 1
    return x


@given(sparse_counts(), st.one_of(st.none(), st.integers(1, 4), st.integers(1, 14)), st.booleans())
@example(np.array([[1, 2, 0]]), 2, False)  # one cell: no gene has a variance (skmisc's loess crashed on 0 points)
@example(np.array([[1, 1, 0, 2], [1, 1, 1, 0]]), 1, True)  # 2 genes vary (loess crashed on < 4 points)
def test_fit_lognormalizer_on_random_counts(x, n_top, sparse):
    """Refuses exactly the empty, all-zero-cell or under-2-gene matrices; otherwise keeps ``n_top`` sorted genes
    (or all) and normalises every cell by its own total."""
    n_cells, n_genes = x.shape
    m = sp.csr_matrix(x) if sparse else x
    if 0 in x.shape or (x.sum(1) == 0).any() or ((x.sum(0) > 0).sum() < 2):
        with pytest.raises(ValueError, match="empty|zero total counts|genes have any counts"):
            fit_lognormalizer(m, n_top)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a loess fallback warns; the flavour is checked below
        norm = fit_lognormalizer(m, n_top)
    expected_n = n_genes if n_top is None or n_top >= n_genes else n_top
    assert norm.n_features == expected_n
    assert np.array_equal(norm.genes, np.unique(norm.genes)) and norm.genes.min() >= 0 and norm.genes.max() < n_genes
    assert np.array_equal(norm.library_size, x.sum(1))
    assert norm.hvg_flavor is not None
    dense = norm(m, np.arange(n_cells))
    expected = np.log1p(x[:, norm.genes] / x.sum(1, keepdims=True) * 1e4)
    np.testing.assert_allclose(dense, expected, rtol=1e-5)
    np.testing.assert_allclose(norm.sparse(m).toarray(), dense, rtol=1e-5)


# ---------------------------------------------------------------- paired cell matching

@st.composite
def paired_names(draw):
    """RNA and ATAC cell names: the same set reordered, or with cells dropped, added or repeated."""
    names = draw(st.lists(st.text("ACGT", min_size=1, max_size=4), min_size=0, max_size=10, unique=True))
    atac = list(draw(st.permutations(names)))
    change = draw(st.sampled_from(["none", "drop", "add", "repeat"]))
    if change == "drop" and atac:
        atac.pop(draw(st.integers(0, len(atac) - 1)))
    elif change == "add":
        atac.append("N" + draw(st.text("ACGT", max_size=3)))
    elif change == "repeat" and atac:
        atac.append(draw(st.sampled_from(atac)))
    return names, atac


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")  # mudata's update, repeated names
@given(paired_names(), st.booleans())
def test_paired_modalities_aligns_by_name_or_refuses(pair, as_mudata):
    rna_names, atac_names = pair
    rna = ad.AnnData(np.ones((len(rna_names), 2), np.float32), obs=pd.DataFrame(index=rna_names))
    atac_x = np.arange(len(atac_names) * 3, dtype=np.float32).reshape(-1, 3)
    atac = ad.AnnData(atac_x, obs=pd.DataFrame(index=atac_names))
    if as_mudata and len(set(atac_names)) == len(atac_names) and len(rna_names):
        import mudata as md

        kwargs = {"data": md.MuData({"rna": rna, "atac": atac})}
    else:
        kwargs = {"rna": rna, "atac": atac}
    ok = len(rna_names) > 0 and len(set(atac_names)) == len(atac_names) and sorted(rna_names) == sorted(atac_names)
    if not ok:
        with pytest.raises(ValueError, match="empty|repeat|do not match"):
            paired_modalities(**kwargs)
        return
    r, a = paired_modalities(**kwargs)
    assert list(r.obs_names) == rna_names == list(a.obs_names)
    where = {n: i for i, n in enumerate(atac_names)}
    assert np.array_equal(np.asarray(a.X), atac_x[[where[n] for n in rna_names]])


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
