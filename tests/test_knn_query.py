"""benchmarks/knn_query.py: both exact searches find the same neighbours on its latents, and a row per method."""
import json

import numpy as np
from conftest import load_benchmark


def test_both_methods_measured_with_the_same_neighbours(tmp_path):
    knn_query = load_benchmark("knn_query")
    rows = knn_query.measure(n_query=300, n_reference=500, dim=8, k=10, rounds=2)
    assert [r["method"] for r in rows] == list(knn_query.METHODS)
    assert all(len(r["seconds_rounds"]) == 2 and r["seconds"] > 0 for r in rows)
    assert rows[0]["same_neighbours"] == 1.0
    assert knn_query.main(["--query-cells", "50", "--reference-cells", "80", "--dim", "4", "--rounds", "1",
                           "--json", str(tmp_path / "rows.json")]) == 0
    assert (tmp_path / "rows.json").exists()


def test_a_self_graph_call_times_two_calls_and_saves_the_first(tmp_path, capsys):
    knn_query = load_benchmark("knn_query")
    out = tmp_path / "idx.npy"
    assert knn_query.main(["--self-call", "300", "8", "10", "jax", str(out)]) == 0
    timings = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert set(timings) == {"first_call_s", "second_call_s"} and np.load(out).shape == (300, 10)
