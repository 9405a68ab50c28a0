import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Tests train many small models whose jitted steps are the same programs; a compilation cache for this test
# session (shared with the CLI subprocesses through the environment) compiles each once. Set before jax is imported.
_CACHE = tempfile.mkdtemp(prefix="omics_cl_test_jit_")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
# Most of the suite's time is XLA compiling small programs: the tests compile them with LLVM's optimisation level 0
# (about 30% less time on tests/test_map_paired.py + tests/test_sci2cl.py). Numerics may differ from an optimised
# build's in the last bits; every comparison in the tests is within one build. Subprocesses that set their own
# XLA_FLAGS (test_epochs, test_multihost) run at the default level.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import anndata as ad  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from omics_cl import datasets, pp, tl  # noqa: E402

# hypothesis (tests/test_properties*.py), derandomized: the same examples on every run and machine (function-scoped
# fixtures are allowed: the autouse ``offline`` fixture only sets a variable)
settings.register_profile("omics_cl", max_examples=100, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile("omics_cl")

# small network settings so unit tests train in seconds
FAST = {"hidden": (64,), "latent": 16, "epochs": 3, "batch_size": 64}
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """The module ``benchmarks/<name>.py``, imported with ``benchmarks/`` on the path for its own imports."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test reaches the outside network: registry downloads are off (test_download turns them back on
    for its 127.0.0.1 server)."""
    monkeypatch.setenv(datasets.OFFLINE_VAR, "1")


@pytest.fixture
def counts_adata():
    """300 cells x 120 genes of negative-binomial counts in three groups."""
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1, 2], 100)
    base = rng.gamma(2.0, 1.0, size=(3, 120))
    mu = base[groups] * rng.uniform(0.5, 1.5, size=(300, 1))
    x = rng.poisson(rng.gamma(5.0, mu / 5.0)).astype(np.int32)
    x[:, 0] += 1  # no empty cells
    a = ad.AnnData(sp.csr_matrix(x))
    a.obs_names = [f"c{i}" for i in range(300)]
    a.var_names = [f"g{i}" for i in range(120)]
    a.obs["group"] = groups.astype(str)
    return a


TRANSFER_FAST = dict(epochs=4, batch_size=128, hidden=32)  # label transfer tests


@pytest.fixture(scope="module")
def mop_split():
    """Disjoint halves of a 2,400-cell MOp subsample: RNA of half A (no Mis) and ATAC of half B,
    with gene activity from the published peak -> gene links."""
    rna = datasets.load("mop_snare_paired", modality="rna")
    atac = datasets.load("mop_snare_paired", modality="atac")
    cells = np.random.default_rng(0).permutation(rna.n_obs)[:2400]
    ref = rna[cells[:1200]].copy()
    ref = ref[ref.obs["cell_type"] != "Mis"].copy()
    query = atac[cells[1200:]].copy()
    links = sp.load_npz(datasets.path("mop_snare_paired", "gene_peak_links"))
    genes = datasets.path("mop_snare_paired", "link_genes").read_text().split()
    activity = pp.gene_activity(query, links=links, link_genes=genes)
    return ref, query, activity


def run_transfer(ref, query, activity, **kw):
    """``tl.transfer_labels`` on copies of ``ref`` / ``query`` at :data:`TRANSFER_FAST` (``kw`` overrides)."""
    ref, query = ref.copy(), query.copy()
    tl.transfer_labels(ref, query, "cell_type", gene_activity=activity, progress=False, **{**TRANSFER_FAST, **kw})
    return ref, query


def blobs(n_per=60, k=5, seed=0):
    """k Gaussian blobs of n_per points in 10 dimensions, far apart, and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, 10)) * 10
    return np.vstack([c + rng.normal(size=(n_per, 10)) for c in centres]), np.repeat(np.arange(k), n_per)
