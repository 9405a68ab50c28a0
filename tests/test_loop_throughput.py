"""benchmarks/loop_throughput.py times each stage along three paths without changing what the method trains."""
import jax
import numpy as np
import pytest
from conftest import FAST, load_benchmark

from omics_cl import models
from omics_cl.core import train as core_train
from omics_cl.data.preprocess import prepare_counts


@pytest.fixture(scope="module")
def loop_throughput():
    return load_benchmark("loop_throughput")


def trained_params(prepared, fit):
    method = models.METHODS["cae"]
    config, train = models.configure(method, **{**FAST, "epochs": 2})
    source = method.source(prepared, config, models.Context())
    model = method.init(source, config, models.Context())
    stages = method.stages(config, train, source, models.Context())
    original = core_train.fit
    core_train.fit = fit
    try:
        result = core_train.run_stages(model, stages, source, train, seed=0)
    finally:
        core_train.fit = original
    return jax.tree.leaves(result.model)


def test_stage_timer_times_every_path_and_trains_as_the_host_loop(loop_throughput, counts_adata):
    prepared = prepare_counts(counts_adata)
    rows = []
    timer = loop_throughput.StageTimer(core_train.fit, "job", ["raw", "device", "host"], 1, 0, rows)
    timed = trained_params(prepared, timer)
    assert [r["path"] for r in rows] == [loop_throughput.PATHS[k] for k in ("raw", "device", "host")]
    assert all(r["cells"] == counts_adata.n_obs and r["cells_per_s"] > 0 for r in rows)
    plain = trained_params(prepared, core_train.fit)  # the run's own 2 epochs, host loop on the CPU
    assert all(np.array_equal(a, b) for a, b in zip(timed, plain))
    loop_throughput.add_ratios(rows)
    assert rows[0]["of_raw_step"] == 1.0
