"""scncl's decision rules on a MOp subsample: the query's peak classifier, the class prior, novelty by cluster,
the label support and its weight."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import run_transfer

from omics_cl import get, tl


def test_peak_classifier_mixes_into_the_probabilities(mop_split):
    # the vote alone: after 3 epochs the classifier's softmax is too flat for a mixed probability to reach 0.8
    out = run_transfer(*mop_split, epochs=3, peak_weight=0.6, vote_share=1.0)[1]
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
    from omics_cl.data.lsi import tfidf
    from omics_cl.models.scncl_readout import peak_classifier

    rng = np.random.default_rng(0)
    lsi = rng.normal(size=(400, 5))
    labels = np.repeat([0, 1], 200)
    activity = sp.csr_matrix(rng.integers(0, 2, size=(400, 4)).astype(np.float32))
    counts = sp.csr_matrix(np.column_stack([labels * 2, rng.poisson(1.0, size=(400, 30))]).astype(np.float32))
    prob = np.full((400, 2), 0.1)
    prob[np.arange(400), labels] = 0.9
    without, _ = peak_classifier(lsi, prob, 0.8, activity)
    with_peaks, _ = peak_classifier(lsi, prob, 0.8, activity, tfidf(counts))
    assert np.mean(with_peaks.argmax(1) == labels) == 1.0 and np.mean(without.argmax(1) == labels) < 0.75


def test_peak_classifier_leaves_classes_it_was_not_fitted_to_to_the_transfer():
    """A class none of the confident cells has (a small type that never reaches ``min_vote``) keeps the transferred
    probability (``unfitted="transfer"``, the default); the fitted classes share the rest of each cell's mass in the
    classifier's proportions. ``"zero"`` (the rule before) gives it 0; an unknown rule is refused."""
    from omics_cl.models.scncl_readout import peak_classifier

    rng = np.random.default_rng(0)
    lsi = rng.normal(size=(300, 4))
    labels = np.repeat([0, 1], 150)
    prob = np.column_stack([np.where(labels == 0, 0.85, 0.05), np.where(labels == 1, 0.85, 0.05),
                            rng.uniform(0.05, 0.1, size=300)])
    prob /= prob.sum(1, keepdims=True)
    prob[:, 2] *= np.linspace(1, 3, 300)  # class 2's transferred probability varies, but never reaches 0.8
    prob /= prob.sum(1, keepdims=True)
    zero, n_cells = peak_classifier(lsi, prob, 0.8, unfitted="zero")
    kept, _ = peak_classifier(lsi, prob, 0.8)
    assert 0 < n_cells < 300 and prob[:, 2].max() < 0.8
    assert np.all(zero[:, 2] == 0) and np.allclose(zero.sum(1), 1)
    assert np.allclose(kept[:, 2], prob[:, 2]) and np.allclose(kept.sum(1), 1)
    assert np.allclose(kept[:, :2], zero[:, :2] * (1 - prob[:, 2:]))
    with pytest.raises(ValueError, match="unfitted"):
        peak_classifier(lsi, prob, 0.8, unfitted="drop")


def test_peak_classifier_runs_on_one_blas_thread(monkeypatch):
    """The query's classifier is fitted and applied with one BLAS thread whatever the caller allows, so its lbfgs stops
    at the same point on any machine (two OpenBLAS threads moved MOp's probabilities by up to 0.06)."""
    import sklearn.linear_model
    from threadpoolctl import threadpool_info, threadpool_limits

    from omics_cl.models.scncl_readout import peak_classifier

    seen = []

    class Spy(sklearn.linear_model.LogisticRegression):
        def fit(self, *args, **kwargs):
            seen.append([pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"])
            return super().fit(*args, **kwargs)

    monkeypatch.setattr(sklearn.linear_model, "LogisticRegression", Spy)
    rng = np.random.default_rng(0)
    lsi = rng.normal(size=(300, 5))
    prob = rng.dirichlet(np.ones(3) * 0.3, size=300)
    with threadpool_limits(limits=2, user_api="blas"):
        two, _ = peak_classifier(lsi, prob, 0.5)
    with threadpool_limits(limits=1, user_api="blas"):
        one, _ = peak_classifier(lsi, prob, 0.5)
    assert len(seen) == 2 and all(threads == [1] * len(threads) and threads for threads in seen)
    assert np.array_equal(one, two)


def test_peak_tfidf_needs_the_query_tfidf():
    """Mapping a query without its peaks' TF-IDF is refused when the classifier reads it."""
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
    with pytest.raises(ValueError, match="TF-IDF of the query's peaks"):
        map_query(model, query, config, Context(0))
    with pytest.raises(ValueError, match="class signatures"):  # nor without the reference's class signatures
        map_query(model, dataclasses.replace(query, class_signatures=None), config, Context(0))


def test_vote_share_mixes_the_neighbour_vote_with_the_classifier(mop_split):
    """The same training: the probabilities are ``vote_share`` x the neighbour vote + the rest x the classifier's
    softmax (``vote_share=0`` is ``prediction="classifier"``); a share outside [0, 1] is refused before training."""
    ref, query, activity = mop_split
    plain = {"n_members": 1, "peak_weight": 0.0, "support_weight": 0.0, "epochs": 2}
    vote = run_transfer(ref, query, activity, vote_share=1.0, **plain)[1].obsm["scncl_probabilities"]
    softmax = run_transfer(ref, query, activity, prediction="classifier", **plain)[1].obsm["scncl_probabilities"]
    assert np.allclose(vote * 10, np.round(vote * 10), atol=1e-5)  # shares of 10 neighbours
    assert np.array_equal(run_transfer(ref, query, activity, vote_share=0.0, **plain)[1].obsm["scncl_probabilities"],
                          softmax)
    mixed = run_transfer(ref, query, activity, vote_share=0.25, **plain)[1].obsm["scncl_probabilities"]
    assert np.allclose(mixed, 0.25 * vote + 0.75 * softmax, atol=1e-6)
    for share in (-0.1, 1.5):
        with pytest.raises(ValueError, match="vote_share"):
            run_transfer(ref, query, activity, epochs=1, vote_share=share)


def test_unknown_peak_features_refused_before_training(mop_split):
    with pytest.raises(ValueError, match="peak_features"):
        run_transfer(*mop_split, epochs=1, peak_features="peaks")


def test_class_prior_power_divides_by_reference_shares(mop_split):
    """The same training; the probabilities divided by the reference's class shares ** power, renormalised;
    the classifier's novelty unchanged."""
    ref, query, activity = mop_split
    plain = run_transfer(ref, query, activity, epochs=2, n_members=1, class_prior_power=0)[1]
    adjusted = run_transfer(ref, query, activity, epochs=2, n_members=1, class_prior_power=0.5)[1]
    classes = plain.uns["omics_cl"]["scncl"]["classes"]
    shares = ref.obs["cell_type"].astype(str).value_counts(normalize=True)[classes].to_numpy()
    expected = plain.obsm["scncl_probabilities"] / np.sqrt(shares)
    assert np.allclose(adjusted.obsm["scncl_probabilities"], expected / expected.sum(1, keepdims=True), atol=1e-6)
    assert np.array_equal(plain.obs["omics_cl_confidence_novelty"], adjusted.obs["omics_cl_confidence_novelty"])
    assert not np.array_equal(plain.obs["omics_cl_label"], adjusted.obs["omics_cl_label"])


def test_novelty_by_cluster_is_the_cluster_mean_of_cell_novelty(mop_split):
    import pandas as pd

    cell = run_transfer(*mop_split, epochs=2, novelty_by="cell", novelty_support=False)[1]
    by_cluster = run_transfer(*mop_split, epochs=2, novelty_support=False)[1]
    clusters = by_cluster.obs["omics_cl_query_cluster"].to_numpy()
    expected = pd.Series(cell.obs["omics_cl_novelty"].to_numpy()).groupby(clusters).transform("mean").to_numpy()
    assert np.allclose(by_cluster.obs["omics_cl_novelty"], expected)
    assert by_cluster.uns["omics_cl"]["scncl"]["params"]["novelty_by"] == "cluster"
    with pytest.raises(ValueError, match="novelty_by"):
        run_transfer(*mop_split, epochs=1, novelty_by="cells")


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
    support for its label before the support weighting (its gene activity weighted by the reference's signature of
    that class; ``support_rank_label="final"``: for the label written, the same training); the 10% most novel
    cells are flagged (``novelty_rate``). ``novelty_rate=None`` (same training) flags by the Otsu rule: the former
    above its Otsu threshold and the support below the query's median. ``novelty_support=False`` gives the
    classifier's score alone; a rank weight outside [0, 1] or a rate outside [0, 1) is refused before training."""
    from omics_cl.data.signatures import label_support, quantile_rank

    ref, query, activity = mop_split
    out = run_transfer(ref, query, activity, epochs=2)[1]
    otsu = run_transfer(ref, query, activity, epochs=2, novelty_rate=None)[1]
    alone = run_transfer(ref, query, activity, epochs=2, novelty_support=False, novelty_rate=None)[1]
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
    unweighted = run_transfer(ref, query, activity, epochs=2, support_weight=0.0)[1]
    final = run_transfer(ref, query, activity, epochs=2, support_rank_label="final")[1]
    assert np.array_equal(final.obs["omics_cl_label"], obs["omics_cl_label"])
    for adata, labelled in ((out, unweighted), (final, final)):
        assigned = classes.get_indexer(labelled.obs["omics_cl_label"].astype(str))
        assert np.allclose(adata.obs["omics_cl_label_support"],
                           label_support(_class_support(ref, activity, classes), assigned), atol=1e-6)
    assert not np.array_equal(final.obs["omics_cl_label_support"], support)
    with pytest.raises(ValueError, match="support_rank_label"):
        run_transfer(ref, query, activity, epochs=1, support_rank_label="weighted")
    with pytest.raises(ValueError, match="peak_unfitted"):
        run_transfer(ref, query, activity, epochs=1, peak_unfitted="uniform")
    for rate in (1.0, -0.1, "10%"):
        with pytest.raises(ValueError, match="novelty_rate"):
            run_transfer(ref, query, activity, epochs=1, novelty_rate=rate)
    with pytest.raises(ValueError, match="support_rank_weight"):
        run_transfer(ref, query, activity, epochs=1, support_rank_weight=1.5)


def test_support_weight_multiplies_the_probabilities(mop_split):
    """The same training: the probabilities times exp(support_weight * each class's support standardised over the
    query), renormalised; a negative weight is refused before training."""
    from omics_cl.data.signatures import standardised

    ref, query, activity = mop_split
    plain = run_transfer(ref, query, activity, epochs=2, n_members=1, support_weight=0.0)[1]
    weighted = run_transfer(ref, query, activity, epochs=2, n_members=1, support_weight=0.5)[1]
    classes = pd.Index(plain.uns["omics_cl"]["scncl"]["classes"])
    expected = plain.obsm["scncl_probabilities"] * np.exp(0.5 * standardised(_class_support(ref, activity, classes)))
    assert np.allclose(weighted.obsm["scncl_probabilities"], expected / expected.sum(1, keepdims=True), atol=1e-6)
    assert np.array_equal(plain.obs["omics_cl_confidence_novelty"], weighted.obs["omics_cl_confidence_novelty"])
    with pytest.raises(ValueError, match="support_weight"):
        run_transfer(ref, query, activity, epochs=1, support_weight=-1.0)


def test_class_support_is_written_and_read_by_the_annotation_check(mop_split):
    """The transfer writes each cell's standardised support for each class (obsm, read back by class name), and
    check_annotations reports the support position of each group and applies the rule; a transfer without
    signatures writes none, and the check goes on without the rule."""
    from omics_cl.data.signatures import standardised

    ref, query, activity = mop_split
    out = run_transfer(ref, query, activity, epochs=2, n_members=1)[1]
    classes = pd.Index(out.uns["omics_cl"]["scncl"]["classes"])
    support = get.transfer_class_support(out)
    assert support.columns.equals(classes) and support.index.equals(out.obs_names)
    assert np.allclose(support.to_numpy(), standardised(_class_support(ref, activity, classes)), atol=1e-5)
    out.obs["atlas"] = out.obs["cell_type"].astype(str).where(out.obs["cell_type"] != "Mis")
    table = tl.check_annotations(out, "atlas", min_enrichment=0, min_agreement=0, propagate_neighbors=0)
    assert "support_position" in table.columns
    assert out.uns["omics_cl"]["check_annotations"]["min_support_position"] == 0.7
    bare = run_transfer(ref, query, activity, epochs=1, n_members=1, support_weight=0.0, novelty_support=False)[1]
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
