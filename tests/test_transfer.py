"""Label transfer on a MOp subsample: end to end, determinism, input checks, annotation checks, no label leakage,
the seed's recipe and the ensemble."""
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import run_transfer

from omics_cl import get, tl
from omics_cl.core.neighbors import knn


def test_end_to_end_on_mop_subsample(mop_split):
    ref, query, activity = mop_split
    ref_out, out = run_transfer(ref, query, activity, epochs=40, hidden=256)
    for key in ("omics_cl_label", "omics_cl_confidence", "omics_cl_novelty", "omics_cl_is_novel"):
        assert key in out.obs
    assert out.obs["omics_cl_novelty"].between(0, 1).all() and out.obs["omics_cl_confidence"].between(0, 1).all()
    width = 64 * 3  # three members' latents side by side
    assert out.obsm["X_scncl"].shape == (out.n_obs, width) and ref_out.obsm["X_scncl"].shape == (ref.n_obs, width)
    assert out.uns["omics_cl"]["scncl"]["hvg_flavor"] in ("seurat_v3", "all_genes")
    known = (out.obs["cell_type"] != "Mis").to_numpy()
    acc = np.mean(out.obs["omics_cl_label"].astype(str).to_numpy()[known]
                  == out.obs["cell_type"].astype(str).to_numpy()[known])
    majority = out.obs["cell_type"][known].value_counts(normalize=True).iloc[0]
    assert acc > majority, (acc, majority)  # better than always answering the largest type


def test_same_seed_same_transfer(mop_split):
    a = run_transfer(*mop_split, seed=2)[1]
    b = run_transfer(*mop_split, seed=2)[1]
    assert np.array_equal(a.obsm["X_scncl"], b.obsm["X_scncl"])
    assert np.array_equal(a.obs["omics_cl_label"], b.obs["omics_cl_label"])


def test_unlabelled_reference_cells_left_out_and_counted(mop_split):
    ref, query, activity = mop_split
    ref = ref.copy()
    ref.obs["cell_type"] = ref.obs["cell_type"].astype(object)
    ref.obs.iloc[:10, ref.obs.columns.get_loc("cell_type")] = np.nan
    ref_out, out = run_transfer(ref, query, activity, epochs=1)
    assert out.uns["omics_cl"]["scncl"]["n_unlabelled_reference_cells"] == 10
    assert np.isnan(ref_out.obsm["X_scncl"][:10]).all() and not np.isnan(ref_out.obsm["X_scncl"][10:]).any()


def test_cells_without_gene_activity_are_counted_not_fatal(mop_split, tmp_path):
    """Query cells with no gene activity among the model's genes once made the encoder's output 0, its L2 norm's
    gradient NaN and every parameter NaN (the kNN on the latent then died inside scikit-learn)."""
    ref, query, activity = mop_split
    empty = activity.copy()
    empty.X = sp.csr_matrix(empty.X)
    empty.X[:20] = 0  # stored zeros are kept: they count as no feature, as in tl.cluster and tl.integrate
    with pytest.warns(UserWarning, match="20 query cells have no count among the model's"):
        _, out = run_transfer(ref, query, empty, epochs=1, save_model=tmp_path / "model")
    record = out.uns["omics_cl"]["scncl"]
    assert record["n_query_cells_without_features"] == 20 and record["n_reference_cells_without_features"] == 0
    assert np.isfinite(out.obsm["X_scncl"]).all() and np.isfinite(out.obsm["scncl_probabilities"]).all()
    assert len(set(map(tuple, out.obsm["X_scncl"][:20]))) == 1  # one latent for all of them
    with pytest.warns(UserWarning, match="20 query cells"):
        mapped = tl.map_query(query.copy(), tmp_path / "model", gene_activity=empty)
    assert mapped["params"]["n_query_cells_without_features"] == 20


def _nothing_written(query):
    return "omics_cl_label" not in query.obs and "X_scncl" not in query.obsm


def test_bad_inputs_refused_and_nothing_written(mop_split):
    ref, query, activity = mop_split
    q = query.copy()
    with pytest.raises(ValueError, match="label column 'nope'"):
        tl.transfer_labels(ref, q, "nope", gene_activity=activity)
    one_class = ref[ref.obs["cell_type"] == "L2/3"].copy()
    with pytest.raises(ValueError, match="1 class"):
        tl.transfer_labels(one_class, q, "cell_type", gene_activity=activity)
    renamed = activity.copy()
    renamed.var_names = [f"x{i}" for i in range(renamed.n_vars)]
    with pytest.raises(ValueError, match="no shared genes.*1677 genes"):
        tl.transfer_labels(ref, q, "cell_type", gene_activity=renamed)
    non_count = q.copy()
    non_count.X = non_count.X * 0.5
    with pytest.raises(ValueError, match="ATAC counts contain non-integer"):
        tl.transfer_labels(ref, non_count, "cell_type", gene_activity=activity)
    with pytest.raises(ValueError, match="same cells"):
        tl.transfer_labels(ref, q, "cell_type", gene_activity=activity[::-1].copy())
    no_peaks = q.copy()
    no_peaks.X = sp.csr_matrix(no_peaks.shape, dtype=np.float32)
    with pytest.raises(ValueError, match="ATAC counts hold no count at all"):
        tl.transfer_labels(ref, no_peaks, "cell_type", gene_activity=activity)
    assert _nothing_written(q) and _nothing_written(non_count) and _nothing_written(no_peaks)


def test_check_annotations_finds_relabelled_group(mop_split):
    ref, query, activity = mop_split
    _, out = run_transfer(ref, query, activity, epochs=10)
    with pytest.raises(ValueError, match="run omics_cl.tl.transfer_labels first"):
        tl.check_annotations(query.copy(), "cell_type")
    with pytest.raises(ValueError, match="atlas label column 'nope'"):
        tl.check_annotations(out, "nope")
    # an atlas named otherwise than the reference (no label to check) is refused before anything is written
    out.obs["foreign"] = "Astrocyte"
    with pytest.raises(ValueError, match="first: \\['Astrocyte'\\].*same label names"):
        tl.check_annotations(out, "foreign")
    out.obs["missing"] = np.nan
    with pytest.raises(ValueError, match="holds no atlas label"):
        tl.check_annotations(out, "missing")
    assert "omics_cl_annotation_flag" not in out.obs and "check_annotations" not in out.uns["omics_cl"]
    # an atlas the transfer confirms everywhere: no disagreement, an empty table with its columns
    out.obs["agreeing"] = out.obs["omics_cl_label"].astype(str).to_numpy()
    table = tl.check_annotations(out, "agreeing", gene_activity=activity)
    assert table.empty and {"atlas_label", "transferred_label", "estimated_precision", "markers"} <= set(table.columns)
    assert not out.obs["omics_cl_annotation_flag"].any()
    assert out.uns["omics_cl"]["check_annotations"]["n_groups"] == 0
    # the atlas gives every cell of the model's second most frequent label the most frequent one (as a
    # curator who merged two types would): a wrong label on a whole group
    transferred = out.obs["omics_cl_label"].astype(str)
    largest, second = transferred.value_counts().index[:2]
    out.obs["atlas"] = transferred.to_numpy().astype(object)
    wrong = (transferred == second).to_numpy()
    out.obs.loc[wrong, "atlas"] = largest
    table = tl.check_annotations(out, "atlas", gene_activity=activity, n_markers=3, propagate_neighbors=0)
    direct = out.obs["omics_cl_annotation_flag"].to_numpy()
    assert direct.any() and not direct[~wrong].any()
    assert table.iloc[0][["atlas_label", "transferred_label"]].tolist() == [largest, second]
    top = table.iloc[0]
    assert top["expected"] == 0  # nothing the other way round: the estimate rests on the probabilities
    assert top["estimated_precision"] == pytest.approx(1 - top["expected_from_probabilities"] / top["n_cells"])
    assert table["n_cells"].sum() == direct.sum() and table["n_propagated"].sum() == 0
    assert len(top["markers"].split(", ")) == 3
    assert (out.obs["omics_cl_suggested_label"].astype(str)[direct] == second).all()
    assert out.uns["omics_cl"]["check_annotations"]["estimated_precision"] == pytest.approx(
        (table["estimated_precision"] * table["n_cells"]).sum() / direct.sum())
    # by default flags also spread to cells whose same-label neighbours in the query's LSI are mostly flagged
    table = tl.check_annotations(out, "atlas", propagate_neighbors=15)
    flags = out.obs["omics_cl_annotation_flag"].to_numpy()
    record = out.uns["omics_cl"]["check_annotations"]
    assert record["propagate_rep"] == "scncl_lsi"
    assert (flags >= direct).all() and record["n_propagated"] == int((flags & ~direct).sum())
    assert (table["n_cells"] + table["n_propagated"]).sum() == flags.sum()
    assert (out.obs["omics_cl_suggested_label"].astype(str)[flags] == second).all()
    for rep in ("scncl_lsi", "X_scncl"):
        neighbors, _ = knn(out.obsm[rep], 16)
        expected, _ = tl.neighbour_flags(direct, out.obs["atlas"], np.where(direct, second, None), neighbors[:, 1:])
        tl.check_annotations(out, "atlas", propagate_rep=rep)
        assert (out.obs["omics_cl_annotation_flag"].to_numpy() == expected).all()
    with pytest.raises(ValueError, match="obsm\\['nope'\\]"):
        tl.check_annotations(out, "atlas", propagate_rep="nope")
    del out.obsm["scncl_lsi"]  # a transfer from before 2026-12-06 wrote no LSI: the latent spreads the flags
    tl.check_annotations(out, "atlas")
    assert out.uns["omics_cl"]["check_annotations"]["propagate_rep"] == "X_scncl"
    del out.obsm["X_scncl"]
    with pytest.raises(ValueError, match="propagate_neighbors=0"):
        tl.check_annotations(out, "atlas")
    with pytest.raises(ValueError, match="propagate_neighbors must be >= 0"):
        tl.check_annotations(out, "atlas", propagate_neighbors=-1)


def test_query_labels_never_reach_the_transfer(mop_split):
    """Permuting (and renaming) the query's own label column changes no prediction, embedding or score
    (defaults: neighbour vote and the peak-space classifier fitted to the query's transferred labels)."""
    ref, query, activity = mop_split
    params = dict(seed=1)
    shuffled = query.copy()
    shuffled.obs["cell_type"] = np.random.default_rng(0).permutation(query.obs["cell_type"].astype(str).to_numpy())
    shuffled.obs["atlas"] = "x"
    a, b = run_transfer(ref, query, activity, **params)[1], run_transfer(ref, shuffled, activity, **params)[1]
    assert np.array_equal(a.obsm["X_scncl"], b.obsm["X_scncl"])
    assert np.array_equal(a.obs["omics_cl_label"].astype(str), b.obs["omics_cl_label"].astype(str))
    assert np.array_equal(a.obs["omics_cl_confidence"], b.obs["omics_cl_confidence"])
    assert np.array_equal(a.obs["omics_cl_novelty"], b.obs["omics_cl_novelty"])


@pytest.mark.filterwarnings("error:Forward slashes")
def test_vote_probabilities_are_neighbour_shares(mop_split, tmp_path):
    ref, query, activity = mop_split
    out = run_transfer(ref, query, activity, epochs=2, prediction="knn", peak_weight=0.0, n_members=1, support_weight=0,
                       vote_share=1.0)[1]
    prob = get.transfer_probabilities(out)
    assert list(prob.columns) == list(out.uns["omics_cl"]["scncl"]["classes"])
    assert prob.index.equals(out.obs_names) and np.array_equal(prob.to_numpy(), out.obsm["scncl_probabilities"])
    out.write_h5ad(tmp_path / "query.h5ad")  # class names such as L2/3 are not h5 keys
    assert np.allclose(prob.to_numpy().sum(1), 1) and np.allclose(prob.to_numpy() * 30, np.round(prob.to_numpy() * 30))
    assert np.allclose(out.obs["omics_cl_confidence"], prob.to_numpy().max(1))
    with pytest.raises(ValueError, match="prediction"):
        run_transfer(ref, query, activity, epochs=1, prediction="vote")


def test_seed_variant_is_the_published_recipe(mop_split):
    """variant="seed": the seed's losses and its classifier's softmax (novelty = 1 - confidence);
    explicit parameters win over the variant."""
    out = run_transfer(*mop_split, variant="seed", epochs=2)[1]
    record = out.uns["omics_cl"]["scncl"]["params"]
    assert record["variant"] == "seed" and record["ncl_weight"] == 1.0 and not record["symmetric_nndr"]
    assert record["prediction"] == "classifier" and record["peak_weight"] == 0.0 and record["novelty_by"] == "cell"
    assert np.allclose(out.obs["omics_cl_novelty"], 1 - out.obs["omics_cl_confidence"])
    assert run_transfer(*mop_split, variant="seed", epochs=1, ncl_weight=0.5)[1].uns["omics_cl"]["scncl"]["params"][
        "ncl_weight"] == 0.5
    with pytest.raises(TypeError, match="unknown variant"):
        run_transfer(*mop_split, variant="paper")


def test_member_source_gives_each_member_its_own_batches():
    from omics_cl.data.sources import KEYS, ArraySource, MemberSource

    source = MemberSource(ArraySource(cell=np.arange(50)), 3, seed=1)
    batches = source.get(np.array([4, 9, 2]))[KEYS.MEMBERS]
    assert list(batches[0]["cell"]) == [4, 9, 2]  # member 0: the requested cells
    assert not np.array_equal(batches[1]["cell"], batches[2]["cell"])
    epoch = [np.concatenate([source.get(chunk)[KEYS.MEMBERS][i]["cell"] for chunk in np.array_split(np.arange(50), 5)])
             for i in range(3)]
    assert all(sorted(cells) == list(range(50)) for cells in epoch)  # every cell once per epoch, per member


def test_ensemble_averages_its_members(mop_split):
    """Two members: latents side by side (unit rows, so cosine similarity is the members' mean), votes are the
    members' mean; one member is the single seed model."""
    ref, query, activity = mop_split
    out = run_transfer(ref, query, activity, epochs=2, prediction="knn", peak_weight=0.0, n_members=2, support_weight=0,
                       vote_share=1.0)[1]
    z = out.obsm["X_scncl"]
    assert z.shape == (out.n_obs, 128) and np.allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)
    prob = out.obsm["scncl_probabilities"]
    assert np.allclose(prob * 60, np.round(prob * 60)) and not np.allclose(prob * 30, np.round(prob * 30))
    single = run_transfer(ref, query, activity, epochs=2, n_members=1)[1]
    assert single.obsm["X_scncl"].shape == (out.n_obs, 64)
    with pytest.raises(ValueError, match="n_members"):
        run_transfer(ref, query, activity, epochs=1, n_members=0)
