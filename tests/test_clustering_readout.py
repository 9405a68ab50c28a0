"""benchmarks/clustering_readout.py's fixed-weight grid rows."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from clustering_readout import fused_embeddings, grid_weights  # noqa: E402

from omics_cl.models.cae import DEFAULT_FUSION_WEIGHTS  # noqa: E402


def run_arrays(seed=0):
    rng = np.random.default_rng(seed)
    return {"pca": rng.normal(size=(120, 10)), "cae": rng.normal(size=(120, 8))}, rng.normal(size=(120, 10))


def test_grid_row_with_the_default_weights_is_the_weighted_row():
    out, pearson = run_arrays()
    default = ",".join(str(DEFAULT_FUSION_WEIGHTS[v]) for v in ("pca", "pca_pearson", "latent"))
    rows = fused_embeddings(out, "cae", 0, pearson, grid=(default, "0.5,0.5,0"))
    grid_row = f"cae_both_w{default.replace(',', '_')}"
    np.testing.assert_array_equal(rows[grid_row], rows["cae_both_weighted"])
    assert not np.allclose(rows["cae_both_w0.5_0.5_0"], rows["cae_both_weighted"])


def test_only_computes_the_named_rows():
    out, pearson = run_arrays()
    rows = fused_embeddings(out, "cae", 0, pearson, grid=("0.6,0.2,0.2",), only={"cae_both_w0.6_0.2_0.2"})
    assert list(rows) == ["cae_both_w0.6_0.2_0.2"]
    assert grid_weights("0.6,0.2,0.2") == {"pca": 0.6, "pca_pearson": 0.2, "latent": 0.2}
