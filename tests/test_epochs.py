"""Device-resident training: batches gathered on the device match the host's, an epoch per dispatch gives the
host loop's results, resumes reproduce, and a 4-device data-parallel run matches one device."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
import scipy.sparse as sp
from flax import nnx

from omics_cl.core.epochs import DeviceEpochs, HostEpochs, epoch_runner
from omics_cl.core.train import Stage, TrainConfig, fit, run_stages
from omics_cl.data.device_sources import COLUMNS, DENSE, matrix_arrays
from omics_cl.data.paired import Modality
from omics_cl.data.preprocess import prepare_counts
from omics_cl.data.sources import (
    ArraySource,
    GraphSource,
    MemberSource,
    PairedSource,
    RowSource,
    TransferSource,
    dense_source,
)
from omics_cl.models.cae import AutoEncoder, CAEConfig, make_loss

IDX = np.array([5, 3, 299, 0, 17, 5, 120])


def features(n=203, d=40, seed=1):
    """A sparse non-negative matrix with few nonzeros per row and none empty."""
    x = sp.random(n, d, density=0.1, random_state=seed, format="csr", dtype=np.float32)
    return sp.csr_matrix(x + sp.csr_matrix(np.eye(n, d, dtype=np.float32)) + sp.csr_matrix(
        (np.ones(n, np.float32), (np.arange(n), np.full(n, d - 1))), shape=(n, d)))


def assert_same_batch(source, idx, atol):
    data = source.device_data()
    host = source.get(idx)
    device = jax.jit(data.gather)(jax.device_put(data.arrays), idx, **jax.device_put(data.host_draws(idx)))
    assert jax.tree.structure(host) == jax.tree.structure(device)
    for h, d in zip(jax.tree.leaves(host), jax.tree.leaves(device)):
        assert h.shape == d.shape and h.dtype == d.dtype
        np.testing.assert_allclose(np.asarray(d), h, rtol=0, atol=atol)


@pytest.mark.parametrize("kind", ["sparse", "dense"])
def test_counts_source_gathers_the_host_batch_on_the_device(counts_adata, kind):
    adata = counts_adata if kind == "sparse" else counts_adata.copy()
    if kind == "dense":
        adata.X = adata.X.toarray()
    assert_same_batch(prepare_counts(adata, n_top_genes=50).source(), IDX, atol=0)


def test_padded_sparse_and_dense_rows_gather_exactly():
    x = features()
    assert COLUMNS in matrix_arrays(x) and COLUMNS not in matrix_arrays(x.toarray())
    for m in (x, x.toarray()):
        assert_same_batch(dense_source(m), IDX[IDX < 203], atol=0)
    assert DENSE in matrix_arrays(sp.csr_matrix(np.ones((4, 3))))  # dense rows: padding would be larger


def test_graph_array_and_paired_sources_gather_the_host_batch(counts_adata):
    rows = prepare_counts(counts_adata, n_top_genes=50).source()
    neighbors = np.random.default_rng(0).integers(0, 300, (300, 4))
    assert_same_batch(GraphSource(rows, neighbors), IDX, atol=0)
    assert_same_batch(ArraySource(x=np.arange(600, dtype=np.float32).reshape(300, 2), y=np.arange(300, dtype=np.int32)), IDX, atol=0)
    rna = Modality.fit(counts_adata.X, 50, "hvg")
    atac = Modality.fit(counts_adata.X, 30, "accessible")
    assert_same_batch(PairedSource(rna, atac), IDX, atol=0)


def test_transfer_and_member_sources_gather_the_host_batch():
    rng = np.random.default_rng(0)
    transfer = TransferSource(features(150, 30, seed=2), rng.integers(0, 4, 150).astype(np.int32), features(),
                              rng.integers(0, 203, (203, 5)), 4, seed=3)
    idx = IDX[IDX < 203]
    assert_same_batch(transfer, idx, atol=0)
    assert_same_batch(MemberSource(transfer, 3, seed=3), idx, atol=0)


def test_transfer_training_on_the_device_matches_the_host_loop():
    """scncl's ensemble trained with the device loop (host draws, rows gathered on the device) against the host loop:
    the same batches, so the losses agree to float32 rounding (the epoch scan compiles to other rounding)."""
    from omics_cl.models import scncl

    rng = np.random.default_rng(1)
    transfer = TransferSource(features(150, 30, seed=2), rng.integers(0, 4, 150).astype(np.int32),
                              features(203, 30), rng.integers(0, 203, (203, 5)), 4, seed=3)
    source = MemberSource(transfer, 2, seed=3)
    config = scncl.SCNCLConfig(n_members=2, hidden=16, latent=8)
    histories = []
    for mode in ("never", "always"):
        model = scncl.build(30, 4, config, seed=0)
        train_config = TrainConfig(epochs=2, batch_size=32, progress=False, device_resident=mode)
        histories.append(fit(model, scncl.make_loss(config), source, train_config, seed=0).history)
    assert histories[0].keys() == histories[1].keys()
    for key in histories[0]:
        np.testing.assert_allclose(histories[1][key], histories[0][key], rtol=1e-4)


def train(source, n_obs_features, mode, seed=1, **config):
    cfg = CAEConfig(hidden=(32,), latent=8)
    tc = TrainConfig(**{"epochs": 3, "batch_size": 32, "progress": False, "device_resident": mode, **config})
    return fit(AutoEncoder(n_obs_features, cfg, rngs=nnx.Rngs(0)), make_loss(cfg), source, tc, seed=seed,
               schedule=lambda epoch: {"unused": epoch})


@pytest.mark.parametrize("n_obs", [203, 225])  # last batch of 11 cells; a last cell folded into a batch of 33
def test_one_dispatch_per_epoch_matches_the_host_loop(n_obs):
    source = dense_source(features(n_obs))
    host, device = train(source, 40, "never"), train(source, 40, "always")
    assert host.history == device.history  # same batches, keys and inputs: bit-identical on CPU
    for a, b in zip(jax.tree.leaves(nnx.state(host.model)), jax.tree.leaves(nnx.state(device.model))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_lognormalised_counts_on_the_device_match_the_host_loop_bit_for_bit(counts_adata):
    source = prepare_counts(counts_adata, n_top_genes=50).source()
    for config in ({}, {"early_stopping": True, "patience": 1}):
        host, device = train(source, 50, "never", **config), train(source, 50, "always", **config)
        assert host.history == device.history and host.epochs_run == device.epochs_run
        assert "val_loss" in device.history or not config


def test_device_resident_choice(counts_adata):
    graphdef, params = nnx.split(nnx.Linear(2, 1, rngs=nnx.Rngs(0)))
    loss = make_loss(CAEConfig())
    rows = prepare_counts(counts_adata, n_top_genes=50).source()
    transfer = TransferSource(features(), np.zeros(203, np.int32), features(), np.zeros((203, 2), int), 2, 0)

    def runner(source, **config):
        return epoch_runner(graphdef, loss, None, source, TrainConfig(**config))

    assert isinstance(runner(rows, device_resident="always"), DeviceEpochs)
    assert isinstance(runner(rows, device_resident="never"), HostEpochs)
    assert isinstance(runner(rows), HostEpochs if jax.default_backend() == "cpu" else DeviceEpochs)  # "auto"
    if jax.default_backend() != "cpu":
        assert isinstance(runner(rows, device_budget=0.0), HostEpochs)  # does not fit
    assert isinstance(runner(transfer, device_resident="always"), DeviceEpochs)  # host draws, device rows
    custom = RowSource(features(), lambda rows, idx: np.asarray(rows.toarray()))
    assert isinstance(runner(custom), HostEpochs)  # an arbitrary host transform
    with pytest.raises(ValueError, match="no device-resident form"):
        runner(custom, device_resident="always")
    with pytest.raises(ValueError, match="device_resident must be"):
        runner(rows, device_resident="yes")
    with pytest.raises(ValueError, match="devices are present"):
        runner(rows, device_resident="always", devices=jax.local_device_count() + 1)


def test_device_resident_stages_resume_like_an_uninterrupted_run(tmp_path):
    source = dense_source(features())
    cfg = CAEConfig(hidden=(32,), latent=8)
    loss = make_loss(cfg)

    def run(path, epochs):
        config = TrainConfig(batch_size=32, progress=False, device_resident="always", checkpoint_path=path,
                             checkpoint_every=2)
        stages = [Stage("pre", 2, loss), Stage("main", epochs, loss, schedule=lambda e: {"w": e})]
        return run_stages(AutoEncoder(40, cfg, rngs=nnx.Rngs(0)), stages, source, config, seed=3)

    full = run(None, 5)
    path = str(tmp_path / "run.ckpt")
    run(path, 3)  # interrupted after 3 of 5 epochs of "main" (checkpoint at epoch 2 and at its end)
    resumed = run(path, 5)
    assert resumed.history == full.history
    for a, b in zip(jax.tree.leaves(nnx.state(full.model)), jax.tree.leaves(nnx.state(resumed.model))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


MULTI = textwrap.dedent("""
    import jax, numpy as np, optax, pytest
    from flax import nnx
    from jax.sharding import NamedSharding, PartitionSpec
    from test_epochs import features, train
    from omics_cl.core.epochs import epoch_runner
    from omics_cl.core.train import TrainConfig
    from omics_cl.data.sources import dense_source
    from omics_cl.models.cae import AutoEncoder, CAEConfig, make_loss
    assert jax.device_count() == 4
    source = dense_source(features(203))
    one = train(source, 40, "always", devices=1, early_stopping=True)
    four = train(source, 40, "always", devices=4, early_stopping=True)
    assert set(one.history) == set(four.history)
    for k in one.history:
        np.testing.assert_allclose(four.history[k], one.history[k], rtol=1e-5)
    cfg, tx = CAEConfig(hidden=(32,), latent=8), optax.adam(1e-3)
    graphdef, params = nnx.split(AutoEncoder(40, cfg, rngs=nnx.Rngs(0)))
    runner = epoch_runner(graphdef, make_loss(cfg), tx, source, TrainConfig(batch_size=32, devices=4,
                                                                              device_resident="always"))
    full = jax.device_put(np.arange(192, dtype=np.int32).reshape(6, 32),
                          NamedSharding(runner.mesh, PartitionSpec(None, "data")))
    hlo = runner.train_epoch.lower(params, tx.init(params), runner.arrays, (full, {}), (None, None),
                                   jax.random.key(0), {}).compile().as_text()
    assert runner.mesh.size == 4 and "all-reduce" in hlo  # gradients reduced across the 4 devices
    with pytest.raises(ValueError, match="not divisible"):
        epoch_runner(graphdef, make_loss(cfg), tx, source, TrainConfig(batch_size=30, devices=4,
                                                                       device_resident="always"))
    print("OK", one.history["loss"], four.history["loss"])
""")


def test_four_devices_give_the_losses_of_one(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), *sys.path]))
    out = subprocess.run([sys.executable, "-c", MULTI], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]
