import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from omics_cl import datasets, get, pp, tl

FAST = dict(epochs=4, batch_size=128, hidden=32)


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


def _run(ref, query, activity, **kw):
    ref, query = ref.copy(), query.copy()
    tl.transfer_labels(ref, query, "cell_type", gene_activity=activity, progress=False, **{**FAST, **kw})
    return ref, query


def test_end_to_end_on_mop_subsample(mop_split):
    ref, query, activity = mop_split
    ref_out, out = _run(ref, query, activity, epochs=40, hidden=256)
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
    a = _run(*mop_split, seed=2)[1]
    b = _run(*mop_split, seed=2)[1]
    assert np.array_equal(a.obsm["X_scncl"], b.obsm["X_scncl"])
    assert np.array_equal(a.obs["omics_cl_label"], b.obs["omics_cl_label"])


def test_unlabelled_reference_cells_left_out_and_counted(mop_split):
    ref, query, activity = mop_split
    ref = ref.copy()
    ref.obs["cell_type"] = ref.obs["cell_type"].astype(object)
    ref.obs.iloc[:10, ref.obs.columns.get_loc("cell_type")] = np.nan
    ref_out, out = _run(ref, query, activity, epochs=1)
    assert out.uns["omics_cl"]["scncl"]["n_unlabelled_reference_cells"] == 10
    assert np.isnan(ref_out.obsm["X_scncl"][:10]).all() and not np.isnan(ref_out.obsm["X_scncl"][10:]).any()


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
    assert _nothing_written(q) and _nothing_written(non_count)


def test_check_annotations_finds_relabelled_group(mop_split):
    ref, query, activity = mop_split
    _, out = _run(ref, query, activity, epochs=10)
    with pytest.raises(ValueError, match="run omics_cl.tl.transfer_labels first"):
        tl.check_annotations(query.copy(), "cell_type")
    with pytest.raises(ValueError, match="atlas label column 'nope'"):
        tl.check_annotations(out, "nope")
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
    # by default flags also spread to cells whose same-label neighbours in X_scncl are mostly flagged
    table = tl.check_annotations(out, "atlas", propagate_neighbors=15)
    flags = out.obs["omics_cl_annotation_flag"].to_numpy()
    record = out.uns["omics_cl"]["check_annotations"]
    assert (flags >= direct).all() and record["n_propagated"] == int((flags & ~direct).sum())
    assert (table["n_cells"] + table["n_propagated"]).sum() == flags.sum()
    assert (out.obs["omics_cl_suggested_label"].astype(str)[flags] == second).all()
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
    a, b = _run(ref, query, activity, **params)[1], _run(ref, shuffled, activity, **params)[1]
    assert np.array_equal(a.obsm["X_scncl"], b.obsm["X_scncl"])
    assert np.array_equal(a.obs["omics_cl_label"].astype(str), b.obs["omics_cl_label"].astype(str))
    assert np.array_equal(a.obs["omics_cl_confidence"], b.obs["omics_cl_confidence"])
    assert np.array_equal(a.obs["omics_cl_novelty"], b.obs["omics_cl_novelty"])


@pytest.mark.filterwarnings("error:Forward slashes")
def test_vote_probabilities_are_neighbour_shares(mop_split, tmp_path):
    ref, query, activity = mop_split
    out = _run(ref, query, activity, epochs=2, prediction="knn", peak_weight=0.0, n_members=1, support_weight=0)[1]
    prob = get.transfer_probabilities(out)
    assert list(prob.columns) == list(out.uns["omics_cl"]["scncl"]["classes"])
    assert prob.index.equals(out.obs_names) and np.array_equal(prob.to_numpy(), out.obsm["scncl_probabilities"])
    out.write_h5ad(tmp_path / "query.h5ad")  # class names such as L2/3 are not h5 keys
    assert np.allclose(prob.to_numpy().sum(1), 1) and np.allclose(prob.to_numpy() * 30, np.round(prob.to_numpy() * 30))
    assert np.allclose(out.obs["omics_cl_confidence"], prob.to_numpy().max(1))
    with pytest.raises(ValueError, match="prediction"):
        _run(ref, query, activity, epochs=1, prediction="vote")


def test_seed_variant_is_the_published_recipe(mop_split):
    """variant="seed": the seed's losses and its classifier's softmax (novelty = 1 - confidence);
    explicit parameters win over the variant."""
    out = _run(*mop_split, variant="seed", epochs=2)[1]
    record = out.uns["omics_cl"]["scncl"]["params"]
    assert record["variant"] == "seed" and record["ncl_weight"] == 1.0 and not record["symmetric_nndr"]
    assert record["prediction"] == "classifier" and record["peak_weight"] == 0.0 and record["novelty_by"] == "cell"
    assert np.allclose(out.obs["omics_cl_novelty"], 1 - out.obs["omics_cl_confidence"])
    assert _run(*mop_split, variant="seed", epochs=1, ncl_weight=0.5)[1].uns["omics_cl"]["scncl"]["params"][
        "ncl_weight"] == 0.5
    with pytest.raises(TypeError, match="unknown variant"):
        _run(*mop_split, variant="paper")


def test_peak_classifier_mixes_into_the_probabilities(mop_split):
    out = _run(*mop_split, epochs=3, peak_weight=0.6)[1]
    record = out.uns["omics_cl"]["scncl"]["params"]
    assert 0 < record["n_peak_training_cells"] < out.n_obs
    prob = out.obsm["scncl_probabilities"]
    assert np.allclose(prob.sum(1), 1, atol=1e-5)
    assert not np.allclose(prob * 30, np.round(prob * 30))  # no longer pure neighbour-vote shares


def test_peak_classifier_reads_gene_activity_beside_lsi():
    """Two classes that the LSI cannot tell apart but one activity feature can: with the activity beside the
    LSI (the default peak_features) the query's classifier separates them; on the LSI alone it cannot."""
    from omics_cl.models.scncl_readout import peak_classifier

    rng = np.random.default_rng(0)
    lsi = rng.normal(size=(400, 5))
    labels = np.repeat([0, 1], 200)
    activity = sp.csr_matrix(np.column_stack([labels, rng.integers(0, 2, size=(400, 3))]).astype(np.float32))
    prob = np.full((400, 2), 0.1)
    prob[np.arange(400), labels] = 0.9
    lsi_only, n_cells = peak_classifier(lsi, prob, 0.8)
    both, _ = peak_classifier(lsi, prob, 0.8, activity)
    assert n_cells == 400
    assert np.mean(both.argmax(1) == labels) == 1.0 and np.mean(lsi_only.argmax(1) == labels) < 0.75


def test_peak_classifier_reads_peak_tfidf_beside_lsi_and_activity():
    """Two classes that neither the LSI nor the activity features tell apart but one peak does: with the peaks'
    TF-IDF beside them (the default peak_features) the query's classifier separates them."""
    from omics_cl.models.scncl_readout import peak_classifier

    rng = np.random.default_rng(0)
    lsi = rng.normal(size=(400, 5))
    labels = np.repeat([0, 1], 200)
    activity = sp.csr_matrix(rng.integers(0, 2, size=(400, 4)).astype(np.float32))
    counts = sp.csr_matrix(np.column_stack([labels * 2, rng.poisson(1.0, size=(400, 30))]).astype(np.float32))
    prob = np.full((400, 2), 0.1)
    prob[np.arange(400), labels] = 0.9
    without, _ = peak_classifier(lsi, prob, 0.8, activity)
    with_peaks, _ = peak_classifier(lsi, prob, 0.8, activity, counts)
    assert np.mean(with_peaks.argmax(1) == labels) == 1.0 and np.mean(without.argmax(1) == labels) < 0.75


def test_peak_tfidf_needs_the_query_counts():
    """Mapping a query without its peak counts is refused when the classifier reads them."""
    import dataclasses

    from omics_cl.data.transfer import QueryInputs
    from omics_cl.models import Context
    from omics_cl.models.scncl import SCNCLConfig, build, encode, map_query

    config = SCNCLConfig(n_members=1)
    model = build(6, 2, config, 0)
    x = np.random.default_rng(0).random((20, 6)).astype(np.float32)
    signatures = np.zeros((2, 6), np.float32)
    query = QueryInputs(x, np.random.default_rng(1).normal(size=(20, 3)), encode(model, x), np.repeat([0, 1], 10), 2,
                        class_signatures=signatures)
    with pytest.raises(ValueError, match="peak counts"):
        map_query(model, query, config, Context(0))
    with pytest.raises(ValueError, match="class signatures"):  # nor without the reference's class signatures
        map_query(model, dataclasses.replace(query, class_signatures=None), config, Context(0))


def test_unknown_peak_features_refused_before_training(mop_split):
    with pytest.raises(ValueError, match="peak_features"):
        _run(*mop_split, epochs=1, peak_features="peaks")


def test_class_prior_power_divides_by_reference_shares(mop_split):
    """The same training; the probabilities divided by the reference's class shares ** power, renormalised;
    the classifier's novelty unchanged."""
    ref, query, activity = mop_split
    plain = _run(ref, query, activity, epochs=2, n_members=1, class_prior_power=0)[1]
    adjusted = _run(ref, query, activity, epochs=2, n_members=1, class_prior_power=0.5)[1]
    classes = plain.uns["omics_cl"]["scncl"]["classes"]
    shares = ref.obs["cell_type"].astype(str).value_counts(normalize=True)[classes].to_numpy()
    expected = plain.obsm["scncl_probabilities"] / np.sqrt(shares)
    assert np.allclose(adjusted.obsm["scncl_probabilities"], expected / expected.sum(1, keepdims=True), atol=1e-6)
    assert np.array_equal(plain.obs["omics_cl_confidence_novelty"], adjusted.obs["omics_cl_confidence_novelty"])
    assert not np.array_equal(plain.obs["omics_cl_label"], adjusted.obs["omics_cl_label"])


def test_novelty_by_cluster_is_the_cluster_mean_of_cell_novelty(mop_split):
    import pandas as pd

    cell = _run(*mop_split, epochs=2, novelty_by="cell", novelty_support=False)[1]
    by_cluster = _run(*mop_split, epochs=2, novelty_support=False)[1]
    clusters = by_cluster.obs["omics_cl_query_cluster"].to_numpy()
    expected = pd.Series(cell.obs["omics_cl_novelty"].to_numpy()).groupby(clusters).transform("mean").to_numpy()
    assert np.allclose(by_cluster.obs["omics_cl_novelty"], expected)
    assert by_cluster.uns["omics_cl"]["scncl"]["params"]["novelty_by"] == "cluster"
    with pytest.raises(ValueError, match="novelty_by"):
        _run(*mop_split, epochs=1, novelty_by="cells")


def _class_support(ref, activity, classes: pd.Index) -> np.ndarray:
    """Query cells x classes: each class's support by the cell's gene activity, from the reference's signatures
    (as the transfer computes it, here from its public pieces)."""
    from omics_cl.data.signatures import class_signatures, class_support
    from omics_cl.data.transfer import transfer_features

    rna_x, atac_x, _, _ = transfer_features(ref, activity)
    signatures = class_signatures(rna_x, classes.get_indexer(ref.obs["cell_type"].astype(str)), len(classes))
    return class_support(atac_x, signatures)


def test_novelty_ranks_the_classifier_score_with_the_label_support(mop_split):
    """Default novelty: the quantile ranks of the classifier's cluster novelty and (weight 0.25) of the cell's lack of
    support for its label (its gene activity weighted by the reference's signature of that class); the 10% most novel
    cells are flagged (``novelty_rate``). ``novelty_rate=None`` (same training) flags by the Otsu rule: the former
    above its Otsu threshold and the support below the query's median. ``novelty_support=False`` gives the
    classifier's score alone; a rank weight outside [0, 1] or a rate outside [0, 1) is refused before training."""
    from omics_cl.data.signatures import label_support, quantile_rank

    ref, query, activity = mop_split
    out = _run(ref, query, activity, epochs=2)[1]
    otsu = _run(ref, query, activity, epochs=2, novelty_rate=None)[1]
    alone = _run(ref, query, activity, epochs=2, novelty_support=False, novelty_rate=None)[1]
    obs, record = out.obs, out.uns["omics_cl"]["scncl"]
    score, support = obs["omics_cl_confidence_novelty"].to_numpy(), obs["omics_cl_label_support"].to_numpy()
    assert np.array_equal(score, alone.obs["omics_cl_novelty"].to_numpy())
    novelty = obs["omics_cl_novelty"].to_numpy()
    assert np.array_equal(novelty, 0.75 * quantile_rank(score) + 0.25 * quantile_rank(-support))
    assert (record["novelty_rule"], record["novelty_rate"]) == ("rate", 0.1)
    assert record["novelty_threshold"] == tl.rate_threshold(novelty, 0.1)
    assert np.array_equal(obs["omics_cl_is_novel"], novelty > record["novelty_threshold"])
    assert 0.09 * len(novelty) < obs["omics_cl_is_novel"].sum() <= 0.1 * len(novelty)
    threshold = otsu.uns["omics_cl"]["scncl"]["novelty_threshold"]
    assert otsu.uns["omics_cl"]["scncl"]["novelty_rule"] == "otsu"
    assert np.array_equal(otsu.obs["omics_cl_novelty"], novelty)
    assert threshold == tl.otsu_threshold(score) == alone.uns["omics_cl"]["scncl"]["novelty_threshold"]
    assert np.array_equal(otsu.obs["omics_cl_is_novel"], (score > threshold) & (support < np.median(support)))
    assert np.array_equal(alone.obs["omics_cl_is_novel"], score > threshold)
    assert "omics_cl_label_support" not in alone.obs
    classes = pd.Index(record["classes"])
    assigned = classes.get_indexer(obs["omics_cl_label"].astype(str))
    assert np.allclose(support, label_support(_class_support(ref, activity, classes), assigned), atol=1e-6)
    for rate in (1.0, -0.1, "10%"):
        with pytest.raises(ValueError, match="novelty_rate"):
            _run(ref, query, activity, epochs=1, novelty_rate=rate)
    with pytest.raises(ValueError, match="support_rank_weight"):
        _run(ref, query, activity, epochs=1, support_rank_weight=1.5)


def test_support_weight_multiplies_the_probabilities(mop_split):
    """The same training: the probabilities times exp(support_weight * each class's support standardised over the
    query), renormalised; a negative weight is refused before training."""
    from omics_cl.data.signatures import standardised

    ref, query, activity = mop_split
    plain = _run(ref, query, activity, epochs=2, n_members=1, support_weight=0.0)[1]
    weighted = _run(ref, query, activity, epochs=2, n_members=1, support_weight=0.5)[1]
    classes = pd.Index(plain.uns["omics_cl"]["scncl"]["classes"])
    expected = plain.obsm["scncl_probabilities"] * np.exp(0.5 * standardised(_class_support(ref, activity, classes)))
    assert np.allclose(weighted.obsm["scncl_probabilities"], expected / expected.sum(1, keepdims=True), atol=1e-6)
    assert np.array_equal(plain.obs["omics_cl_confidence_novelty"], weighted.obs["omics_cl_confidence_novelty"])
    with pytest.raises(ValueError, match="support_weight"):
        _run(ref, query, activity, epochs=1, support_weight=-1.0)


def test_class_support_is_written_and_read_by_the_annotation_check(mop_split):
    """The transfer writes each cell's standardised support for each class (obsm, read back by class name), and
    check_annotations reports the support position of each group and applies the rule; a transfer without
    signatures writes none, and the check goes on without the rule."""
    from omics_cl.data.signatures import standardised

    ref, query, activity = mop_split
    out = _run(ref, query, activity, epochs=2, n_members=1)[1]
    classes = pd.Index(out.uns["omics_cl"]["scncl"]["classes"])
    support = get.transfer_class_support(out)
    assert support.columns.equals(classes) and support.index.equals(out.obs_names)
    assert np.allclose(support.to_numpy(), standardised(_class_support(ref, activity, classes)), atol=1e-5)
    out.obs["atlas"] = out.obs["cell_type"].astype(str).where(out.obs["cell_type"] != "Mis")
    table = tl.check_annotations(out, "atlas", min_enrichment=0, min_agreement=0, propagate_neighbors=0)
    assert "support_position" in table.columns
    assert out.uns["omics_cl"]["check_annotations"]["min_support_position"] == 0.7
    bare = _run(ref, query, activity, epochs=1, n_members=1, support_weight=0.0, novelty_support=False)[1]
    assert get.transfer_class_support(bare) is None and "scncl_class_support" not in bare.obsm
    bare.obs["atlas"] = out.obs["atlas"]
    assert "support_position" not in tl.check_annotations(bare, "atlas").columns
    assert bare.uns["omics_cl"]["check_annotations"].get("min_support_position") is None


def test_label_support_is_higher_for_a_cells_own_type(mop_split):
    """On real data: a query cell's gene activity supports its true type more than a wrong one (labels read
    here for scoring only)."""
    from omics_cl.data.signatures import label_support

    ref, query, activity = mop_split
    classes = pd.Index(sorted(ref.obs["cell_type"].astype(str).unique()))
    truth = classes.get_indexer(query.obs["cell_type"].astype(str))
    known = truth >= 0
    wrong = (truth + np.random.default_rng(0).integers(1, len(classes), len(truth))) % len(classes)
    support = _class_support(ref, activity, classes)[known]
    own, other = label_support(support, truth[known]), label_support(support, wrong[known])
    assert np.mean(own > other) > 0.65, np.mean(own > other)  # chance: 0.5; measured .72 (sparse ATAC, close types)


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
    out = _run(ref, query, activity, epochs=2, prediction="knn", peak_weight=0.0, n_members=2, support_weight=0)[1]
    z = out.obsm["X_scncl"]
    assert z.shape == (out.n_obs, 128) and np.allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)
    prob = out.obsm["scncl_probabilities"]
    assert np.allclose(prob * 60, np.round(prob * 60)) and not np.allclose(prob * 30, np.round(prob * 30))
    single = _run(ref, query, activity, epochs=2, n_members=1)[1]
    assert single.obsm["X_scncl"].shape == (out.n_obs, 64)
    with pytest.raises(ValueError, match="n_members"):
        _run(ref, query, activity, epochs=1, n_members=0)
