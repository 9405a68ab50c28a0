import jax
import numpy as np
import pytest
from conftest import FAST
from flax import nnx

from omics_cl import models, tl
from omics_cl.core.epochs import minibatches
from omics_cl.core.train import TrainConfig, predict
from omics_cl.data.preprocess import prepare_counts
from omics_cl.data.sources import KEYS, ArraySource
from omics_cl.models.cae import AutoEncoder, CAEConfig


def embed_cae(prepared, seed, progress, **params):
    out, info = models.run(models.METHODS["cae"], prepared, models.Context(seed), progress, **params)
    return out["embedding"], info


def test_same_seed_same_embedding_and_clusters(counts_adata):
    a, b = counts_adata.copy(), counts_adata.copy()
    tl.cluster(a, method="cae", seed=3, progress=False, **FAST)
    tl.cluster(b, method="cae", seed=3, progress=False, **FAST)
    assert np.array_equal(a.obsm["X_cae"], b.obsm["X_cae"])
    assert np.array_equal(a.obs["cae_cluster"], b.obs["cae_cluster"])
    c = counts_adata.copy()
    tl.cluster(c, method="cae", seed=4, progress=False, **FAST)
    assert not np.array_equal(a.obsm["X_cae"], c.obsm["X_cae"])


def test_checkpoint_resume_equals_uninterrupted_run(counts_adata, tmp_path):
    prepared = prepare_counts(counts_adata)
    params = dict(FAST, epochs=4)
    z_full, info_full = embed_cae(prepared, seed=1, progress=False, **params)
    ckpt = str(tmp_path / "run.ckpt")
    embed_cae(prepared, seed=1, progress=False, **dict(params, epochs=2, checkpoint_path=ckpt))
    z_resumed, info_resumed = embed_cae(prepared, seed=1, progress=False, **dict(params, checkpoint_path=ckpt))
    assert np.array_equal(z_full, z_resumed)
    assert info_full["history"] == info_resumed["history"]


def test_checkpoint_for_another_seed_is_refused(counts_adata, tmp_path):
    prepared = prepare_counts(counts_adata)
    ckpt = str(tmp_path / "run.ckpt")
    embed_cae(prepared, seed=1, progress=False, **dict(FAST, epochs=1, checkpoint_path=ckpt))
    with pytest.raises(ValueError, match="another seed"):
        embed_cae(prepared, seed=2, progress=False, **dict(FAST, epochs=2, checkpoint_path=ckpt))


def test_early_stopping_records_validation_loss_and_stops(counts_adata):
    prepared = prepare_counts(counts_adata)
    _, info = embed_cae(prepared, seed=0, progress=False,
                        **dict(FAST, epochs=200, early_stopping=True, patience=2, learning_rate=0.05))
    assert len(info["history"]["val_loss"]) == info["epochs_run"]
    assert info["stopped_early"] and info["epochs_run"] < 200


def test_loss_decreases(counts_adata):
    _, info = embed_cae(prepare_counts(counts_adata), seed=0, progress=False, **dict(FAST, epochs=8))
    assert info["history"]["loss"][-1] < info["history"]["loss"][0]


def test_minibatches_cover_everything_without_singletons():
    idx = np.arange(1025)
    batches = list(minibatches(idx, 512))
    assert [len(b) for b in batches] == [512, 513]
    assert np.array_equal(np.concatenate(batches), idx)


def test_unknown_parameter_is_rejected(counts_adata):
    with pytest.raises(TypeError, match="unknown parameter 'epoch'"):
        tl.cluster(counts_adata, method="cae", progress=False, epoch=3)


def test_train_config_defaults_follow_methods_md():
    cfg = TrainConfig()
    assert (cfg.epochs, cfg.batch_size, cfg.learning_rate) == (100, 512, 1e-3)


def test_schedule_reaches_the_loss_per_epoch():
    import jax.numpy as jnp
    from flax import nnx

    from omics_cl.core.train import fit

    class Source:
        n_obs = 8

        def get(self, idx):
            return {"x": np.ones((len(idx), 2), np.float32)}

    def loss_fn(model, batch, key, train):
        w = batch["schedule"]["weight"]
        return jnp.mean(model(batch["x"]) ** 2) * 0 + w, {"weight": w}

    result = fit(nnx.Linear(2, 1, rngs=nnx.Rngs(0)), loss_fn, Source(), TrainConfig(epochs=3, batch_size=4,
                 progress=False), seed=0, schedule=lambda epoch: {"weight": epoch / 2})
    assert result.history["weight"] == [0.0, 0.5, 1.0]
    assert len(result.epoch_seconds) == 3


def test_checkpoint_with_other_shapes_is_refused(counts_adata, tmp_path):
    prepared = prepare_counts(counts_adata)
    ckpt = str(tmp_path / "run.ckpt")
    embed_cae(prepared, seed=1, progress=False, **dict(FAST, epochs=1, checkpoint_path=ckpt))
    with pytest.raises(ValueError, match="shapes"):
        embed_cae(prepared, seed=1, progress=False, **dict(FAST, latent=8, epochs=2, checkpoint_path=ckpt))


def test_atomic_write_gives_the_mode_a_plain_open_would(tmp_path):
    import os

    from omics_cl.core.files import atomic_write, current_umask

    target = tmp_path / "out.txt"
    atomic_write(target, lambda tmp: open(tmp, "w").write("x"))
    assert target.read_text() == "x"
    assert (target.stat().st_mode & 0o777) == (0o666 & ~current_umask())
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".out.txt.")]


def test_predict_compiles_once_per_function_and_model_structure():
    traces = []

    def encode(model, batch):
        traces.append(batch[KEYS.X].shape)
        return model.encoder(batch[KEYS.X])

    x = np.random.default_rng(0).random((300, 20), dtype=np.float32)
    first, second = (AutoEncoder(20, CAEConfig(hidden=(8,), latent=4), rngs=nnx.Rngs(s)) for s in (0, 1))
    z_first = predict(encode, first, ArraySource(**{KEYS.X: x}), batch_size=128)
    assert np.array_equal(predict(encode, first, ArraySource(**{KEYS.X: x}), batch_size=128), z_first)
    z_second = predict(encode, second, ArraySource(**{KEYS.X: x}), batch_size=128)
    assert len(traces) == 2  # batch shapes 128 and 44, each traced once for both models
    graphdef, params = nnx.split(second)
    fresh = jax.jit(lambda p, batch: encode(nnx.merge(graphdef, p), batch))
    expected = np.concatenate([np.asarray(fresh(params, {KEYS.X: x[s:s + 128]})) for s in range(0, 300, 128)])
    assert np.array_equal(z_second, expected) and not np.array_equal(z_second, z_first)
    traces.clear()
    other = AutoEncoder(20, CAEConfig(hidden=(16,), latent=4), rngs=nnx.Rngs(0))
    predict(encode, other, ArraySource(**{KEYS.X: x}), batch_size=128)
    assert len(traces) == 2  # another structure compiles anew
