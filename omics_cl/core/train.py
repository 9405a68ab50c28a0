"""One generic jitted training step and the loop around it (shared by every model).

A model is a ``flax.nnx`` module plus a loss function
``loss_fn(model, batch, key, train) -> (loss, metrics)``. The module is split once into a
static graph and a parameter pytree; the step is a plain ``jax.jit`` of
``(params, opt_state, batch, key) -> (params, opt_state, metrics)``.
Data come from a ``BatchSource``: anything with ``n_obs`` and ``get(indices) -> dict of arrays``
(the sources and their batch keys live in ``omics_cl.data.sources``). A source with a device-resident form
(``device_data()``) that fits is put on the device once and trained one epoch per dispatch
(``omics_cl.core.epochs``; ``TrainConfig.device_resident``, ``device_budget``, ``devices``).
A ``schedule(epoch) -> dict of floats`` (e.g. a ramped loss weight) reaches the loss as ``batch["schedule"]``.
:func:`run_stages` runs a list of :class:`Stage` (pre-training, then fine-tuning, ...) with :func:`fit`,
one checkpoint per stage; :func:`run_record` is the one record of a run (config, history, timings).
"""
from __future__ import annotations

import functools
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from omics_cl.core.epochs import EPOCH_BAR_DELAY, LossFn, epoch_runner
from omics_cl.core.files import atomic_write
from omics_cl.core.prefetch import Prefetch

SCHEDULE = "schedule"  # batch key of the per-epoch scalars from ``schedule``


class BatchSource(Protocol):
    n_obs: int

    def get(self, indices: np.ndarray) -> Any: ...


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100
    batch_size: int = 512
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    early_stopping: bool = False
    validation_fraction: float = 0.1
    patience: int = 10
    min_delta: float = 0.0
    checkpoint_path: str | None = None
    checkpoint_every: int = 1
    progress: bool = True  # a bar of epochs; the host loop adds one of cells for an epoch longer than 2 s
    device_resident: str = "auto"  # "auto": on an accelerator, for a device-form source within device_budget
    device_budget: float = 0.5  # fraction of device (CPU: host) memory the resident arrays may take
    devices: int = 0  # devices of the data-parallel mesh (0: all that divide batch_size; all processes')


@dataclass
class TrainResult:
    model: nnx.Module
    history: dict[str, list[float]] = field(default_factory=dict)
    epochs_run: int = 0
    stopped_early: bool = False
    epoch_seconds: list[float] = field(default_factory=list)  # wall time of each epoch run in this call
    epoch_input_wait: list[float | None] = field(default_factory=list)  # seconds its steps waited for batches


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    if config.weight_decay > 0:
        return optax.adamw(config.learning_rate, weight_decay=config.weight_decay)
    return optax.adam(config.learning_rate)


def split_validation(n_obs: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random train / held-out split of cell indices (labels play no part)."""
    perm = np.random.default_rng([seed, 7919]).permutation(n_obs)
    n_val = int(round(n_obs * fraction))
    if n_val < 2 or n_obs - n_val < 2:
        raise ValueError(
            f"early stopping needs at least 2 training and 2 held-out cells; {n_obs} cells with "
            f"validation_fraction={fraction} gives {n_val} held out"
        )
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _write_pickle(obj: Any, path: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            pickle.dump(obj, fh)

    atomic_write(path, write)


def _to_host(tree: Any) -> list[np.ndarray]:
    return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


def _from_host(leaves: list[np.ndarray], like: Any) -> Any:
    treedef = jax.tree.structure(like)
    shapes = [tuple(np.shape(x)) for x in jax.tree.leaves(like)]
    if treedef.num_leaves != len(leaves) or shapes != [tuple(x.shape) for x in leaves]:
        raise ValueError("checkpoint does not match this model/optimizer (different arrays or shapes, e.g. "
                         "another number of clusters); delete it or pick another checkpoint_path")
    return jax.tree.unflatten(treedef, [jnp.asarray(x) for x in leaves])


def epoch_order(source: BatchSource, indices: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """The order in which an epoch visits ``indices``: ``source.epoch_order`` when the source has one (a streamed
    source reads in chunks), else a permutation seeded by ``(seed, epoch)``."""
    if hasattr(source, "epoch_order"):
        return source.epoch_order(indices, seed, epoch)
    return np.random.default_rng([seed, epoch]).permutation(indices)


def fit(model: nnx.Module, loss_fn: LossFn, source: BatchSource, config: TrainConfig, seed: int,
        desc: str = "training", schedule: Callable[[int], dict[str, float]] | None = None,
        after_epoch: Callable[[nnx.Module], nnx.Module] | None = None,
        epoch_bar_delay: float = EPOCH_BAR_DELAY) -> TrainResult:
    """Train ``model`` on minibatches of ``source``; deterministic given ``seed``.

    Shuffling (:func:`epoch_order`) and step keys are derived from ``(seed, epoch, batch)``, so resuming from a
    checkpoint reproduces an uninterrupted run exactly. With ``early_stopping``, a random
    ``validation_fraction`` of cells is held out and the parameters with the best held-out
    loss are returned. ``schedule`` adds per-epoch scalars to every batch under ``"schedule"``
    (held-out batches get the same epoch's values). ``after_epoch(model) -> model`` runs after every training
    epoch, before validation and checkpointing (e.g. re-seeding empty cluster centres). With ``progress``, an
    epoch of the host loop longer than ``epoch_bar_delay`` seconds also shows a bar of its cells.
    """
    graphdef, params = nnx.split(model)
    tx = make_optimizer(config)
    opt_state = tx.init(params)
    runner = epoch_runner(graphdef, loss_fn, tx, source, config, epoch_bar_delay)
    key, val_key = jax.random.split(jax.random.key(seed))  # val_key: the same augmentation draw every epoch

    if config.early_stopping:
        train_idx, val_idx = split_validation(source.n_obs, config.validation_fraction, seed)
    else:
        train_idx, val_idx = np.arange(source.n_obs), None
    if len(train_idx) < 2:
        raise ValueError(f"training needs at least 2 cells, got {len(train_idx)}")

    history: dict[str, list[float]] = {}
    start_epoch, best_loss, best_params, bad_epochs = 0, np.inf, None, 0
    fingerprint = {"config": {k: v for k, v in asdict(config).items() if k not in ("progress", "checkpoint_path")},
                   "seed": seed, "n_obs": source.n_obs}
    if config.checkpoint_path and os.path.exists(config.checkpoint_path):
        with open(config.checkpoint_path, "rb") as fh:
            ckpt = pickle.load(fh)
        if ckpt["fingerprint"]["seed"] != seed or ckpt["fingerprint"]["n_obs"] != source.n_obs:
            raise ValueError(f"checkpoint {config.checkpoint_path} was written for another seed or dataset "
                             f"({ckpt['fingerprint']}); delete it or pick another checkpoint_path")
        params = _from_host(ckpt["params"], params)
        opt_state = _from_host(ckpt["opt_state"], opt_state)
        best_params = _from_host(ckpt["best_params"], params) if ckpt["best_params"] is not None else None
        start_epoch, history, best_loss, bad_epochs = (ckpt["epoch"], ckpt["history"], ckpt["best_loss"],
                                                       ckpt["bad_epochs"])

    stopped_early, epoch_seconds, epoch_input_wait = False, [], []
    bar = tqdm(range(start_epoch, config.epochs), desc=desc, disable=not config.progress,
               initial=start_epoch, total=config.epochs)
    for epoch in bar:
        started = time.perf_counter()
        epoch_key = jax.random.fold_in(key, epoch)
        extra = {} if schedule is None else {SCHEDULE: {k: np.float32(v) for k, v in schedule(epoch).items()}}
        order = epoch_order(source, train_idx, seed, epoch)
        params, opt_state, metrics = runner.train(params, opt_state, order, epoch_key, extra)
        epoch_input_wait.append(runner.input_wait)
        if after_epoch is not None:
            params = nnx.state(after_epoch(nnx.merge(graphdef, params)))
        for k, v in metrics.items():
            history.setdefault(k, []).append(v)
        postfix = {"loss": f"{history['loss'][-1]:.4g}"}

        if val_idx is not None:
            val_loss = runner.validate(params, val_idx, val_key, extra)["loss"]
            history.setdefault("val_loss", []).append(val_loss)
            postfix["val_loss"] = f"{val_loss:.4g}"
            if val_loss < best_loss - config.min_delta:
                best_loss, best_params, bad_epochs = val_loss, params, 0
            else:
                bad_epochs += 1
        bar.set_postfix(postfix)
        epoch_seconds.append(time.perf_counter() - started)

        done = epoch + 1 == config.epochs
        stopped_early = val_idx is not None and bad_epochs >= config.patience
        if config.checkpoint_path and ((epoch + 1) % config.checkpoint_every == 0 or done or stopped_early):
            _write_pickle({
                "fingerprint": fingerprint, "epoch": epoch + 1, "history": history,
                "params": _to_host(params), "opt_state": _to_host(opt_state),
                "best_params": None if best_params is None else _to_host(best_params),
                "best_loss": best_loss, "bad_epochs": bad_epochs,
            }, config.checkpoint_path)
        if stopped_early:
            break
    bar.close()

    final = best_params if best_params is not None else params
    return TrainResult(nnx.merge(graphdef, final), history, len(history.get("loss", [])), stopped_early,
                       epoch_seconds, epoch_input_wait)


@functools.lru_cache(maxsize=64)
def jitted_apply(fn: Callable[..., jax.Array], graphdef: nnx.GraphDef) -> Callable:
    """``jax.jit`` of ``(params, batch, *constants) -> fn(model, batch, *constants)``, one per ``(fn, graphdef)``
    (a model of the same structure reuses the compiled code; at most 64 kept)."""
    return jax.jit(lambda params, batch, *constants: fn(nnx.merge(graphdef, params), batch, *constants))


def predict(fn: Callable[..., jax.Array], model: nnx.Module, source: BatchSource, batch_size: int = 4096,
            constants: tuple = ()) -> np.ndarray:
    """Apply ``fn(model, batch, *constants)`` to all cells in order, in fixed-size batches, and stack the
    results. ``constants`` (e.g. context cells every cell attends to) are passed unchanged to every batch.
    A source with ``prefetch`` has its batches built that many ahead in a background thread. The compiled
    apply is kept per ``(fn, model structure)``: pass a module-level function (not a new lambda per call, and
    arrays as ``constants``, not in a closure) so later calls do not recompile."""
    graphdef, params = nnx.split(model)
    apply = jitted_apply(fn, graphdef)
    idx = np.arange(source.n_obs)
    chunks = (idx[s:s + batch_size] for s in range(0, source.n_obs, batch_size))
    with Prefetch(chunks, source.get, getattr(source, "prefetch", 0)) as batches:
        return np.concatenate([np.asarray(apply(params, batch, *constants)) for batch in batches])


@dataclass(frozen=True)
class Stage:
    """One training stage: ``epochs`` of ``loss`` (with an optional per-epoch ``schedule``).

    ``init(previous_model) -> (model, notes)`` runs before the stage (e.g. cluster centres from the
    previous stage's latent); ``notes`` join the run record. ``after_epoch``: see :func:`fit`.
    ``early_stopping=False`` keeps a stage (pre-training) from stopping early even when the run asks for it.
    """

    name: str
    epochs: int
    loss: LossFn
    schedule: Callable[[int], dict[str, float]] | None = None
    init: Callable[[nnx.Module], tuple[nnx.Module, dict]] | None = None
    after_epoch: Callable[[nnx.Module], nnx.Module] | None = None
    early_stopping: bool = True


@dataclass
class StagesResult:
    model: nnx.Module | None
    history: dict[str, list[float]] = field(default_factory=dict)
    epochs_run: int = 0
    stopped_early: bool = False
    epoch_seconds: dict[str, list[float]] = field(default_factory=dict)
    epoch_input_wait: dict[str, list[float | None]] = field(default_factory=dict)
    notes: dict = field(default_factory=dict)


def run_stages(model: nnx.Module | None, stages: list[Stage], source: BatchSource, config: TrainConfig | None,
               seed: int, desc: str = "training") -> StagesResult:
    """Run ``stages`` in order with :func:`fit`, each from the model the previous one left.

    A single stage checkpoints to ``config.checkpoint_path``; with several, stage ``s`` checkpoints to
    ``<checkpoint_path>.<s>`` (a finished stage is not re-run on resume). History keys of every stage
    but the last are prefixed ``<stage>_``.
    """
    out = StagesResult(model)
    for i, stage in enumerate(stages):
        if stage.init is not None:
            out.model, notes = stage.init(out.model)
            out.notes.update(notes)
        path = config.checkpoint_path
        if path and len(stages) > 1:
            path = f"{path}.{stage.name}"
        result = fit(out.model, stage.loss, source,
                     replace(config, epochs=stage.epochs, checkpoint_path=path,
                             early_stopping=config.early_stopping and stage.early_stopping),
                     seed, desc=desc if len(stages) == 1 else f"{desc} {stage.name}", schedule=stage.schedule,
                     after_epoch=stage.after_epoch)
        prefix = "" if i == len(stages) - 1 else f"{stage.name}_"
        out.model = result.model
        out.history.update({prefix + k: v for k, v in result.history.items()})
        out.epochs_run += result.epochs_run
        out.stopped_early = result.stopped_early
        out.epoch_seconds[stage.name] = result.epoch_seconds
        out.epoch_input_wait[stage.name] = result.epoch_input_wait
    return out


def run_record(config: Any, train: TrainConfig | None, result: StagesResult, **notes: Any) -> dict:
    """The record of one run: config and training fields, history, epochs run, epoch seconds, notes."""
    record = dict(asdict(config))
    if train is not None:
        record.update({k: v for k, v in asdict(train).items() if k != "progress"})
        record.update(history=result.history, epochs_run=result.epochs_run, stopped_early=result.stopped_early,
                      epoch_seconds=result.epoch_seconds)
    return {**record, **result.notes, **notes}
