"""``omics-cl demo --job {cluster,transfer,integrate}`` with tiny settings: table, outputs, labels kept out."""
import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest

from omics_cl import datasets, demos, metrics, tl
from omics_cl.cli import main


def table_rows(printed: str) -> list[dict]:
    """The rows of the markdown table in ``printed``."""
    lines = [line.strip("|").split("|") for line in printed.splitlines() if line.startswith("| ")]
    cols = [c.strip() for c in lines[0]]
    return [dict(zip(cols, (c.strip() for c in line))) for line in lines[1:]]


def spy(monkeypatch, name: str) -> list:
    """Replace ``tl.<name>`` by a wrapper that records the obs columns of the data passed to it positionally."""
    real, seen = getattr(tl, name), []

    def wrapper(*args, **kwargs):
        for data in args:
            if hasattr(data, "obs"):
                seen.append({"obs": list(data.obs.columns), "n_obs": data.n_obs,
                             "mods": {m: list(a.obs.columns) for m, a in getattr(data, "mod", {}).items()}})
        return real(*args, **kwargs)

    monkeypatch.setattr(tl, name, wrapper)
    return seen


def test_transfer_demo(tmp_path, capsys, monkeypatch):
    seen = spy(monkeypatch, "transfer_labels")
    out = tmp_path / "transfer"
    assert main(["demo", "--job", "transfer", "--n-cells", "400", "--epochs", "2", "--out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    rows = table_rows(printed)
    assert [r["method"] for r in rows] == ["scncl", "logreg"]
    for r in rows:
        for col in ("accuracy", "macro_f1", "novel_rate_known", "novel_rate_unseen", "novelty_auroc"):
            assert 0 <= float(r[col]) <= 1, (col, r)
    ref, query = seen  # the reference carries its labels, the query none
    assert ref["obs"] == [demos.LABEL_KEY] and query["obs"] == [] and ref["n_obs"] < 200 and query["n_obs"] == 200
    assert {p.name for p in out.iterdir()} == {"novelty_distribution.png", "umap_joint.png", "confusion_matrix.png",
                                               "labels.csv", "query_annotated.h5ad", "scores.md"}
    assert (out / "scores.md").read_text().splitlines()[2].startswith("| scncl |")
    labels = pd.read_csv(out / "labels.csv", index_col=0)
    truth = datasets.load(demos.PAIRED, modality="rna").obs[demos.LABEL_KEY].astype(str)
    assert (labels["cell_type_held_back"] == truth.loc[labels.index]).all()
    known = ~labels["cell_type_held_back"].isin(["Mis", demos.UNSEEN])
    accuracy = np.mean(labels["omics_cl_label"][known] == labels["cell_type_held_back"][known])
    assert float(rows[0]["accuracy"]) == pytest.approx(accuracy, abs=5e-4)
    unseen = labels["cell_type_held_back"] == demos.UNSEEN
    assert float(rows[0]["novel_rate_unseen"]) == pytest.approx(labels["omics_cl_is_novel"][unseen].mean(), abs=5e-4)
    annotated = ad.read_h5ad(out / "query_annotated.h5ad")
    assert annotated.n_obs == 200 and "omics_cl_label" in annotated.obs
    assert "demo finished in" in printed


def test_integrate_demo(tmp_path, capsys, monkeypatch):
    seen = spy(monkeypatch, "integrate")
    out = tmp_path / "integrate"
    assert main(["demo", "--job", "integrate", "--n-cells", "300", "--epochs", "1", "--out", str(out),
                 "--no-progress"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert [(r["method"], r["protocol"]) for r in rows] == [
        ("sci2cl", "resolution"), ("sci2cl", "n_clusters"), ("pca_rna", "resolution"), ("pca_rna", "n_clusters")]
    assert seen == [{"obs": [], "n_obs": 300, "mods": {"rna": [], "atac": []}}]  # no labels reach training
    assert {p.name for p in out.iterdir()} == {"integrated.h5mu", "umap.png", "training_history.png", "scores.md"}
    mdata = md.read_h5mu(out / "integrated.h5mu")
    labels = mdata.obs[demos.LABEL_KEY].astype(str)
    k = labels[labels != "Mis"].nunique()
    assert int(rows[3]["n_clusters"]) == k  # the bisection may miss K by one on the 1-epoch sci2cl embedding
    n_fixed = int(rows[1]["n_clusters"])
    assert n_fixed == mdata.obs["sci2cl_cluster_k"].nunique() and abs(n_fixed - k) <= 1
    for row, key in ((rows[0], "sci2cl_cluster"), (rows[2], "pca_rna_cluster")):
        s = metrics.clustering_scores(labels, mdata.obs[key].astype(str), exclude=["Mis"])
        assert float(row["ari"]) == pytest.approx(s["ari"], abs=5e-4)
        assert float(row["nmi"]) == pytest.approx(s["nmi"], abs=5e-4)
    assert mdata.obsm["X_sci2cl"].shape[0] == 300


def test_cluster_demo_writes_report_only_with_out(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "cluster"
    assert main(["demo", "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert [r["method"] for r in rows] == ["pca", "pca", "ae", "ae", "cae", "cae"]
    assert [r["n_clusters"] for r in rows if r["protocol"] == "n_clusters"] == ["10"] * 3  # bulk_labels' 10 types
    assert {p.name for p in out.iterdir()} == {"umap_pca.png", "umap_ae.png", "umap_cae.png",
                                               "training_history_cae.png", "pbmc68k_reduced.h5ad", "scores.md"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster"]  # nothing else in the working directory


@pytest.mark.parametrize("argv,message", [
    (["--job", "transfer", "--n-cells", "50"], "--n-cells must be between 200 and 10309"),
    (["--job", "integrate", "--n-cells", "20000"], "--n-cells must be between 200 and 10309"),
    (["--n-cells", "400"], "--n-cells is for the transfer and integrate demos"),
    (["--job", "transfer", "--out", "missing/dir"], "does not exist"),
])
def test_demo_refuses_bad_settings_and_writes_nothing(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", *argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("omics-cl demo: error:") and message in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
