"""omics_cl.io: fragments -> peak / tile / gene-activity counts and 10x ARC .h5 -> MuData, on files written
here from a known design and cross-checked against brute-force numpy counts."""
import gzip

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from omics_cl import io, pp
from omics_cl.data import fragments

N_CELLS = 30
BARCODES = np.array([f"{''.join(np.random.default_rng(i).choice(list('ACGT'), 16))}-1" for i in range(N_CELLS)])
# peaks: 12 per chromosome, 300 bp wide, 1 kb apart; background insertions land in [50 kb, 60 kb): no peak, no gene
PEAKS = pd.DataFrame({"chrom": np.repeat(["chr1", "chr2"], 12), "start": np.tile(np.arange(12) * 1000 + 200, 2)})
PEAKS["end"] = PEAKS["start"] + 300
BACKGROUND = (50_000, 60_000)


def dense(x) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    """Random cells x peaks insertion counts ``D`` and a fragment file realising them: each cell's insertions
    (``D`` inside peaks, plus background ones outside every peak) paired at random on each chromosome into
    fragments ``[a, b + 1)``; written sorted, with header lines, a count column, as two gzip members (bgzip-like)."""
    rng = np.random.default_rng(7)
    d = rng.poisson(1.5, size=(N_CELLS, len(PEAKS))) * (rng.random((N_CELLS, len(PEAKS))) < 0.6)
    rows = []
    for c in range(N_CELLS):
        for chrom in ("chr1", "chr2"):
            on = np.flatnonzero(PEAKS["chrom"].to_numpy() == chrom)
            pos = np.concatenate([rng.integers(PEAKS["start"][p], PEAKS["end"][p], d[c, p]) for p in on]
                                 + [rng.integers(*BACKGROUND, rng.integers(1, 4))])
            if len(pos) % 2:
                pos = np.append(pos, rng.integers(*BACKGROUND))
            pairs = np.sort(rng.permutation(pos).reshape(-1, 2), axis=1)
            rows += [(chrom, a, b + 1, BARCODES[c], int(rng.integers(1, 6))) for a, b in pairs]
    frags = pd.DataFrame(rows, columns=["chrom", "start", "end", "barcode", "count"]).sort_values(["chrom", "start"])
    directory = tmp_path_factory.mktemp("fragments")
    path = directory / "atac_fragments.tsv.gz"
    text = frags.to_csv(sep="\t", header=False, index=False)
    half = text.index("\n", len(text) // 2) + 1
    path.write_bytes(gzip.compress(f"# id=test\n# reference_path=none\n{text[:half]}".encode())
                     + gzip.compress(text[half:].encode()))
    return {"d": d, "frags": frags.reset_index(drop=True), "path": path, "dir": directory}


def brute_force(frags: pd.DataFrame, chrom, start, end, barcodes) -> np.ndarray:
    """cells x features: each fragment's insertions at start and end - 1, counted in every feature holding them."""
    ins = pd.concat([frags.assign(pos=frags["start"]), frags.assign(pos=frags["end"] - 1)])
    inside = ((ins["chrom"].to_numpy()[:, None] == np.asarray(chrom)[None])
              & (ins["pos"].to_numpy()[:, None] >= np.asarray(start)[None])
              & (ins["pos"].to_numpy()[:, None] < np.asarray(end)[None]))
    cell = pd.Index(barcodes).get_indexer(ins["barcode"])
    out = np.zeros((len(barcodes), len(chrom)), dtype=np.int64)
    np.add.at(out, cell[cell >= 0], inside[cell >= 0].astype(np.int64))
    return out


def test_peak_matrix_equals_design_and_brute_force(design, monkeypatch):
    monkeypatch.setattr(fragments, "FLUSH_AT", 100)  # compress the pending pairs many times
    before = design["path"].read_bytes()
    peaks = PEAKS.copy()
    atac = io.read_fragments(design["path"], peaks=peaks, barcodes=BARCODES, chunksize=97)
    assert design["path"].read_bytes() == before and peaks.equals(PEAKS)
    assert list(atac.obs_names) == list(BARCODES)
    assert list(atac.var_names[:2]) == ["chr1:200-500", "chr1:1200-1500"]
    assert atac.var[["chrom", "chromStart", "chromEnd"]].to_numpy().tolist() == PEAKS.to_numpy().tolist()
    np.testing.assert_array_equal(dense(atac.X), design["d"])
    np.testing.assert_array_equal(dense(atac.X), brute_force(design["frags"], PEAKS["chrom"], PEAKS["start"],
                                                             PEAKS["end"], BARCODES))
    per_cell = design["frags"]["barcode"].value_counts().reindex(BARCODES).to_numpy()
    np.testing.assert_array_equal(atac.obs["n_fragments"], per_cell)


def test_overlapping_peaks_from_bed_and_unprefixed_chromosomes(design):
    """Nested and overlapping peaks each count every insertion they hold; ``1`` matches ``chr1``."""
    bed = design["dir"] / "peaks.bed"
    table = pd.DataFrame({"chrom": ["1", "1", "1", "chr2", "chr2"], "start": [0, 150, 1300, 2000, 2100],
                          "end": [2000, 520, 4000, 6000, 2400]})
    bed.write_text("track name=peaks\n" + table.to_csv(sep="\t", header=False, index=False))
    atac = io.read_fragments(design["path"], peaks=bed, barcodes=BARCODES)
    expected = brute_force(design["frags"], ["chr1", "chr1", "chr1", "chr2", "chr2"], table["start"], table["end"],
                           BARCODES)
    assert expected[:, 1].sum() > 0 and (expected[:, 0] >= expected[:, 1]).all()
    np.testing.assert_array_equal(dense(atac.X), expected)


def test_tiles_conserve_insertions(design):
    atac = io.read_fragments(design["path"], tile_size=5000)
    frags = design["frags"]
    assert set(atac.obs_names) == set(BARCODES)
    assert dense(atac.X).sum() == 2 * len(frags)  # every insertion falls in exactly one tile
    starts = atac.var["chromStart"].to_numpy()
    assert (starts % 5000 == 0).all() and (atac.var["chromEnd"].to_numpy() - starts == 5000).all()
    assert atac.var["chrom"].is_monotonic_increasing and "chr1:50000-55000" in atac.var_names
    expected = brute_force(frags, atac.var["chrom"], starts, atac.var["chromEnd"], atac.obs_names)
    np.testing.assert_array_equal(dense(atac.X), expected)


def test_whitelist_order_subset_and_file(design):
    full = io.read_fragments(design["path"], peaks=PEAKS, barcodes=BARCODES)
    wanted = [BARCODES[5], "TTTTTTTTTTTTTTTT-1", BARCODES[2]]
    sub = io.read_fragments(design["path"], peaks=PEAKS, barcodes=wanted)
    assert list(sub.obs_names) == wanted
    np.testing.assert_array_equal(dense(sub.X)[[0, 2]], dense(full.X)[[5, 2]])
    assert dense(sub.X)[1].sum() == 0 and sub.obs["n_fragments"].iloc[1] == 0
    assert sub.uns["omics_cl"]["fragments"]["n_cells_without_fragments"] == 1
    listing = design["dir"] / "barcodes.tsv.gz"
    listing.write_bytes(gzip.compress("\n".join(wanted).encode()))
    from_file = io.read_fragments(design["path"], peaks=PEAKS, barcodes=listing)
    np.testing.assert_array_equal(dense(from_file.X), dense(sub.X))
    with pytest.raises(ValueError, match="no barcode of the whitelist"):
        io.read_fragments(design["path"], peaks=PEAKS, barcodes=[b[:-2] for b in BARCODES])


def gap(i: int) -> int:
    """A position between peak i (i kb + 200-500) and peak i + 1."""
    return i * 1000 + 750


def gene_table() -> pd.DataFrame:
    """Genes whose 2 kb-extended windows start and end between peaks (mid-gap), on ``1``/``2`` (no prefix);
    two records of ``Dup``, one gene on a chromosome without fragments."""
    windows = [("1", gap(0), gap(3), "+", "Aa"), ("1", gap(2), gap(6), "-", "Bb"), ("1", gap(4), gap(7), "+", "Dup"),
               ("1", gap(6), gap(9), "-", "Dup"), ("2", -250, gap(11), "+", "Cc"), ("2", gap(1), gap(4), "-", "Dd"),
               ("3", 0, 5000, "+", "Ee")]
    rows = []
    for chrom, w0, w1, strand, name in windows:  # window = body + 2 kb before the TSS
        start, end = (w0 + 2000, w1) if strand == "+" else (w0, w1 - 2000)
        rows.append((chrom, start, end, name, f"ID{len(rows)}", strand))
    return pd.DataFrame(rows, columns=["chrom", "start", "end", "gene_name", "gene_id", "strand"])


def test_gene_activity_from_fragments_matches_peak_gene_activity(design):
    genes = gene_table()
    direct = io.gene_activity_from_fragments(design["path"], genes, barcodes=BARCODES, chunksize=50)
    via_peaks = pp.gene_activity(io.read_fragments(design["path"], peaks=PEAKS, barcodes=BARCODES), genes)
    assert set(direct.var_names) == {"Aa", "Bb", "Dup", "Cc", "Dd"}  # Ee's chromosome has no fragments
    assert list(direct.obs_names) == list(BARCODES)
    a = pd.DataFrame(dense(direct.X), columns=direct.var_names)
    b = pd.DataFrame(dense(via_peaks.X), columns=via_peaks.var_names)[a.columns]
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
    d = design["d"]
    np.testing.assert_array_equal(a["Dup"], d[:, 5:10].sum(axis=1))  # union of both records' peaks (7 once)
    np.testing.assert_array_equal(a["Cc"], d[:, 12:].sum(axis=1))
    assert direct.uns["omics_cl"]["gene_activity"]["upstream"] == 2000


def write_arc_h5(path, rna: np.ndarray, atac: np.ndarray, genes: list[str], peaks: pd.DataFrame, barcodes) -> None:
    """A Cell Ranger ARC filtered_feature_bc_matrix.h5: features x cells CSC, genes then peaks."""
    x = sp.csc_matrix(np.vstack([rna.T, atac.T]).astype(np.int32))
    peak_names = [f"{c}:{s}-{e}" for c, s, e in peaks[["chrom", "start", "end"]].itertuples(index=False)]
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m["barcodes"] = np.array(barcodes, dtype="S")
        m["data"], m["indices"], m["indptr"] = x.data, x.indices.astype(np.int64), x.indptr.astype(np.int64)
        m["shape"] = np.array(x.shape, dtype=np.int32)
        feats = m.create_group("features")
        feats["_all_tag_keys"] = np.array([b"genome", b"interval"])
        feats["id"] = np.array([f"ENSG{i:05d}" for i in range(len(genes))] + peak_names, dtype="S")
        feats["name"] = np.array(genes + peak_names, dtype="S")
        feats["feature_type"] = np.array(["Gene Expression"] * len(genes) + ["Peaks"] * len(peaks), dtype="S")
        feats["genome"] = np.array(["GRCh38"] * (len(genes) + len(peaks)), dtype="S")
        feats["interval"] = np.array([f"chr1:{i}-{i + 10}" for i in range(len(genes))] + peak_names, dtype="S")


def test_10x_multiome_h5_reads_into_mudata_and_agrees_with_fragments(design):
    rng = np.random.default_rng(3)
    genes = ["GeneA", "GeneB", "GeneA", "GeneC"]
    rna = rng.poisson(2.0, size=(N_CELLS, len(genes)))
    path = design["dir"] / "filtered_feature_bc_matrix.h5"
    write_arc_h5(path, rna, design["d"], genes, PEAKS, BARCODES)
    mdata = io.read_10x_multiome(path)
    assert set(mdata.mod) == {"rna", "atac"} and mdata.n_obs == N_CELLS
    assert list(mdata["rna"].var_names) == ["GeneA", "GeneB", "GeneA-1", "GeneC"]
    np.testing.assert_array_equal(dense(mdata["rna"].X), rna)
    atac = mdata["atac"]
    assert list(atac.obs_names) == list(BARCODES)
    assert atac.var[["chrom", "chromStart", "chromEnd"]].to_numpy().tolist() == PEAKS.to_numpy().tolist()
    np.testing.assert_array_equal(dense(atac.X), design["d"])
    from_fragments = io.read_fragments(design["path"], peaks=atac.var, barcodes=atac.obs_names)
    assert list(from_fragments.var_names) == list(atac.var_names)
    np.testing.assert_array_equal(dense(from_fragments.X), dense(atac.X))


def test_bad_inputs_give_clear_errors(design, tmp_path):
    path = design["path"]
    with pytest.raises(ValueError, match="exactly one of peaks"):
        io.read_fragments(path, peaks=PEAKS, tile_size=5000)
    with pytest.raises(ValueError, match="exactly one of peaks"):
        io.read_fragments(path)
    with pytest.raises(ValueError, match="not found"):
        io.read_fragments(tmp_path / "missing.tsv.gz", tile_size=5000)
    with pytest.raises(ValueError, match="cannot be parsed"):
        io.read_fragments(path, peaks=["chr1:100-200", "peak_7"])
    with pytest.raises(ValueError, match="end <= start"):
        io.read_fragments(path, peaks=["chr1:300-200"])
    with pytest.raises(ValueError, match="positive integer"):
        io.read_fragments(path, tile_size=0)
    three = tmp_path / "three.tsv"
    three.write_text("chr1\t10\t20\nchr1\t30\t40\n")
    with pytest.raises(ValueError, match="as a fragments file"):
        io.read_fragments(three, tile_size=100)
    words = tmp_path / "words.tsv"
    words.write_text("chr1\tten\t20\tAAAC-1\t1\n")
    with pytest.raises(ValueError, match="as a fragments file"):
        io.read_fragments(words, tile_size=100)
    backwards = tmp_path / "backwards.tsv"
    backwards.write_text("chr1\t50\t20\tAAAC-1\t1\n")
    with pytest.raises(ValueError, match="end <= start"):
        io.read_fragments(backwards, tile_size=100)
    truncated = tmp_path / "truncated.tsv.gz"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="as a fragments file"):
        io.read_fragments(truncated, tile_size=100)
    with pytest.raises(ValueError, match="no insertion"):
        io.gene_activity_from_fragments(path, gene_table().iloc[[-1]])
    not_h5 = tmp_path / "not.h5"
    not_h5.write_text("hello")
    with pytest.raises(ValueError, match="cannot read"):
        io.read_10x_multiome(not_h5)
    with pytest.raises(ValueError, match="not found"):
        io.read_10x_multiome(tmp_path / "missing.h5")
    rna_only = tmp_path / "rna_only.h5"
    write_arc_h5(rna_only, np.ones((N_CELLS, 2), int), np.zeros((N_CELLS, 0), int), ["G1", "G2"], PEAKS.iloc[:0],
                 BARCODES)
    with pytest.raises(ValueError, match="Peaks"):
        io.read_10x_multiome(rna_only)
