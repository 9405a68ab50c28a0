"""benchmarks/clustering.py's Leiden-stream figures (``--leiden-streams``)."""
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import clustering  # noqa: E402


@pytest.mark.parametrize("method", ["pca", "scinno"])
def test_stream_zero_is_the_row_and_streams_are_recorded(counts_adata, monkeypatch, tmp_path, method):
    manifest = SimpleNamespace(unlabelled_values=())
    monkeypatch.setattr(clustering, "labelled_rna",
                        lambda name: (manifest, counts_adata, counts_adata.obs["group"], 3))
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
