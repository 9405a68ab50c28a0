"""Label transfer's building blocks on small hand-made arrays: the scNCL loss terms, the novelty thresholds and the
annotation-check rules."""
import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import blobs

from omics_cl import tl
from omics_cl.core import losses


def test_nndr_terms():
    f = np.array([[1.0, 2.0], [3.0, 0.0], [5.0, 4.0]], dtype=np.float32)
    centred = f - f.mean(0)
    cov = centred.T @ centred / 2
    assert float(losses.centring(f)) == pytest.approx(np.abs(f.mean(0)).mean())
    assert float(losses.decorrelation(f)) == pytest.approx(abs(cov[0, 1]))
    assert float(losses.inverse_variance(f)) == pytest.approx(1 / np.abs(centred).mean(), rel=1e-5)


def test_feature_alignment_keeps_top_fraction():
    atac = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.2]], dtype=np.float32)
    rna = np.array([[1.0, 0.1], [0.1, 1.0]], dtype=np.float32)
    norm = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    best = (norm(atac) @ norm(rna).T).max(1)
    expected = -np.sort(best)[::-1][:3].mean()
    assert float(losses.feature_alignment(atac, rna, 0.75)) == pytest.approx(expected, rel=1e-5)


def test_otsu_splits_bimodal_scores():
    scores = np.r_[np.random.default_rng(0).normal(0.1, 0.03, 500), np.random.default_rng(1).normal(0.8, 0.05, 100)]
    t = tl.otsu_threshold(scores)
    assert scores[:500].max() < t < scores[500:].min()


def test_rate_threshold_flags_at_most_the_share():
    """Scores above the threshold are the floor(rate x n) largest; ties at the threshold flag fewer; rate 0 flags
    none; a rate outside [0, 1) is refused."""
    scores = np.random.default_rng(0).permutation(np.arange(200.0))
    for rate in (0.0, 0.05, 0.1, 0.333):
        assert (scores > tl.rate_threshold(scores, rate)).sum() == int(np.floor(rate * 200))
    tied = np.r_[np.zeros(150), np.ones(50)]
    assert (tied > tl.rate_threshold(tied, 0.1)).sum() == 0
    assert (tied > tl.rate_threshold(tied, 0.3)).sum() == 50
    for rate in (1.0, -0.01, None):
        with pytest.raises(ValueError, match="novelty_rate"):
            tl.rate_threshold(scores, rate)


def test_annotation_flags_rule():
    atlas = np.array(["a", "a", "b", "b", "c", None], dtype=object)
    transferred = np.array(["a", "b", "b", "a", "a", "a"], dtype=object)
    confidence = np.array([0.9, 0.95, 0.5, 0.4, 0.99, 0.99])
    flags, threshold = tl.annotation_flags(atlas, transferred, confidence, ["a", "b"], min_confidence=None,
                                           min_enrichment=0, min_agreement=0)
    assert threshold == pytest.approx(0.7)  # median confidence of the agreeing cells (0.9, 0.5)
    # cell 3 disagrees but is unsure; cell 4's atlas label "c" is not in the reference; cell 5 has none
    assert flags.tolist() == [False, True, False, False, False, False]
    flags, _ = tl.annotation_flags(atlas, transferred, confidence, ["a", "b"], novel=[0, 1, 0, 0, 0, 0],
                                   min_confidence=None, min_enrichment=0, min_agreement=0)
    assert not flags.any()
    with pytest.raises(ValueError, match="no cell's transferred label agrees"):
        tl.annotation_flags(["x", "y"], ["a", "b"], [1.0, 1.0], ["a", "b"], min_confidence=None)


def test_group_rule_flags_a_relabelled_type_not_a_confused_pair():
    """L2 and L4 are mixed up both ways (model confusion, not flagged); every Oligo cell is labelled Astro
    in the atlas, so the Astro -> Oligo disagreements have no opposite group (flagged)."""
    atlas = np.array(["L2"] * 100 + ["L4"] * 100 + ["Astro"] * 60 + ["Oligo"] * 0, dtype=object)
    transferred = np.array(["L2"] * 70 + ["L4"] * 30 + ["L4"] * 75 + ["L2"] * 25 + ["Astro"] * 30 + ["Oligo"] * 30,
                           dtype=object)
    flags, _ = tl.annotation_flags(atlas, transferred, np.ones(len(atlas)), ["L2", "L4", "Astro", "Oligo"])
    assert flags.tolist() == [False] * 230 + [True] * 30
    # a type the transfer rarely confirms (Astro agreement 30/60 < 0.6) is not checked
    assert not tl.annotation_flags(atlas, transferred, np.ones(len(atlas)), ["L2", "L4", "Astro", "Oligo"],
                                   min_agreement=0.6)[0].any()
    groups = tl.confusion_groups(atlas, transferred.astype(str), atlas != transferred)
    row = groups.set_index(["atlas_label", "transferred_label"])
    assert row.loc[("L2", "L4"), "expected"] == 25 and row.loc[("Astro", "Oligo"), "estimated_precision"] == 1.0
    assert not tl.annotation_flags(atlas, transferred, np.ones(len(atlas)), ["L2", "L4", "Astro", "Oligo"],
                                   min_group_cells=31)[0].any()


def test_probability_rule_spares_an_over_predicted_type_not_a_relabelled_one():
    """40 cells of a small type go to the large type one way (the transfer over-predicts it), which the reverse
    count cannot explain but the transfer's own probabilities do (they put 76 small-type cells among the cells
    transferred as big); every Oligo cell labelled Astro still stands out (1.5 Astro cells expected)."""
    classes = ["big", "small", "Astro", "Oligo"]
    atlas = np.array(["big"] * 300 + ["small"] * 100 + ["Astro"] * 60, dtype=object)
    transferred = np.array(["big"] * 300 + ["small"] * 60 + ["big"] * 40 + ["Astro"] * 30 + ["Oligo"] * 30,
                           dtype=object)
    prob = np.zeros((len(atlas), 4))
    prob[:300] = [0.8, 0.2, 0, 0]
    prob[300:360] = [0.3, 0.7, 0, 0]
    prob[360:400] = [0.6, 0.4, 0, 0]
    prob[400:430] = [0, 0, 0.9, 0.1]
    prob[430:] = [0, 0, 0.05, 0.95]
    probabilities = pd.DataFrame(prob, columns=classes)
    without = tl.annotation_flags(atlas, transferred, np.ones(len(atlas)), classes)[0]
    with_rule = tl.annotation_flags(atlas, transferred, np.ones(len(atlas)), classes, probabilities=probabilities)[0]
    assert without.tolist() == [False] * 360 + [True] * 40 + [False] * 30 + [True] * 30
    assert with_rule.tolist() == [False] * 430 + [True] * 30
    groups = tl.confusion_groups(atlas, transferred.astype(str), atlas != transferred, probabilities).set_index(
        ["atlas_label", "transferred_label"])
    assert groups.loc[("small", "big"), "expected_from_probabilities"] == pytest.approx(76)
    assert groups.loc[("Astro", "Oligo"), "estimated_precision"] == pytest.approx(1 - 1.5 / 30)
    with pytest.raises(ValueError, match="rows for"):
        tl.annotation_flags(atlas, transferred, np.ones(len(atlas)), classes, probabilities=probabilities[:10])


def test_neighbour_flags_spread_within_an_atlas_label():
    """Cell 3 (atlas A): 2 of its 3 A-neighbours flagged -> flagged, suggested B. Cell 2: 1 of 3. Cell 4: its flagged
    neighbours carry atlas C and its A-neighbour is unflagged. Cell 6 has no atlas label. One step: cell 3's new flag
    does not spread further."""
    atlas = np.array(["A", "A", "A", "A", "A", "C", None, "C"], dtype=object)
    flags = np.array([True, True, False, False, False, True, False, True])
    suggested = np.array(["B", "B", None, None, None, "D", None, "D"], dtype=object)
    neighbors = np.array([[1, 2, 3], [0, 2, 3], [3, 4, 0], [0, 1, 2], [5, 7, 2], [7, 0, 1], [0, 1, 3], [5, 0, 1]])
    out, proposed = tl.neighbour_flags(flags, atlas, suggested, neighbors)
    assert out.tolist() == [True, True, False, True, False, True, False, True]
    assert proposed.tolist() == ["B", "B", None, "B", None, "D", None, "D"]
    out, _ = tl.neighbour_flags(flags, atlas, suggested, neighbors, eligible=np.arange(8) != 3)
    assert not out[3]
    with pytest.raises(ValueError, match="min_share"):
        tl.neighbour_flags(flags, atlas, suggested, neighbors, min_share=0)
    with pytest.raises(ValueError, match="cells x k"):
        tl.neighbour_flags(flags, atlas, suggested, neighbors[:3])


def test_label_consistency_with_no_disagreement_returns_an_empty_table():
    """Labels every neighbourhood confirms (well separated types) leave no candidate group: an empty table with its
    columns, nothing suspect (this once died with a KeyError)."""
    points, groups = blobs(n_per=40, k=3)
    counts = np.random.default_rng(0).poisson(2.0, size=(len(groups), 30)) + 1
    adata = ad.AnnData(sp.csr_matrix(counts))
    adata.obsm["X_joint"] = points
    adata.obs["label"] = groups.astype(str)
    table = tl.label_consistency(adata, "label", use_rep="X_joint")
    assert table.empty and {"given_label", "neighbourhood_label", "n_cells", "markers"} <= set(table.columns)
    assert not adata.obs["omics_cl_label_suspect"].any()
    assert adata.uns["omics_cl"]["label_consistency"]["n_suspect"] == 0


def test_label_consistency_under_a_key_sits_beside_the_first_check():
    """A planted relabelling (a quarter of group 0 called 1): the group rule (default) and the cell rule under
    ``key_added`` side by side; a key holding another run's record is refused before anything is written."""
    points, groups = blobs(n_per=40, k=3)
    counts = np.random.default_rng(0).poisson(2.0, size=(len(groups), 30)) + 1
    adata = ad.AnnData(sp.csr_matrix(counts))
    adata.obsm["X_joint"] = points
    labels = groups.astype(str).astype(object)
    labels[np.flatnonzero(groups == 0)[:10]] = "1"
    adata.obs["label"] = labels
    tl.label_consistency(adata, "label", use_rep="X_joint", min_group_cells=5)
    first = adata.obs.copy()
    tl.label_consistency(adata, "label", use_rep="X_joint", min_enrichment=0, min_group_cells=0,
                         key_added="cell_rule")
    pd.testing.assert_frame_equal(adata.obs[first.columns], first)
    assert adata.obs["cell_rule_label_suspect"].sum() >= adata.obs["omics_cl_label_suspect"].sum() == 10
    records = adata.uns["omics_cl"]
    assert records["cell_rule"]["min_enrichment"] == 0 and records["label_consistency"]["min_enrichment"] == 4.0
    assert records["cell_rule"]["job"] == "label_consistency"
    tl.label_consistency(adata, "label", use_rep="X_joint", key_added="cell_rule")  # its own key: rewritten
    records["sci2cl"] = {"method": "sci2cl"}
    for bad, message in (("sci2cl", "record of another run"), ("trajectory", "another tool's record")):
        with pytest.raises(ValueError, match=message):
            tl.label_consistency(adata, "label", use_rep="X_joint", key_added=bad)
    assert set(records) == {"label_consistency", "cell_rule", "sci2cl"} and "sci2cl_label_suspect" not in adata.obs
