"""Streaming from a backed .h5ad: batches equal the in-memory ones, the epoch order follows the documented chunk
scheme and reads each chunk once, the prefetch thread ends on errors and early exits, training is
deterministic and learns, and the input file is never written."""
import hashlib
import threading
import time

import anndata as ad
import jax
import numpy as np
import pytest
from flax import nnx

from omics_cl import models, tl
from omics_cl.core.epochs import EPOCH_BAR_DELAY, minibatches
from omics_cl.core.prefetch import Prefetch
from omics_cl.core.train import TrainConfig, fit
from omics_cl.data.preprocess import prepare_counts
from omics_cl.data.sources import KEYS
from omics_cl.data.streaming import StreamingCountsSource
from omics_cl.models.cae import AutoEncoder, CAEConfig, make_loss

SMALL = CAEConfig(hidden=(32,), latent=8)


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "omics_cl-prefetch"]


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def backed(counts_adata, tmp_path):
    path = tmp_path / "counts.h5ad"
    counts_adata.write_h5ad(path)
    return path, ad.read_h5ad(path, backed="r")


def streamed(adata, chunk_rows=32, window=3) -> StreamingCountsSource:
    prepared = prepare_counts(adata, n_top_genes=50)
    return StreamingCountsSource(prepared.counts, prepared.normalizer, chunk_rows, window)


def test_streamed_batches_equal_the_in_memory_batches(counts_adata, backed):
    path, adata = backed
    before = digest(path)
    source, memory = streamed(adata), prepare_counts(counts_adata, n_top_genes=50).source()
    np.testing.assert_array_equal(source.transform.genes, memory.transform.genes)  # chunked HVGs are the same
    for idx in minibatches(source.epoch_order(np.arange(300), 0, 0), 64):
        np.testing.assert_array_equal(source.get(idx)[KEYS.X], memory.get(idx)[KEYS.X])
    assert isinstance(adata.X, ad.abc.CSRDataset) and digest(path) == before


def test_epoch_order_follows_the_chunk_scheme_and_reads_each_chunk_once(backed):
    source = streamed(backed[1], chunk_rows=32, window=3)  # 10 chunks: groups of 3, 3, 3, 1
    cells = np.sort(np.random.default_rng(1).choice(300, 250, replace=False))
    order = source.epoch_order(cells, seed=4, epoch=2)
    np.testing.assert_array_equal(np.sort(order), cells)
    chunks = np.random.default_rng([4, 2]).permutation(10)
    at = 0
    for w in range(0, 10, 3):
        group = cells[np.isin(cells // 32, chunks[w:w + 3])]
        np.testing.assert_array_equal(np.sort(order[at:at + len(group)]), group)
        at += len(group)
    np.testing.assert_array_equal(order, source.epoch_order(cells, 4, 2))
    assert not np.array_equal(order, source.epoch_order(cells, 4, 3))
    for idx in minibatches(order, 50):
        source.get(idx)
    assert source.chunks_read == 10 and len(source.cache) <= 3


def test_prefetch_keeps_order_bounds_the_queue_and_stops_on_errors():
    made = []

    def make(i):
        made.append(i)
        if i == 7:
            raise RuntimeError("bad chunk 7")
        return {"x": np.full(2, i)}

    with Prefetch(range(20), make, depth=2) as batches:
        first = next(batches)
        time.sleep(0.3)
        assert int(first["x"][0]) == 0 and isinstance(first["x"], jax.Array)
        assert len(made) <= 4  # the one consumed, two queued, one waiting to be queued
    assert not prefetch_threads()  # left early: the worker was stopped and joined
    seen = []
    with pytest.raises(RuntimeError, match="bad chunk 7"), Prefetch(range(20), make, depth=2) as batches:
        seen.extend(int(b["x"][0]) for b in batches)
    assert seen == list(range(7))  # every batch before the failing one arrived, in order
    assert not prefetch_threads()


def test_input_wait_counts_waits_for_slow_batches_after_the_step_in_flight():
    def slow_make(i):
        time.sleep(0.04)
        return {"x": np.full(2, i)}

    settled = []
    prefetch = Prefetch(range(10), slow_make, depth=2, settle=lambda: settled.append(1))
    with prefetch as batches:
        assert [int(b["x"][0]) for b in batches] == list(range(10))
    assert 0.3 < prefetch.input_wait < 1.5 and len(settled) >= 9  # ~40 ms a batch, each after settling
    prefetch = Prefetch(range(10), lambda i: {"x": np.full(2, i)}, depth=2)
    with prefetch as batches:
        for _ in batches:
            time.sleep(0.04)  # a slow step: the next batch is always ready
    assert prefetch.input_wait < 0.15
    inline = Prefetch(range(3), slow_make, depth=0)
    with inline as batches:
        list(batches)
    assert inline.input_wait == 0.0


def test_fit_records_the_input_wait_of_streamed_epochs(backed, counts_adata):
    streamed_run = train(streamed(backed[1]), epochs=2)
    assert len(streamed_run.epoch_input_wait) == 2
    assert all(0 <= w < s for w, s in zip(streamed_run.epoch_input_wait, streamed_run.epoch_seconds))
    in_memory = train(prepare_counts(counts_adata, n_top_genes=50).source(), epochs=2)
    assert in_memory.epoch_input_wait == [None, None]  # built inline: not measured

def train(source, epochs=4, epoch_bar_delay=EPOCH_BAR_DELAY, **config):
    model = AutoEncoder(source.n_features, SMALL, rngs=nnx.Rngs(0))
    return fit(model, make_loss(SMALL), source, TrainConfig(**{"epochs": epochs, "batch_size": 64, "progress": False,
                                                               **config}), seed=3, epoch_bar_delay=epoch_bar_delay)


def test_streamed_training_learns_is_deterministic_and_ends_its_thread(backed):
    source = streamed(backed[1])
    assert source.prefetch == 2
    a, b = train(source), train(streamed(backed[1]))
    assert a.history["loss"][-1] < a.history["loss"][0]
    assert a.history == b.history
    for x, y in zip(jax.tree.leaves(nnx.state(a.model)), jax.tree.leaves(nnx.state(b.model))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    stopped = train(source, epochs=30, early_stopping=True, patience=1, min_delta=1e9)
    assert stopped.stopped_early and not prefetch_threads()


def test_a_read_error_mid_epoch_reaches_fit_and_ends_the_thread(backed):
    class FailingMatrix:
        """The backed counts, failing on the third read."""

        def __init__(self, x):
            self.x, self.shape, self.reads = x, x.shape, 0

        def __getitem__(self, rows):
            self.reads += 1
            if self.reads == 3:
                raise OSError(f"cannot read rows {rows}")
            return self.x[rows]

    prepared = prepare_counts(backed[1], n_top_genes=50)
    source = StreamingCountsSource(FailingMatrix(prepared.counts), prepared.normalizer, 32, 3)
    with pytest.raises(OSError, match="cannot read rows"):
        train(source)
    assert not prefetch_threads()


def test_cluster_streams_a_backed_file_without_writing_it(counts_adata, backed):
    path, adata = backed
    before = digest(path)
    params = {"method": "cae", "epochs": 3, "hidden": [32], "latent": 8, "batch_size": 64, "progress": False,
              "fusion": "none"}
    record = tl.cluster(adata, **params)
    assert record["stream"] is True and digest(path) == before
    again = ad.read_h5ad(path, backed="r")
    tl.cluster(again, **params)
    np.testing.assert_array_equal(adata.obsm["X_cae"], again.obsm["X_cae"])
    assert tl.cluster(counts_adata, **params)["stream"] is False
    with pytest.raises(models.StreamingError, match="cannot stream") as refused:
        tl.cluster(adata, method="pca", stream=True)
    assert refused.value.method == "pca" and not refused.value.by_config  # no pca config streams


def test_long_epochs_show_a_bar_of_cells_and_train_the_same(backed, capsys):
    quiet = train(streamed(backed[1]), progress=False, epoch_bar_delay=0.0)
    assert "cell" not in capsys.readouterr().err
    shown = train(streamed(backed[1]), progress=True, epoch_bar_delay=0.0)
    err = capsys.readouterr().err
    assert "epoch: 100%" in err and "300/300" in err and "cell/s" in err
    assert shown.history == quiet.history
    for x, y in zip(jax.tree.leaves(nnx.state(shown.model)), jax.tree.leaves(nnx.state(quiet.model))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    train(streamed(backed[1]), progress=True, epoch_bar_delay=60.0)  # epochs shorter than the delay show no bar
    assert "cell/s" not in capsys.readouterr().err
    with pytest.raises(ValueError, match="epoch_bar_delay must be >= 0"):
        train(streamed(backed[1]), epoch_bar_delay=-1.0)
