import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from conftest import FAST  # noqa: E402

from omics_cl import pl, tl  # noqa: E402


def test_plots_write_png(counts_adata, tmp_path):
    tl.cluster(counts_adata, method="ae", progress=False, **FAST)
    pl.umap(counts_adata, "X_ae", color=["ae_cluster", "group"], save=str(tmp_path / "umap.png"))
    assert counts_adata.obsm["X_umap_ae"].shape == (300, 2)
    pl.confusion_matrix(counts_adata.obs["group"], counts_adata.obs["ae_cluster"], save=str(tmp_path / "cm.png"))
    pl.training_history(counts_adata, "ae", save=str(tmp_path / "loss.png"))
    for name in ("umap.png", "cm.png", "loss.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_confusion_matrix_rows_sum_to_one_and_matches_on_the_diagonal():
    fig = pl.confusion_matrix(["a", "b", "b", "b", "c"], ["2", "0", "0", "1", "1"])
    ax = fig.axes[0]
    table = np.asarray(ax.images[0].get_array())
    assert np.allclose(table.sum(1), 1.0)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "a", "c"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "2", "1"]


def test_membership_plot(counts_adata, tmp_path):
    u = np.random.default_rng(0).dirichlet(np.ones(3), 300).astype(np.float32)
    counts_adata.obsm["x_membership"] = u
    counts_adata.obs["x_cluster"] = pd.Categorical(u.argmax(1).astype(str), categories=["0", "1", "2"])
    fig = pl.memberships(counts_adata, "x", save=str(tmp_path / "m.png"))
    assert (tmp_path / "m.png").stat().st_size > 1000
    assert len(fig.axes[0].get_xticklabels()) == 3


def test_membership_plot_refuses_a_leiden_readout(counts_adata):
    with pytest.raises(ValueError, match="readout='argmax'"):
        pl.memberships(counts_adata, "siamese")


def test_novelty_distribution_shows_the_rule_that_called_cells_novel(tmp_path):
    """With label support: confidence novelty against support, the threshold and the median support drawn;
    without: histograms of the novelty score with the threshold."""
    import anndata as ad
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    adata = ad.AnnData(np.zeros((40, 1), np.float32))
    adata.obs["omics_cl_novelty"] = rng.random(40)
    adata.obs["omics_cl_is_novel"] = np.arange(40) < 5
    adata.uns["omics_cl"] = {"transfer_method": "scncl", "scncl": {"novelty_threshold": 0.3}}
    hist = pl.novelty_distribution(adata)
    assert hist.axes[0].get_xlabel() == "novelty score" and len(hist.axes[0].patches) > 0
    adata.obs["omics_cl_confidence_novelty"] = rng.random(40)
    adata.obs["omics_cl_label_support"] = rng.normal(size=40)
    fig = pl.novelty_distribution(adata, save=str(tmp_path / "novelty.png"))
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("confidence novelty") and sum(len(c.get_offsets()) for c in ax.collections) == 40
    lines = [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert lines == [0.3] and (tmp_path / "novelty.png").stat().st_size > 0
    plt.close("all")
