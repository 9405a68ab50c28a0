"""The learned ATAC latent of label transfer: its guidance graph, its batches, and ``learned_atac=True`` on MOp
(no label reaches it, same seed same latent, bad settings refused before any work)."""
import anndata as ad
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scipy.special
import scipy.stats

from omics_cl import datasets, tl
from omics_cl.core.guided_vae import nb_reconstruction
from omics_cl.data import gene_activity as ga
from omics_cl.data.guidance import UnpairedSource, guidance_graph
from tests.conftest import run_transfer

GENES = pd.DataFrame({"chrom": ["chr1", "chr1"], "start": [1000, 5000], "end": [2000, 6000],
                      "gene_name": ["A", "B"], "strand": ["+", "-"]})
PEAKS = ga.peak_coordinates(pd.DataFrame(index=["chr1:1500-1600", "chr1:3000-3100", "chr1:5500-5600"]),
                            ["chr1:1500-1600", "chr1:3000-3100", "chr1:5500-5600"])
FAST_LATENT = {"epochs": 5, "peak_subset": 512}


def test_guidance_graph_links_genes_to_overlapping_peaks():
    graph = guidance_graph(PEAKS, GENES, ["B", "X", "A"])  # vertices: B, X, A, then the 3 peaks
    edges = set(zip(graph.src.tolist(), graph.dst.tolist()))
    links = {(0, 5), (5, 0), (2, 3), (3, 2)}
    assert edges == links | {(v, v) for v in range(6)}
    degree = np.bincount(graph.dst, minlength=6)
    assert np.allclose(graph.weight, 1 / np.sqrt(degree[graph.src] * degree[graph.dst]))
    with pytest.raises(ValueError, match="no peak overlaps any of the 1 reference genes"):
        guidance_graph(PEAKS, GENES, ["X"])


def test_nb_reconstruction_is_the_negative_binomial_without_its_constant():
    rng = np.random.default_rng(0)
    z, v = rng.normal(size=(6, 3)), rng.normal(size=(5, 3))
    scale, bias, log_theta = rng.normal(size=5), rng.normal(size=5), rng.normal(size=5)
    counts, library = rng.poisson(3, (6, 5)).astype(float), rng.uniform(5, 20, 6)
    mean = scipy.special.softmax(np.log1p(np.exp(scale)) * (z @ v.T) + bias, 1) * library[:, None]
    expected = -scipy.stats.nbinom.logpmf(counts, np.exp(log_theta), np.exp(log_theta) / (np.exp(log_theta) + mean))
    expected -= scipy.special.gammaln(counts + 1)
    got = nb_reconstruction(*map(jnp.asarray, (z, v, scale, bias, log_theta, counts, library)))
    assert float(got) == pytest.approx(expected.mean(), rel=1e-4)


def test_unpaired_batches_are_a_function_of_their_indices():
    rng = np.random.default_rng(0)
    graph = guidance_graph(PEAKS, GENES, ["A", "B"])
    source = UnpairedSource(rng.normal(size=(7, 4)), sp.random(7, 2, 0.5, random_state=0) * 10,
                            rng.normal(size=(5, 3)), sp.random(5, 3, 0.5, random_state=1) * 10, graph,
                            peak_subset=2, edge_batch=8, negatives=3)
    assert source.n_obs == 7
    first, again, other = source.get(np.array([6, 1, 3])), source.get(np.array([6, 1, 3])), source.get(np.array([6, 2]))
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert np.array_equal(first["rna_x"], source.rna_x[[6, 1, 3]])
    assert np.array_equal(first["atac_x"], source.atac_x[[1, 1, 3]])  # ATAC cell i mod 5
    assert first["atac_counts"].shape == (3, 2) and first["edges"].shape == (8, 2)
    assert first["negatives"].shape == (8, 3) and other["rna_x"].shape == (2, 4)


@pytest.fixture(scope="module")
def learned(mop_split, tmp_path_factory):
    """The transfer with the learned latent, its model saved in ``kw["save_model"]``."""
    ref, query, activity = mop_split
    kw = dict(seed=1, learned_atac=FAST_LATENT, annotation=datasets.annotation_path("mm10_ensembl_genes.tsv.gz"),
              save_model=str(tmp_path_factory.mktemp("learned") / "model"))
    return kw, run_transfer(ref, query, activity, **kw)


def test_learned_latent_joins_the_query_graph(learned, tmp_path):
    _, (_, query) = learned
    latent = query.obsm["X_atac_latent"]
    record = query.uns["omics_cl"]["scncl"]["learned_atac"]
    assert latent.shape == (query.n_obs, 50) and np.isfinite(latent).all()
    assert np.allclose(latent.mean(0), 0, atol=1e-4) and record["config"]["epochs"] == 5
    assert record["n_graph_edges"] > 1000 and np.isfinite(list(record["final"].values())).all()
    assert query.obs["omics_cl_label"].notna().all()
    query.write_h5ad(tmp_path / "q.h5ad")  # the record is h5ad-safe
    assert ad.read_h5ad(tmp_path / "q.h5ad").uns["omics_cl"]["scncl"]["learned_atac"]["config"]["n_latent"] == 50


@pytest.mark.filterwarnings("ignore:fewer than 2 classes")  # permuted reference labels: few confident cells
def test_no_label_reaches_the_latent_and_same_seed_same_latent(mop_split, learned):
    """The reference's labels permuted and the query's labels permuted: the latent and the query's predictions
    from the same labels are bit for bit those of the first run."""
    ref, query, activity = mop_split
    kw, (_, first) = learned
    shuffled_ref, shuffled_query = ref.copy(), query.copy()
    rng = np.random.default_rng(0)
    shuffled_ref.obs["cell_type"] = rng.permutation(ref.obs["cell_type"].astype(str).to_numpy())
    shuffled_query.obs["cell_type"] = rng.permutation(query.obs["cell_type"].astype(str).to_numpy())
    kw = {k: v for k, v in kw.items() if k != "save_model"}
    again = run_transfer(ref, shuffled_query, activity, **kw)[1]
    assert np.array_equal(again.obsm["X_atac_latent"], first.obsm["X_atac_latent"])
    assert np.array_equal(again.obs["omics_cl_label"].astype(str), first.obs["omics_cl_label"].astype(str))
    relabelled = run_transfer(shuffled_ref, query, activity, **kw)[1]
    assert np.array_equal(relabelled.obsm["X_atac_latent"], first.obsm["X_atac_latent"])


@pytest.mark.parametrize("settings, message", [
    (dict(learned_atac=True), "give annotation"),
    (dict(learned_atac={"epoch": 3}, annotation="x.tsv"), "unknown keys"),
    (dict(learned_atac="yes", annotation="x.tsv"), "learned_atac must be"),
    (dict(learned_atac={"epochs": 0}, annotation="x.tsv"), "learned_atac\\['epochs'\\] must be a positive integer"),
])
def test_bad_learned_atac_settings_refused_before_any_work(mop_split, settings, message):
    ref, query, activity = mop_split
    ref, target = ref.copy(), query.copy()
    with pytest.raises(ValueError, match=message):
        tl.transfer_labels(ref, target, "cell_type", gene_activity=activity, progress=False, **settings)
    assert "omics_cl_label" not in target.obs and "X_scncl" not in ref.obsm


def test_saved_model_maps_its_training_query_bit_for_bit(mop_split, learned):
    _, query, activity = mop_split
    kw, (_, first) = learned
    mapped = query.copy()
    tl.map_query(mapped, kw["save_model"], gene_activity=activity)
    assert np.array_equal(mapped.obsm["X_atac_latent"], first.obsm["X_atac_latent"])
    assert np.array_equal(mapped.obs["omics_cl_label"].astype(str), first.obs["omics_cl_label"].astype(str))
    assert np.array_equal(mapped.obs["omics_cl_novelty"], first.obs["omics_cl_novelty"])


def test_new_query_peaks_matched_by_name(mop_split, learned):
    """Peaks reordered give the same latent; peaks missing are zero with a warning; no shared peak is refused."""
    _, query, activity = mop_split
    kw, (_, first) = learned
    reordered = query[:, np.random.default_rng(0).permutation(query.n_vars)].copy()
    tl.map_query(reordered, kw["save_model"], gene_activity=activity)
    assert np.array_equal(reordered.obsm["X_atac_latent"], first.obsm["X_atac_latent"])
    fewer = query[:, 100:].copy()
    with pytest.warns(UserWarning, match="100 of the model's .* peaks are not in the query"):
        tl.map_query(fewer, kw["save_model"], gene_activity=activity)
    assert np.isfinite(fewer.obsm["X_atac_latent"]).all()
    renamed = query.copy()
    renamed.var_names = [f"chr1:{10 * i}-{10 * i + 5}" for i in range(query.n_vars)]
    with pytest.raises(ValueError, match="shares no peak with the model's training query"):
        tl.map_query(renamed, kw["save_model"], gene_activity=activity)



def test_model_saved_before_the_tfidf_scale_maps_at_signac_scale(mop_split, tmp_path):
    """A learned-latent model saved before 2026-12-06 recorded no TF-IDF scale (neither the rule in model.json nor
    the training query's LSI projection in arrays.npz): it was trained at Signac's 1e4, and maps its training query
    bit for bit at that scale, not at the adaptive one."""
    import hashlib
    import json

    from omics_cl.data import lsi

    ref, query, activity = mop_split
    path = tmp_path / "model"
    kw = dict(seed=2, learned_atac=FAST_LATENT, annotation=datasets.annotation_path("mm10_ensembl_genes.tsv.gz"),
              tfidf_scale=lsi.SIGNAC_SCALE)
    _, first = run_transfer(ref, query, activity, save_model=str(path), **kw)
    with np.load(path / "arrays.npz") as saved:
        arrays = {k: saved[k] for k in saved.files if not k.endswith("lsi_scale")}
    assert len(arrays) == len(np.load(path / "arrays.npz").files) - 1
    np.savez(path / "arrays.npz", **arrays)
    meta = json.loads((path / "model.json").read_text())
    assert meta.pop("tfidf_scale") == lsi.SIGNAC_SCALE
    meta["files"]["arrays.npz"] = hashlib.sha256((path / "arrays.npz").read_bytes()).hexdigest()
    (path / "model.json").write_text(json.dumps(meta))
    mapped = query.copy()
    tl.map_query(mapped, path, gene_activity=activity)
    assert np.array_equal(mapped.obsm["X_atac_latent"], first.obsm["X_atac_latent"])
    assert np.array_equal(mapped.obs["omics_cl_label"].astype(str), first.obs["omics_cl_label"].astype(str))
