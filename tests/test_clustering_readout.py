"""benchmarks/clustering_readout.py's fixed-weight grid rows."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import clustering_readout  # noqa: E402
from clustering_readout import fused_embeddings, grid_weights, readouts  # noqa: E402

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


def clustered_run(seed=0):
    """Three well-separated groups of cells, seen by the log view and by the latent."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([0, 1, 2], 60)
    pca = (rng.normal(size=(3, 10)) * 4)[groups] + rng.normal(size=(180, 10))
    return {"pca": pca, "cae": np.hstack([pca[:, :8], rng.normal(size=(180, 4))]), "clusters": groups}


def agree_row_weighting(monkeypatch, out, pearson_pcs):
    """The weighting ``<m>_both_agree`` fused its views with."""
    seen = []

    def recording_fused(out, method, view_name, weighting, seed, pcs):
        seen.append(weighting)
        return original(out, method, view_name, weighting, seed, pcs)

    original = clustering_readout.fused
    monkeypatch.setattr(clustering_readout, "fused", recording_fused)
    rows = dict(readouts(out, "cae", 3, 0, pearson_pcs, only={"cae_both_agree"}))
    assert list(rows) == ["cae_both_agree"] and len(seen) == 1
    return seen[0]


def test_agree_row_follows_the_views_agreement(monkeypatch):
    out = clustered_run()
    # the Pearson view is the log view itself: the views' clusters agree, halfway-WNN weights
    assert agree_row_weighting(monkeypatch, out, out["pca"]) == "half"
    # a Pearson view of noise: its clusters do not agree with the log view's, cae's fixed weights
    noise = np.random.default_rng(1).normal(size=out["pca"].shape)
    assert agree_row_weighting(monkeypatch, out, noise) == "weighted"


def test_unknown_row_names_are_refused_before_any_run(tmp_path, capsys):
    with pytest.raises(SystemExit):
        clustering_readout.main(["--method", "cae", "--datasets", "no_such_set", "--json", str(tmp_path / "o.json"),
                                 "--rows", "cae,cae_both_w0.6_0.2_0.2"])
    assert "cae_both_w0.6_0.2_0.2" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_row_names_match_the_rows_a_run_writes():
    out = clustered_run()
    rows = [name for name, _ in readouts(out, "cae", 3, 0, out["pca"], grid=("0.6,0.2,0.2",))]
    assert rows == clustering_readout.row_names("cae", ("0.6,0.2,0.2",))


def test_cae_ensemble_reads_each_member_off_by_the_views_agreement(monkeypatch, tmp_path):
    """``--members`` reads each cae member as ``tl.cluster`` does since 2026-12-05: by the two views' agreement."""
    from omics_cl.models.members import member_seeds

    out = clustered_run()
    seeds = member_seeds(0, 2)
    for seed in seeds:
        np.savez(tmp_path / f"set_cae_{seed}.npz", seconds=1.0, **out)
    calls = []

    def recording_agreed(run, method, k, seed, pearson_pcs):
        calls.append((method, k, seed))
        return run["pca"]

    monkeypatch.setattr(clustering_readout, "agreed", recording_agreed)
    labels = clustering_readout.ensemble_readout(None, "set", "cae", 3, 0, 2, out["pca"], str(tmp_path))
    assert calls == [("cae", 3, s) for s in seeds]
    assert len(np.unique(labels)) == 3
