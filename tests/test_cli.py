import hashlib
import subprocess
import sys

import anndata as ad
import numpy as np
import pytest

from omics_cl import cli, datasets, tl


def test_cluster_cli_on_pbmc68k_reduced(tmp_path, capsys):
    src = datasets.path("pbmc68k_reduced", "rna")
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    out = tmp_path / "out.h5ad"
    code = cli.main(["cluster", str(src), "--method", "cae", "--epochs", "3", "--n-clusters", "10",
                     "--label-key", "bulk_labels", "--out", str(out), "--no-progress", "--leiden-consensus", "3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| cae | n_clusters | 10 |" in printed and "nmi" in printed
    result = ad.read_h5ad(out)
    assert result.obsm["X_cae"].shape == (700, 50 + 50 + 128) and result.obsm["X_cae_latent"].shape == (700, 128)
    assert result.obs["cae_cluster"].nunique() == 10
    assert result.uns["omics_cl"]["cae"]["params"]["epochs"] == 3
    assert result.uns["omics_cl"]["cae"]["leiden_consensus"] == 3
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before


def test_cluster_cli_keeps_an_earlier_run_beside_a_keyed_one(tmp_path, capsys):
    first, second = tmp_path / "first.h5ad", tmp_path / "second.h5ad"
    base = ["--method", "pca", "--no-progress", "--n-clusters", "10"]
    assert cli.main(["cluster", str(datasets.path("pbmc68k_reduced", "rna")), *base, "--out", str(first)]) == 0
    assert cli.main(["cluster", str(first), *base, "--n-top-genes", "300", "--key-added", "pca_300",
                     "--label-key", "bulk_labels", "--out", str(second)]) == 0
    printed = capsys.readouterr().out
    assert "embedding obsm['X_pca_300'], clusters obs['pca_300_cluster']" in printed and "| pca | n_clusters |" in printed
    result, earlier = ad.read_h5ad(second), ad.read_h5ad(first)
    np.testing.assert_array_equal(result.obsm["X_pca"], earlier.obsm["X_pca"])
    assert result.uns["omics_cl"]["pca_300"]["n_features"] == 300 and result.obs["pca_300_cluster"].nunique() == 10
    bad = tmp_path / "bad.h5ad"
    assert cli.main(["cluster", str(first), *base, "--key-added", "a/b", "--out", str(bad)]) != 0
    assert "key_added must be None or a non-empty string without '/'" in capsys.readouterr().err and not bad.exists()


def test_cluster_cli_refuses_a_bad_leiden_consensus_before_any_work(tmp_path, capsys):
    out = tmp_path / "out.h5ad"
    code = cli.main(["cluster", str(datasets.path("pbmc68k_reduced", "rna")), "--method", "pca", "--out", str(out),
                     "--no-progress", "--leiden-consensus", "0"])
    assert code != 0 and "leiden_consensus" in capsys.readouterr().err and not out.exists()


def test_help_of_the_module_entry_point():
    res = subprocess.run([sys.executable, "-m", "omics_cl.cli", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "usage: omics-cl" in res.stdout


@pytest.mark.parametrize("sub", ["cluster", "demo", "transfer", "integrate", "map", "datasets"])
def test_help_of_each_command(sub, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main([sub, "--help"])
    assert stopped.value.code == 0 and f"usage: omics-cl {sub}" in capsys.readouterr().out


def test_datasets_command_lists_registry(capsys):
    assert cli.main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "mop_snare_paired" in out and "gene_peak_links" in out and "missing" not in out


@pytest.mark.parametrize("method,extra", [("scinno", ["--n-clusters", "10", "--set", 'readout="argmax"']),
                                          ("siamese", ["--set", 'readout="argmax"'])])
def test_cluster_cli_self_clustering_methods(tmp_path, capsys, method, extra):
    src = datasets.path("pbmc68k_reduced", "rna")
    out = tmp_path / "out.h5ad"
    code = cli.main(["cluster", str(src), "--method", method, "--epochs", "2", "--label-key", "bulk_labels",
                     "--out", str(out), "--no-progress", *extra])
    assert code == 0
    printed = capsys.readouterr().out
    assert ("K given" if "--n-clusters" in extra else "K estimated by Leiden") in printed
    assert f"| {method} |" in printed
    result = ad.read_h5ad(out)
    k = result.uns["omics_cl"][method]["n_centres"]
    assert result.obsm[f"{method}_membership"].shape == (700, k)
    if "--n-clusters" in extra:
        assert k == 10


def test_cluster_cli_siamese_default_reads_off_leiden(tmp_path, capsys):
    out = tmp_path / "out.h5ad"
    code = cli.main(["cluster", str(datasets.path("pbmc68k_reduced", "rna")), "--method", "siamese", "--epochs", "2",
                     "--n-clusters", "8", "--out", str(out), "--no-progress"])
    assert code == 0 and "Leiden resolution" in capsys.readouterr().out
    result = ad.read_h5ad(out)
    assert result.obs["siamese_cluster"].nunique() == 8 and "siamese_membership" not in result.obsm
    assert result.obsm["X_siamese_latent"].shape[0] == 700


def test_cluster_cli_backed_streams_the_file_and_refuses_what_cannot_stream(counts_adata, tmp_path, capsys):
    src, out = tmp_path / "in.h5ad", tmp_path / "out.h5ad"
    counts_adata.layers["counts"] = counts_adata.X.copy()
    counts_adata.write_h5ad(src)
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    small = ["--set", "hidden=[32]", "--set", "latent=8", "--set", "batch_size=64", "--epochs", "2",
             "--set", 'fusion="none"']
    assert cli.main(["cluster", str(src), "--backed", *small, "--out", str(out), "--no-progress"]) == 0
    streamed = ad.read_h5ad(out)
    assert streamed.uns["omics_cl"]["cae"]["stream"] is True
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before
    assert (streamed.X != counts_adata.X).nnz == 0
    backed = ad.read_h5ad(src, backed="r")
    tl.cluster(backed, method="cae", hidden=[32], latent=8, batch_size=64, epochs=2, fusion="none", progress=False,
               stream=True)
    np.testing.assert_array_equal(streamed.obsm["X_cae"], backed.obsm["X_cae"])
    assert cli.main(["cluster", str(src), *small, "--out", str(out), "--no-progress"]) == 0
    assert ad.read_h5ad(out).uns["omics_cl"]["cae"]["stream"] is False  # without --backed: read into memory
    capsys.readouterr()
    for extra, message in [(["--method", "pca"], "which pca cannot; methods that stream: ae, cae"),
                           ([*small, "--layer", "counts"], "--layer cannot be streamed"),
                           (["--epochs", "2"], "add --set fusion='\"none\"'")]:
        assert cli.main(["cluster", str(src), "--backed", *extra, "--out", str(tmp_path / "no.h5ad")]) == 2
        assert message in capsys.readouterr().err and not (tmp_path / "no.h5ad").exists()
