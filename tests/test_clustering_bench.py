"""benchmarks/clustering.py's Leiden-stream figures (``--leiden-streams``) and label columns (``--label-key``,
``--score-keys``)."""
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import clustering  # noqa: E402
import common  # noqa: E402

from omics_cl import metrics  # noqa: E402
from omics_cl.core import train  # noqa: E402


@pytest.mark.parametrize("method", ["pca", "scinno"])
def test_stream_zero_is_the_row_and_streams_are_recorded(counts_adata, monkeypatch, tmp_path, method):
    manifest = SimpleNamespace(default_label_key="group", unlabelled_values=())
    monkeypatch.setattr(clustering, "labelled_rna",
                        lambda name, label_key=None: (manifest, counts_adata, counts_adata.obs["group"], 3))
    own = []
    original = clustering.stream_aris

    def with_stream_zero(adata, clustered, k, seed, streams, labels, manifest, args):
        scores = original(adata, clustered, k, seed, [0, *streams], labels, manifest, args)
        own.append(scores[0])
        return scores[1:]

    monkeypatch.setattr(clustering, "stream_aris", with_stream_zero)
    out = tmp_path / "rows.json"
    params = ["--param", "hidden=[32]", "--param", "latent=16", "--param", "epochs=4", "--param", "batch_size=64",
              "--param", "ramp_epochs=1"] if method == "scinno" else []
    clustering.main(["--datasets", "toy", "--methods", method, "--seeds", "1", "--protocols", "n_clusters",
                     "--leiden-streams", "3", "--json", str(out), *params])
    rows = [r for r in json.loads(out.read_text()) if r["method"] == method]
    assert len(rows) == 1 and len(rows[0]["ari_streams"]) == 3
    assert rows[0]["ari_streams"][0] == rows[0]["ari"] == own[0]  # the recomputed stream 0 is the row's clustering
    assert "seeds" in clustering.stream_table(rows)


def test_label_key_sets_k_and_score_keys_score_other_columns(counts_adata, monkeypatch, tmp_path):
    adata = counts_adata.copy()
    adata.obs["coarse"] = np.where(adata.obs["group"] == "0", "a", "b")
    manifest = SimpleNamespace(default_label_key="group", unlabelled_values=())
    monkeypatch.setattr(common.datasets, "get_manifest", lambda name: manifest)
    monkeypatch.setattr(common.datasets, "load", lambda name, modality: adata.copy())
    out = tmp_path / "rows.json"
    base = ["--datasets", "toy", "--methods", "pca", "--seeds", "1", "--protocols", "n_clusters", "--json", str(out)]
    clustering.main([*base, "--label-key", "coarse", "--score-keys", "group"])
    clustering.main([*base, "--resume", "--score-keys", "coarse"])  # the default column is another run
    coarse, default = json.loads(out.read_text())
    assert (coarse["label_key"], coarse["n_clusters"], default["label_key"], default["n_clusters"]) == \
        ("coarse", 2, "group", 3)
    # the default run recovers the three groups, so its score against the coarse column is the groups' own
    assert default["ari"] == 1.0
    assert default["ari_coarse"] == metrics.clustering_scores(adata.obs["coarse"], adata.obs["group"])["ari"]
    assert set(coarse) >= {"ari_group", "nmi_group"} and "ari_coarse" not in coarse
    with pytest.raises(SystemExit, match="no obs column"):
        clustering.main([*base, "--score-keys", "subclass"])


def test_n_clusters_rows_are_the_call_with_k_and_the_resolution_call_reuses_its_model(counts_adata, monkeypatch,
                                                                                        tmp_path):
    """cae's read-off weights depend on K, so the n_clusters row must be ``tl.cluster(..., n_clusters=K)`` itself;
    the call without K reads the same trained model back from its checkpoint."""
    manifest = SimpleNamespace(default_label_key="group", unlabelled_values=())
    monkeypatch.setattr(clustering, "labelled_rna",
                        lambda name, label_key=None: (manifest, counts_adata, counts_adata.obs["group"], 3))
    calls, epochs_run = [], []
    original, original_order = clustering.tl.cluster, train.epoch_order

    def recorded(adata, **kwargs):
        epochs_run.clear()
        record = original(adata, **kwargs)
        ari = metrics.clustering_scores(adata.obs["group"], adata.obs["cae_cluster"])["ari"]
        calls.append((kwargs, ari, len(epochs_run)))
        return record

    monkeypatch.setattr(clustering.tl, "cluster", recorded)
    monkeypatch.setattr(train, "epoch_order", lambda *a: epochs_run.append(1) or original_order(*a))
    out = tmp_path / "rows.json"
    clustering.main(["--datasets", "toy", "--methods", "cae", "--seeds", "1", "--json", str(out),
                     "--param", "hidden=[32]", "--param", "latent=8", "--param", "epochs=2",
                     "--param", "batch_size=64"])
    rows = {r["protocol"]: r for r in json.loads(out.read_text()) if r["method"] == "cae"}
    (with_k, ari_k, epochs_k), (without_k, ari_res, epochs_res) = calls
    assert with_k["n_clusters"] == 3 and "n_clusters" not in without_k
    assert (rows["n_clusters"]["ari"], rows["resolution"]["ari"]) == (ari_k, ari_res)
    assert with_k["checkpoint_path"] == without_k["checkpoint_path"] and (epochs_k, epochs_res) == (2, 0)
