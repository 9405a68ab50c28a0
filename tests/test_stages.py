"""The stage runner: stages run in order, each from the previous model, with per-stage checkpoints."""
import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from omics_cl.core.train import Stage, TrainConfig, run_record, run_stages


class Source:
    n_obs = 16

    def get(self, idx):
        return {"x": np.linspace(0, 1, 32, dtype=np.float32).reshape(16, 2)[idx]}


def loss_fn(model, batch, key, train):
    loss = jnp.mean((model(batch["x"]) - 1.0) ** 2)
    return loss, {"fit": loss}


def stages(seen):
    def widen(previous):
        seen.append(float(previous.kernel[...].sum()))
        return previous, {"widened": True}
    return [Stage("pre", 2, loss_fn, early_stopping=False), Stage("main", 3, loss_fn, init=widen)]


def test_stages_run_in_order_with_prefixed_history_and_notes():
    seen = []
    result = run_stages(nnx.Linear(2, 1, rngs=nnx.Rngs(0)), stages(seen), Source(),
                        TrainConfig(batch_size=8, progress=False), seed=0)
    assert list(result.history)[:2] == ["pre_fit", "pre_loss"] and set(result.history) == {"pre_fit", "pre_loss", "fit", "loss"}
    assert len(result.history["pre_loss"]) == 2 and len(result.history["loss"]) == 3
    assert result.epochs_run == 5 and result.notes == {"widened": True} and len(seen) == 1
    assert result.history["loss"][-1] < result.history["pre_loss"][0]
    record = run_record(TrainConfig(), TrainConfig(), result, extra=1)
    assert record["extra"] == 1 and record["widened"] and set(record["epoch_seconds"]) == {"pre", "main"}


def test_each_stage_checkpoints_and_resume_reproduces(tmp_path):
    config = TrainConfig(batch_size=8, progress=False, checkpoint_path=str(tmp_path / "run.ckpt"))
    first = run_stages(nnx.Linear(2, 1, rngs=nnx.Rngs(0)), stages([]), Source(), config, seed=0)
    assert os.path.exists(f"{config.checkpoint_path}.pre") and os.path.exists(f"{config.checkpoint_path}.main")
    os.remove(f"{config.checkpoint_path}.main")
    again = run_stages(nnx.Linear(2, 1, rngs=nnx.Rngs(0)), stages([]), Source(), config, seed=0)
    assert again.history == first.history
    np.testing.assert_array_equal(np.asarray(again.model.kernel[...]), np.asarray(first.model.kernel[...]))


def test_a_pretraining_stage_never_stops_early():
    config = TrainConfig(batch_size=8, progress=False, early_stopping=True, patience=1, validation_fraction=0.25,
                         learning_rate=0.0)  # nothing improves: every stage that may stop does so after 2 epochs
    result = run_stages(nnx.Linear(2, 1, rngs=nnx.Rngs(0)),
                        [Stage("pre", 4, loss_fn, early_stopping=False), Stage("main", 4, loss_fn)], Source(),
                        config, seed=0)
    assert len(result.history["pre_loss"]) == 4 and len(result.history["loss"]) == 2 and result.stopped_early


def test_a_single_stage_checkpoints_at_the_given_path(tmp_path):
    path = str(tmp_path / "one.ckpt")
    run_stages(nnx.Linear(2, 1, rngs=nnx.Rngs(0)), [Stage("train", 1, loss_fn)], Source(),
               TrainConfig(batch_size=8, progress=False, checkpoint_path=path), seed=0)
    assert os.path.exists(path)
    with pytest.raises(ValueError, match="another seed"):
        run_stages(nnx.Linear(2, 1, rngs=nnx.Rngs(0)), [Stage("train", 2, loss_fn)], Source(),
                   TrainConfig(batch_size=8, progress=False, checkpoint_path=path), seed=1)
