"""CLI inputs from instruments: ``transfer --fragments [--peaks] [--barcodes]`` and ``integrate --multiome``,
on a small synthetic reference and fragment file (three cell types, each accessible at its marker genes)."""
import gzip

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from test_readers import write_arc_h5

from omics_cl import io
from omics_cl.cli import main

N_GENES, N_TYPES = 60, 3


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """ref.h5ad (RNA, 240 cells), frags.tsv.gz (150 cells), peaks.bed, genes.tsv, barcodes.tsv (145 cells)."""
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("cli_readers")
    at = np.arange(N_GENES) * 10000
    pd.DataFrame({"chrom": "chr1", "start": at + 2000, "end": at + 5000, "gene_name": [f"G{g}" for g in range(N_GENES)],
                  "gene_id": [f"ID{g}" for g in range(N_GENES)], "strand": "+"}).to_csv(d / "genes.tsv", sep="\t",
                                                                                         index=False)
    pd.DataFrame({"chrom": "chr1", "start": at + 1000, "end": at + 4000}).to_csv(d / "peaks.bed", sep="\t",
                                                                                 header=False, index=False)
    rate = np.full((N_TYPES, N_GENES), 0.5)
    for t in range(N_TYPES):
        rate[t, t * N_GENES // N_TYPES:(t + 1) * N_GENES // N_TYPES] = 6.0
    types = np.repeat(np.arange(N_TYPES), 80)
    rna = ad.AnnData(sp.csr_matrix(rng.poisson(rate[types]).astype(np.float32)))
    rna.obs_names, rna.var_names = [f"r{i}" for i in range(len(types))], [f"G{g}" for g in range(N_GENES)]
    rna.obs["cell_type"] = pd.Categorical([f"type{t}" for t in types])
    rna.write_h5ad(d / "ref.h5ad")
    barcodes = [f"CELL{i:04d}-1" for i in range(50 * N_TYPES)]
    rows = []
    for c, t in enumerate(np.repeat(np.arange(N_TYPES), 50)):
        for g in rng.choice(N_GENES, 200, p=rate[t] / rate[t].sum()):
            s = at[g] + rng.integers(1000, 3800)
            rows.append(("chr1", s, s + rng.integers(50, 200), barcodes[c], 1))
    text = pd.DataFrame(rows).sort_values([0, 1]).to_csv(sep="\t", header=False, index=False)
    (d / "frags.tsv.gz").write_bytes(gzip.compress(text.encode()))
    (d / "barcodes.tsv").write_text("\n".join(barcodes[:-5]) + "\n")
    return d


def test_transfer_from_fragments_with_peaks_and_barcodes(files, capsys):
    before = (files / "frags.tsv.gz").read_bytes()
    out = files / "labelled.h5ad"
    rc = main(["transfer", "--rna", str(files / "ref.h5ad"), "--fragments", str(files / "frags.tsv.gz"),
               "--peaks", str(files / "peaks.bed"), "--barcodes", str(files / "barcodes.tsv"), "--label-key",
               "cell_type", "--annotation", str(files / "genes.tsv"), "--out", str(out), "--epochs", "2",
               "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert (files / "frags.tsv.gz").read_bytes() == before
    result = ad.read_h5ad(out)
    assert list(result.obs_names) == (files / "barcodes.tsv").read_text().split()
    assert result.n_vars == N_GENES and result.var_names[0] == "chr1:1000-4000"
    truth = np.repeat([f"type{t}" for t in range(N_TYPES)], 50)[:-5]
    assert np.mean(result.obs["omics_cl_label"].astype(str).to_numpy() == truth) > 0.9  # markers are strong


def test_input_choices_are_exclusive_with_one_line_errors(files, capsys):
    common = ["--rna", str(files / "ref.h5ad"), "--label-key", "cell_type", "--annotation", str(files / "genes.tsv"),
              "--out", str(files / "never.h5ad")]
    frags, query = ["--fragments", str(files / "frags.tsv.gz")], ["--atac", str(files / "ref.h5ad")]
    (files / "no_suffix.tsv").write_text("CELL0000\nCELL0001\n")
    for argv, message in [(common, "exactly one of --atac and --fragments"),
                          (common + frags + query, "exactly one of --atac and --fragments"),
                          (common + query + ["--peaks", str(files / "peaks.bed")], "--peaks and --barcodes go with"),
                          (common + frags + ["--peaks", str(files / "missing.bed")], "missing.bed not found"),
                          (common + frags + ["--barcodes", str(files / "no_suffix.tsv")], "no barcode of the whitelist")]:
        assert main(["transfer", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert not (files / "never.h5ad").exists()
    assert main(["integrate", "--multiome", str(files / "frags.tsv.gz"), "--mudata", str(files / "x.h5mu"),
                 "--out", str(files / "never.h5mu")]) == 2
    assert "give one of --mudata, --multiome" in capsys.readouterr().err
    assert main(["integrate", "--multiome", str(files / "frags.tsv.gz"), "--out", str(files / "never.h5mu")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_integrate_from_multiome_h5(files, capsys):
    atac = io.read_fragments(files / "frags.tsv.gz", peaks=files / "peaks.bed")
    rna = ad.read_h5ad(files / "ref.h5ad")[: atac.n_obs]
    peaks = atac.var.rename(columns={"chromStart": "start", "chromEnd": "end"})
    write_arc_h5(files / "arc.h5", rna.X.toarray(), atac.X.toarray(), list(rna.var_names), peaks, atac.obs_names)
    out = files / "joint.h5mu"
    rc = main(["integrate", "--multiome", str(files / "arc.h5"), "--out", str(out), "--epochs", "2", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    result = md.read_h5mu(out)
    assert result.n_obs == atac.n_obs and "X_sci2cl" in result.obsm
    assert list(result["atac"].var["chromStart"][:2]) == [1000, 11000]
