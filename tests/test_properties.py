"""Property-based tests (hypothesis): count validators and paired-cell matching, each checked against a brute-force
numpy computation on random inputs (the interval code: test_properties_intervals.py)."""
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from omics_cl.data.counts import check_finite_counts, counts_matrix, row_chunks, validated_counts
from omics_cl.data.paired import paired_modalities
from omics_cl.data.preprocess import fit_lognormalizer

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
