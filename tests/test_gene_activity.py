import gzip

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from omics_cl import datasets, pp
from omics_cl.data import gene_activity as ga

# 0-based half-open gene records on both strands; windows with upstream=100:
#   A (+) body [1000, 2000) -> [900, 2000);  B (-) body [5000, 6000) -> [5000, 6100)
GENES = pd.DataFrame({"chrom": ["chr1", "chr1", "chr2"], "start": [1000, 5000, 300], "end": [2000, 6000, 400],
                      "gene_name": ["A", "B", "C"], "gene_id": ["g1", "g2", "g3"], "strand": ["+", "-", "+"]})
PEAKS = ["chr1:850-899",    # just before A's upstream window: nothing
         "chr1:850-901",    # touches A's upstream window
         "chr1:6050-6150",  # B's upstream (to the right, minus strand)
         "chr1:2000-2100",  # right after A's end, half-open: nothing; not A's upstream (A is +)
         "chr1:4800-4990",  # left of B (B's downstream side): nothing
         "2:350-360"]       # C, chromosome named without chr
EXPECTED = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0], [0, 0, 1]])


def _atac(names):
    x = sp.csr_matrix(np.arange(1, 1 + 2 * len(names)).reshape(2, len(names)))
    return ad.AnnData(x, var=pd.DataFrame(index=names))


def test_strand_aware_windows_on_hand_made_annotation():
    peaks = ga.peak_coordinates(pd.DataFrame(index=PEAKS), PEAKS)
    overlaps = ga.peak_gene_overlaps(peaks, GENES, upstream=100)
    assert np.array_equal(overlaps.toarray(), EXPECTED)


def test_gene_activity_sums_counts_of_overlapping_peaks():
    atac = _atac(PEAKS)
    out = pp.gene_activity(atac, GENES, upstream=100)
    assert list(out.var_names) == ["A", "B", "C"]
    assert np.array_equal(out.X.toarray(), atac.X.toarray() @ EXPECTED)
    assert list(out.var["n_peaks"]) == [1, 1, 1]


@pytest.mark.parametrize("sep", [(":", "-"), ("-", "-"), ("_", "_")])
def test_peak_name_forms(sep):
    names = [f"chr1{sep[0]}100{sep[1]}200", f"chrX{sep[0]}5{sep[1]}9"]
    got = ga.peak_coordinates(pd.DataFrame(index=names), names)
    assert got.values.tolist() == [["chr1", 100, 200], ["chrX", 5, 9]]


def test_unparseable_peak_names_refused():
    with pytest.raises(ValueError, match="2 of 3 peak names cannot be parsed.*'peak7'"):
        pp.gene_activity(_atac(["chr1:1-5", "peak7", "chr2:abc"]), GENES)


def test_annotation_on_other_chromosomes_refused():
    genes = GENES.assign(chrom=["chr9", "chr9", "chr9"])
    with pytest.raises(ValueError, match="no peak overlaps any gene window"):
        pp.gene_activity(_atac(PEAKS), genes)


def test_non_count_atac_refused():
    atac = _atac(PEAKS)
    atac.X = atac.X * 0.5
    with pytest.raises(ValueError, match="ATAC counts contain non-integer"):
        pp.gene_activity(atac, GENES)


def _write(path, text):
    with gzip.open(path, "wt") if str(path).endswith(".gz") else open(path, "w") as fh:
        fh.write(text)


def test_gtf_gff3_bed_tsv_readers_agree(tmp_path):
    gtf = "".join(f'{r.chrom}\tsrc\tgene\t{r.start + 1}\t{r.end}\t.\t{r.strand}\t.\tgene_id "{r.gene_id}"; '
                  f'gene_name "{r.gene_name}";\n' for r in GENES.itertuples())
    gtf += 'chr1\tsrc\texon\t1001\t1100\t.\t+\t.\tgene_id "g1"; gene_name "A";\n'  # not a gene record
    gff = "##gff-version 3\n" + "".join(
        f"{r.chrom}\tsrc\tgene\t{r.start + 1}\t{r.end}\t.\t{r.strand}\t.\tID=gene:{r.gene_id};Name={r.gene_name}\n"
        for r in GENES.itertuples())
    bed = "".join(f"{r.chrom}\t{r.start}\t{r.end}\t{r.gene_name}\t0\t{r.strand}\n" for r in GENES.itertuples())
    files = {"a.gtf.gz": gtf, "a.gff3": gff, "a.bed": bed}
    for name, text in files.items():
        _write(tmp_path / name, text)
    GENES.to_csv(tmp_path / "a.tsv.gz", sep="\t", index=False)
    for name in [*files, "a.tsv.gz"]:
        got = ga.read_annotation(tmp_path / name)
        assert got[["chrom", "start", "end", "gene_name", "strand"]].values.tolist() == \
            GENES[["chrom", "start", "end", "gene_name", "strand"]].values.tolist(), name


def test_links_matrix_accepted_in_either_orientation():
    atac = _atac(PEAKS)
    a = pp.gene_activity(atac, links=sp.csr_matrix(EXPECTED), link_genes=["A", "B", "C"])
    b = pp.gene_activity(atac, links=sp.csr_matrix(EXPECTED.T), link_genes=["A", "B", "C"])
    assert np.array_equal(a.X.toarray(), b.X.toarray())
    with pytest.raises(ValueError, match="expected peaks x genes"):
        pp.gene_activity(atac, links=sp.csr_matrix(np.ones((4, 3))), link_genes=["A", "B", "C"])


def test_mop_recovers_published_peak_gene_links():
    """>= 99% of raw/GxR.npz links (gene x region) are found with mm10_ensembl_genes.tsv.gz."""
    atac = datasets.load("mop_snare_paired", modality="atac")
    annotation = datasets.annotation_path("mm10_ensembl_genes.tsv.gz")
    genes = ga.read_annotation(annotation)
    peaks = ga.peak_coordinates(atac.var, atac.var_names)
    overlaps, var = ga.merge_genes_by_name(ga.peak_gene_overlaps(peaks, genes, 2000), genes)
    column = {name: i for i, name in enumerate(var.index)}
    column.update({alt: i for i, alt in enumerate(var["alt_name"]) if isinstance(alt, str) and alt not in column})
    gxr = sp.load_npz(datasets.path("mop_snare_paired", "gene_peak_links")).tocoo()
    link_genes = datasets.path("mop_snare_paired", "link_genes").read_text().split()
    regions = datasets.path("mop_snare_paired", "link_regions").read_text().split()
    peak_index = {f"{c}_{s}_{e}": i for i, (c, s, e) in enumerate(peaks.itertuples(index=False))}
    overlaps = overlaps.tocsr()
    found = [link_genes[g] in column and overlaps[peak_index[regions[r]], column[link_genes[g]]] > 0
             for g, r in zip(gxr.row, gxr.col)]
    assert np.mean(found) >= 0.99, np.mean(found)
