"""omics_cl.environment: the versions and machine every run record holds."""
import builtins

import anndata as ad
import numpy as np
from threadpoolctl import threadpool_limits

from omics_cl import environment, tl


def test_provenance_names_libraries_cpu_threads_and_flags(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    record = environment.provenance()
    versions = record["versions"]
    assert set(versions) == set(environment.LIBRARIES)
    assert versions["numpy"] == np.__version__
    env = record["machine"]
    assert isinstance(env["cpu"]["name"], str) and env["cpu"]["name"]
    assert isinstance(env["cpu"]["avx512"], bool)
    assert env["cores"] >= 1 and env["backend"] == "cpu"
    assert env["xla_flags"] == "--xla_cpu_multi_thread_eigen=false"
    assert env["threads"] and all(isinstance(n, int) and n >= 1 for n in env["threads"].values())


def test_thread_counts_follow_the_limits_in_force():
    with threadpool_limits(limits=1):
        assert set(environment.thread_counts().values()) == {1}


def test_cpu_without_proc_cpuinfo_falls_back_to_the_platform(monkeypatch):
    real_open = builtins.open

    def no_cpuinfo(path, *args, **kwargs):
        if str(path) == "/proc/cpuinfo":
            raise OSError("no such file")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_cpuinfo)
    monkeypatch.setattr(environment.platform, "processor", lambda: "Test CPU")
    assert environment.cpu() == {"name": "Test CPU", "avx512": False}


def test_cluster_record_holds_provenance_and_writes_to_h5ad(tmp_path, monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)  # an empty string in the record
    counts = np.random.default_rng(0).poisson(1.0, size=(120, 60)).astype(np.float32)
    counts[:, 0] += 1  # no empty cell
    adata = ad.AnnData(counts)
    tl.cluster(adata, method="pca", n_top_genes=40, n_comps=10, graph_comps=5, progress=False)
    record = adata.uns["omics_cl"]["pca"]
    assert record["versions"]["omics_cl"] == environment.library_versions()["omics_cl"]
    assert record["machine"]["cpu"] == environment.cpu()
    adata.write_h5ad(tmp_path / "out.h5ad")
    back = ad.read_h5ad(tmp_path / "out.h5ad").uns["omics_cl"]["pca"]
    assert back["machine"]["cpu"]["name"] == record["machine"]["cpu"]["name"]
    assert bool(back["machine"]["cpu"]["avx512"]) == record["machine"]["cpu"]["avx512"]
    assert back["versions"] == record["versions"]
