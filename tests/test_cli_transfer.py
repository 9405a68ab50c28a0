import anndata as ad
import numpy as np
import pandas as pd
import pytest

from omics_cl import datasets
from omics_cl.cli import main


@pytest.fixture(scope="module")
def mop_files(tmp_path_factory):
    """Small MOp reference (RNA) and query (ATAC) files; the query keeps its cell_type as atlas labels."""
    rna = datasets.load("mop_snare_paired", modality="rna")
    atac = datasets.load("mop_snare_paired", modality="atac")
    cells = np.random.default_rng(1).permutation(rna.n_obs)[:1600]
    ref = rna[cells[:800]].copy()
    ref = ref[ref.obs["cell_type"] != "Mis"].copy()
    directory = tmp_path_factory.mktemp("transfer")
    ref.write_h5ad(directory / "ref.h5ad")
    atac[cells[800:]].copy().write_h5ad(directory / "query.h5ad")
    return directory


def test_transfer_cli_writes_output_and_report(mop_files, capsys):
    query = mop_files / "query.h5ad"
    before = query.read_bytes()
    out, report = mop_files / "out.h5ad", mop_files / "report"
    rc = main(["transfer", "--rna", str(mop_files / "ref.h5ad"), "--atac", str(query), "--label-key", "cell_type",
               "--annotation", str(datasets.annotation_path("mm10_ensembl_genes.tsv.gz")), "--out", str(out),
               "--query-label-key", "cell_type", "--report", str(report), "--epochs", "2", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert query.read_bytes() == before
    result = ad.read_h5ad(out)
    assert {"omics_cl_label", "omics_cl_is_novel", "omics_cl_annotation_flag"} <= set(result.obs)
    assert {p.name for p in report.iterdir()} == {"novelty_distribution.png", "umap_joint.png", "confusion_matrix.png",
                                                   "annotation_check.csv", "labels.csv"}
    table = pd.read_csv(report / "annotation_check.csv")
    assert list(table.columns[:3]) == ["atlas_label", "transferred_label", "n_cells"]
    assert "accuracy" in capsys.readouterr().out
    assert list(pd.read_csv(report / "labels.csv", index_col=0).columns) == [
        "omics_cl_label", "omics_cl_confidence", "omics_cl_novelty", "omics_cl_is_novel", "omics_cl_query_cluster",
        "omics_cl_label_support", "omics_cl_confidence_novelty", "omics_cl_annotation_flag",
        "omics_cl_suggested_label"]
    # a second transfer into the first's output under --key-added: both in the result, the report on the second
    again, report2 = mop_files / "again.h5ad", mop_files / "report2"
    rc = main(["transfer", "--rna", str(mop_files / "ref.h5ad"), "--atac", str(out), "--label-key", "cell_type",
               "--annotation", str(datasets.annotation_path("mm10_ensembl_genes.tsv.gz")), "--out", str(again),
               "--query-label-key", "cell_type", "--report", str(report2), "--epochs", "2", "--no-progress",
               "--novelty-rate", "0.3", "--key-added", "wide"])
    assert rc == 0, capsys.readouterr().err
    both = ad.read_h5ad(again)
    pd.testing.assert_frame_equal(both.obs[result.obs.columns], result.obs)
    assert {"wide_label", "wide_is_novel", "X_wide", "wide_check_annotation_flag"} <= set(both.obs) | set(both.obsm)
    checks = both.uns["omics_cl"]
    assert checks["wide_check"]["method"] == "wide" and checks["check_annotations"]["method"] == "scncl"
    labels = pd.read_csv(report2 / "labels.csv", index_col=0)
    assert labels.columns[0] == "wide_label" and labels["wide_is_novel"].mean() == pytest.approx(0.3, abs=0.02)
    assert list(labels.columns[-2:]) == ["wide_check_annotation_flag", "wide_check_suggested_label"]
    assert not any(c.startswith("omics_cl_") for c in labels.columns)
    assert f"{int(both.obs['wide_is_novel'].sum())} flagged novel" in capsys.readouterr().out


def test_transfer_cli_refuses_bad_input_and_writes_nothing(mop_files, capsys):
    out = mop_files / "never.h5ad"
    common = ["--rna", str(mop_files / "ref.h5ad"), "--atac", str(mop_files / "query.h5ad"), "--out", str(out)]
    assert main(["transfer", *common, "--label-key", "cell_type"]) == 2
    assert "exactly one of --annotation and --gene-activity" in capsys.readouterr().err
    assert main(["transfer", *common, "--label-key", "missing",
                 "--annotation", str(datasets.annotation_path("mm10_ensembl_genes.tsv.gz"))]) == 2
    assert "label column 'missing'" in capsys.readouterr().err
    assert main(["transfer", "--rna", str(mop_files / "ref.h5ad"), "--atac", str(mop_files / "query.h5ad"),
                 "--label-key", "cell_type", "--annotation", "x.gtf", "--out", str(mop_files / "query.h5ad")]) == 2
    assert "never overwrites its input" in capsys.readouterr().err
    renamed = ad.read_h5ad(mop_files / "query.h5ad")
    renamed.obs["atlas"] = "Astrocyte"  # a type name the reference does not use: refused before any training
    renamed.write_h5ad(mop_files / "renamed.h5ad")
    assert main(["transfer", "--rna", str(mop_files / "ref.h5ad"), "--atac", str(mop_files / "renamed.h5ad"),
                 "--label-key", "cell_type", "--query-label-key", "atlas", "--out", str(out),
                 "--annotation", str(datasets.annotation_path("mm10_ensembl_genes.tsv.gz"))]) == 2
    assert "none of the atlas labels in --query-label-key 'atlas'" in capsys.readouterr().err
    assert not out.exists()
