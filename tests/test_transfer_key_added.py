"""``key_added`` in label transfer (``tl.transfer_labels``, ``tl.map_query``, ``omics-cl transfer`` / ``map``): a
second transfer into one query sits beside the first, and the tools that read a transfer find its columns."""
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from conftest import TRANSFER_FAST, run_transfer

from omics_cl import get, pl, tl
from omics_cl.cli import main

NAMES = ("label", "confidence", "novelty", "is_novel")


@pytest.fixture(scope="module")
def two_transfers(mop_split, tmp_path_factory):
    """A default transfer (model saved) and a second one into the same query under ``key_added="wide"``
    (30 % flagged novel), with copies of what the first wrote."""
    ref, query, activity = mop_split
    model = tmp_path_factory.mktemp("models") / "scncl"
    ref, query = run_transfer(ref, query, activity, save_model=model)
    first = query.obs.copy(), {k: np.array(v) for k, v in query.obsm.items()}, ref.obsm["X_scncl"].copy()
    tl.transfer_labels(ref, query, "cell_type", gene_activity=activity, progress=False, key_added="wide",
                       novelty_rate=0.3, **TRANSFER_FAST)
    return ref, query, activity, model, first


def test_a_second_transfer_under_a_key_keeps_the_first(two_transfers):
    ref, query, _, _, (obs, obsm, rna_embedding) = two_transfers
    pd.testing.assert_frame_equal(query.obs[obs.columns], obs)
    for key, value in obsm.items():
        np.testing.assert_array_equal(query.obsm[key], value)
    np.testing.assert_array_equal(ref.obsm["X_scncl"], rna_embedding)
    assert {f"wide_{name}" for name in NAMES} <= set(query.obs)
    assert {"X_wide", "wide_probabilities", "wide_lsi"} <= set(query.obsm) and "X_wide" in ref.obsm
    record = get.run_record(query, "wide")
    assert record["method"] == "scncl" and record["obs_prefix"] == "wide" and record["novelty_rate"] == 0.3
    assert get.run_record(query, "scncl")["obs_prefix"] == "omics_cl"
    assert query.uns["omics_cl"]["transfer_method"] == ref.uns["omics_cl"]["transfer_method"] == "wide"
    assert query.obs["wide_is_novel"].mean() == pytest.approx(0.3, abs=0.02)
    assert query.obs["omics_cl_is_novel"].mean() == pytest.approx(0.1, abs=0.02)
    assert get.transfer_column(query, "label") == "wide_label"
    assert get.transfer_column(query, "label", "scncl") == "omics_cl_label"


def test_readers_of_a_transfer_find_its_columns_under_the_key(two_transfers, tmp_path):
    """check_annotations and the plots read the keyed transfer's columns (the default ones removed)."""
    ref, query, activity, _, _ = two_transfers
    keyed = query.copy()
    keyed.obs = keyed.obs.drop(columns=[c for c in keyed.obs if c.startswith("omics_cl_")])
    keyed.obs["atlas"] = keyed.obs["wide_label"].astype(str).to_numpy()
    table = tl.check_annotations(keyed, "atlas", gene_activity=activity)
    assert table.empty and not keyed.obs["omics_cl_annotation_flag"].any()
    assert keyed.uns["omics_cl"]["check_annotations"]["method"] == "wide"
    with pytest.raises(ValueError, match=r"lacks \['omics_cl_label', 'omics_cl_confidence', 'omics_cl_is_novel'\]"):
        tl.check_annotations(keyed, "atlas", method="scncl")
    # a second check under its own key (of the default transfer, its columns put back, against an atlas that
    # calls the second most frequent type the first) sits beside the first
    for name in NAMES:
        keyed.obs[f"omics_cl_{name}"] = query.obs[f"omics_cl_{name}"]
    transferred = keyed.obs["omics_cl_label"].astype(str)
    largest, second = transferred.value_counts().index[:2]
    wrong = (transferred == second).to_numpy()
    keyed.obs["merged"] = np.where(wrong, largest, transferred.to_numpy())
    first = keyed.obs.copy()
    tl.check_annotations(keyed, "merged", method="scncl", key_added="scncl_check", propagate_neighbors=0)
    pd.testing.assert_frame_equal(keyed.obs[first.columns], first)
    flags = keyed.obs["scncl_check_annotation_flag"].to_numpy()
    assert flags.any() and not flags[~wrong].any()
    assert keyed.uns["omics_cl"]["scncl_check"]["method"] == "scncl"
    assert keyed.uns["omics_cl"]["check_annotations"]["method"] == "wide"
    with pytest.raises(ValueError, match="record of another run"):  # would overwrite the transfer's record
        tl.check_annotations(keyed, "atlas", key_added="wide")
    assert keyed.uns["omics_cl"]["wide"]["job"] == "transfer"
    fig = pl.novelty_distribution(keyed)
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections) + len(fig.axes[0].patches) > 0
    pl.transfer_umap(ref[:300].copy(), keyed[:300].copy(), "cell_type", save=str(tmp_path / "umap.png"))
    assert (tmp_path / "umap.png").stat().st_size > 0
    plt.close("all")


def test_map_query_under_a_key_gives_the_training_runs_labels(two_transfers):
    _, query, activity, model, (obs, _, _) = two_transfers
    mapped = query.copy()
    tl.map_query(mapped, model, gene_activity=activity, key_added="mapped")
    for name in NAMES:  # mapping the training query gives its results bit for bit, here under the key
        np.testing.assert_array_equal(mapped.obs[f"mapped_{name}"].to_numpy(), obs[f"omics_cl_{name}"].to_numpy())
    assert mapped.uns["omics_cl"]["transfer_method"] == "mapped" and "X_mapped" in mapped.obsm
    pd.testing.assert_frame_equal(mapped.obs[query.obs.columns], query.obs)


def test_a_bad_transfer_key_is_refused_before_any_work(mop_split, two_transfers, tmp_path):
    ref, query, activity = mop_split
    fresh = query.copy()
    for bad in ("", "transfer_method", "a/b"):
        with pytest.raises(ValueError, match="key_added"):
            tl.transfer_labels(ref, fresh, "cell_type", gene_activity=activity, key_added=bad, progress=False)
        with pytest.raises(ValueError, match="key_added"):
            tl.map_query(fresh, two_transfers[3], gene_activity=activity, key_added=bad)
    assert "omics_cl" not in fresh.uns and not fresh.obsm and list(fresh.obs) == list(query.obs)
    out = tmp_path / "out.h5ad"
    assert main(["map", "--model", str(two_transfers[3]), "--atac", "unread.h5ad", "--gene-activity", "x.h5ad",
                 "--out", str(out), "--key-added", "trajectory"]) == 2
    assert not out.exists()
