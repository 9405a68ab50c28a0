"""sci2cl on a MOp subsample (real data), and the downstream tools on a joint space: sub-clusters, label
consistency, trajectory."""
import anndata as ad
import mudata as md
import numpy as np
import pytest

from omics_cl import datasets, metrics, tl


@pytest.fixture(scope="module")
def mop_cells():
    rna = datasets.load("mop_snare_paired", modality="rna")
    atac = datasets.load("mop_snare_paired", modality="atac")
    cells = np.sort(np.random.default_rng(0).permutation(rna.n_obs)[:1200])
    return rna[cells].copy(), atac[cells].copy()


def test_mop_end_to_end_clusters_and_aligns_modalities(mop_cells):
    mdata = md.MuData({"rna": mop_cells[0].copy(), "atac": mop_cells[1].copy()})
    tl.integrate(mdata, seed=0, n_top_peaks=3000, epochs=8, batch_size=64, n_clusters=14, progress=False)
    s = metrics.clustering_scores(mdata["rna"].obs["cell_type"], mdata.obs["sci2cl_cluster"], exclude=["Mis"])
    assert s["nmi"] > 0.3  # measured 0.35; labels shuffled would give about 0.02
    assert metrics.foscttm(mdata.obsm["X_sci2cl_rna"], mdata.obsm["X_sci2cl_atac"]) < 0.1


@pytest.fixture
def mop_embedded(mop_cells):
    """The MOp subsample with an RNA PCA standing in for the joint embedding: the downstream tools are
    tested on a fixed embedding, independent of how well a short training run went."""
    import scanpy as sc

    mdata = md.MuData({"rna": mop_cells[0].copy(), "atac": mop_cells[1].copy()})
    norm = mdata["rna"].copy()
    sc.pp.normalize_total(norm)
    sc.pp.log1p(norm)
    mdata.obsm["X_joint"] = sc.pp.pca(norm.X, n_comps=30, random_state=0)
    return mdata


def test_subclusters_with_rna_and_gene_activity_markers(mop_embedded):
    mdata = mop_embedded
    activity = ad.AnnData(mdata["rna"].X.copy(), obs=mdata.obs[[]].copy(), var=mdata["rna"].var[[]].copy())
    out = tl.subclusters(mdata, "cell_type", "L2/3", use_rep="X_joint", n_clusters=2, n_genes=5,
                         gene_activity=activity)
    assert set(mdata.obs["omics_cl_subcluster"].dropna()) == {"L2/3.0", "L2/3.1"}
    assert (mdata.obs["omics_cl_subcluster"].notna() == (mdata["rna"].obs["cell_type"] == "L2/3")).all()
    for table in (out["markers"], out["activity_markers"]):
        assert set(table["subcluster"]) == {"L2/3.0", "L2/3.1"} and (table.groupby("subcluster").size() == 5).all()
    with pytest.raises(ValueError, match="obs column 'nope' not found"):
        tl.subclusters(mdata, "nope", "L2/3", use_rep="X_joint")
    sizes = mdata["rna"].obs["cell_type"].value_counts()
    small = sizes[(sizes >= 30)].index[-1]  # the smallest type that can be sub-clustered, split into single cells
    before = mdata.obs["omics_cl_subcluster"].copy()
    with pytest.raises(ValueError, match="sub-clusters of .* hold one cell; marker genes need at least 2"):
        tl.subclusters(mdata, "cell_type", small, use_rep="X_joint", n_clusters=int(sizes[small]))
    assert mdata.obs["omics_cl_subcluster"].equals(before)  # nothing written


def test_label_consistency_flags_planted_relabelling_with_marker_evidence(mop_embedded):
    mdata = mop_embedded
    labels = mdata["rna"].obs["cell_type"].astype(str).to_numpy().copy()
    oligo = np.flatnonzero(labels == "Oligo")
    planted = oligo[: len(oligo) // 4]
    labels[planted] = "Astro"
    mdata.obs["planted"] = labels
    cell_rule = tl.label_consistency(mdata, "planted", use_rep="X_joint", exclude=["Mis"], min_enrichment=0,
                                     min_group_cells=0)
    cell_suspect = mdata.obs["omics_cl_label_suspect"].to_numpy()
    table = tl.label_consistency(mdata, "planted", use_rep="X_joint", exclude=["Mis"], min_group_cells=5)
    suspect = mdata.obs["omics_cl_label_suspect"].to_numpy()
    assert suspect[planted].mean() > 0.8
    # the group rule drops the disagreements two mixed types leave both ways; the cell rule keeps them
    assert (suspect & ~np.isin(np.arange(len(labels)), planted)).sum() <= 0.25 * suspect.sum()
    assert cell_suspect.sum() > 2 * suspect.sum() and len(cell_rule) > len(table)
    assert (table["n_cells"] >= 4 * table["expected"]).all() and table["estimated_precision"].between(0, 1).all()
    assert not suspect[labels == "Mis"].any() and table["n_cells"].sum() == suspect.sum()
    row = table[(table["given_label"] == "Astro") & (table["neighbourhood_label"] == "Oligo")].iloc[0]
    assert {"Mbp", "Plp1"} & set(row["markers"].split(", "))  # oligodendrocyte markers as evidence


def test_trajectory_orders_opc_before_oligodendrocytes(mop_embedded):
    tr = tl.trajectory(mop_embedded, "OPC", "cell_type", use_rep="X_joint")
    order = list(tr["group_pseudotime"].index)
    assert order[:2] == ["OPC", "Oligo"]
    assert np.isfinite(mop_embedded.obs["omics_cl_pseudotime"]).all()
    assert mop_embedded.uns["omics_cl_paga"]["connectivities"].shape == (15, 15)
    with pytest.raises(ValueError, match="root group 'nope'"):
        tl.trajectory(mop_embedded, "nope", "cell_type", use_rep="X_joint")
