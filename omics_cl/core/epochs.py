"""How one epoch's minibatches reach the jitted step.

:class:`HostEpochs` builds each batch on the host (``source.get``) and dispatches one step per batch.
:class:`DeviceEpochs` puts the source's arrays (``source.device_data()``) on the device once and runs a whole
epoch in one dispatch: the batches are gathered from an index matrix inside ``jax.lax.scan`` (one transfer
per epoch) and data-parallel over a ``jax.sharding.Mesh`` of ``devices`` (batch axis sharded, parameters
replicated). Both take the same batches, in the same order, with the same keys ``fold_in(epoch_key, b)``.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from omics_cl.core.prefetch import Prefetch
from omics_cl.data.device_sources import DeviceData

LossFn = Callable[[nnx.Module, Any, jax.Array, bool], tuple[jax.Array, dict]]
RESIDENT = ("auto", "always", "never")
EPOCH_BAR_DELAY = 2.0  # default seconds an epoch of the host loop runs before its bar of cells appears


def step_fn(graphdef: nnx.GraphDef, loss_fn: LossFn, tx: optax.GradientTransformation) -> Callable:
    """The pure training step ``(params, opt_state, batch, key) -> (params, opt_state, metrics)``."""

    def step(params, opt_state, batch, key):
        def objective(p):
            return loss_fn(nnx.merge(graphdef, p), batch, key, True)

        (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, {"loss": loss, **metrics}

    return step


def eval_fn(graphdef: nnx.GraphDef, loss_fn: LossFn) -> Callable:
    """The pure evaluation loss ``(params, batch, key) -> metrics`` with ``train=False``."""

    def evaluate(params, batch, key):
        loss, metrics = loss_fn(nnx.merge(graphdef, params), batch, key, False)
        return {"loss": loss, **metrics}

    return evaluate


def minibatches(indices: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Consecutive slices of ``indices``; a final batch of one cell is folded into the previous one
    (contrastive losses need at least two cells)."""
    n = len(indices)
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] < 2:
        starts.pop()
    for i, s in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else n
        yield indices[s:stop]


def mean_metrics(rows: list[dict], weights: list[int]) -> dict[str, float]:
    """Batch-size-weighted mean of each metric over batches (float64)."""
    w = np.asarray(weights, dtype=float)
    return {k: float(np.average([float(r[k]) for r in rows], weights=w)) for k in rows[0]}


class HostEpochs:
    """Batches built on the host by ``source.get``, one jitted step dispatched per batch; with ``prefetch > 0``
    they are built that many batches ahead in a background thread and put on the device there
    (``omics_cl.core.prefetch``), so the step does not wait on reading (streamed sources). With ``progress``, an
    epoch that runs longer than ``epoch_bar_delay`` seconds shows a bar of its cells (cleared when it ends); it
    counts dispatched steps and never waits on their results."""

    def __init__(self, graphdef, loss_fn: LossFn, tx, source, batch_size: int, prefetch: int = 0,
                 progress: bool = False, epoch_bar_delay: float = EPOCH_BAR_DELAY):
        if not epoch_bar_delay >= 0:
            raise ValueError(f"epoch_bar_delay must be >= 0 seconds, got {epoch_bar_delay}")
        self.step = jax.jit(step_fn(graphdef, loss_fn, tx))
        self.evaluate = jax.jit(eval_fn(graphdef, loss_fn))
        self.source, self.batch_size, self.prefetch, self.progress = source, batch_size, prefetch, progress
        self.epoch_bar_delay = epoch_bar_delay
        self.input_wait: float | None = None  # of the last training epoch; None without prefetch

    def _batches(self, chunks: list[np.ndarray], extra: dict, settle=None) -> Prefetch:
        return Prefetch(chunks, lambda idx: {**self.source.get(idx), **extra}, self.prefetch, settle)

    def train(self, params, opt_state, order: np.ndarray, epoch_key, extra: dict):
        """One epoch over ``order``; returns ``(params, opt_state, mean metrics)``. With ``prefetch``,
        ``input_wait`` is then the seconds the epoch's steps waited for their batches: when the next batch is
        not ready, the loop first lets the step in flight finish, then times the wait."""
        rows, sizes = [], []
        chunks = list(minibatches(order, self.batch_size))
        bar = tqdm(total=len(order), desc="epoch", unit="cell", unit_scale=True, leave=False,
                   disable=not self.progress, delay=self.epoch_bar_delay)
        prefetch = self._batches(chunks, extra, lambda: jax.block_until_ready(rows[-1:]))
        with prefetch as batches, bar:
            for b, (idx, batch) in enumerate(zip(chunks, batches)):
                params, opt_state, metrics = self.step(params, opt_state, batch, jax.random.fold_in(epoch_key, b))
                rows.append(metrics)
                sizes.append(len(idx))
                bar.update(len(idx))
        self.input_wait = prefetch.input_wait if self.prefetch else None
        return params, opt_state, mean_metrics(rows, sizes)

    def validate(self, params, indices: np.ndarray, key, extra: dict) -> dict[str, float]:
        """Mean held-out metrics over minibatches of ``indices`` (batch ``b`` with ``fold_in(key, b)``)."""
        rows, sizes = [], []
        chunks = list(minibatches(indices, self.batch_size))
        with self._batches(chunks, extra) as batches:
            for b, (idx, batch) in enumerate(zip(chunks, batches)):
                rows.append(self.evaluate(params, batch, jax.random.fold_in(key, b)))
                sizes.append(len(idx))
        return mean_metrics(rows, sizes)


def data_mesh(devices: int, batch_size: int) -> Mesh:
    """A 1-d ``("data",)`` mesh of ``devices`` devices (0: all of them, or one when their number does not divide
    ``batch_size``): the local devices, or with several processes (``jax.distributed.initialize``) every
    process's devices, each process running the same training on the same data."""
    available = jax.devices()
    n = devices or len(available)
    if n > len(available):
        raise ValueError(f"devices={devices} but only {len(available)} devices are present")
    if batch_size % n:
        if devices:
            raise ValueError(f"batch_size={batch_size} is not divisible by devices={devices}")
        warnings.warn(f"batch_size={batch_size} is not divisible by the {n} devices; training on one",
                      stacklevel=3)
        n = 1
    return Mesh(np.array(available[:n]), ("data",))


class DeviceEpochs:
    """Device-resident data (``DeviceData``), one dispatch per epoch: full-size batches in ``lax.scan``, then
    the last, differently sized batch of :func:`minibatches` (if any) as one more step in the same jit."""

    input_wait = None  # no host batches to wait for

    def __init__(self, graphdef, loss_fn: LossFn, tx, data: DeviceData, batch_size: int, mesh: Mesh):
        self.batch_size, self.mesh = batch_size, mesh
        self.replicated = NamedSharding(mesh, PartitionSpec())
        self.arrays = jax.device_put(data.arrays, self.replicated)
        step, evaluate, gather = step_fn(graphdef, loss_fn, tx), eval_fn(graphdef, loss_fn), data.gather

        def batch_of(arrays, idx, draws, extra):
            if idx.shape[0] % mesh.size == 0:
                idx = jax.lax.with_sharding_constraint(idx, NamedSharding(mesh, PartitionSpec("data")))
            return {**gather(arrays, idx, **draws), **extra}

        def train_epoch(params, opt_state, arrays, full, last, key, extra):
            (full, full_draws), (last, last_draws) = full, last

            def body(carry, xs):
                idx, draws, b = xs
                p, o, metrics = step(*carry, batch_of(arrays, idx, draws, extra), jax.random.fold_in(key, b))
                return (p, o), metrics

            metrics = []
            if full.shape[0]:
                (params, opt_state), stacked = jax.lax.scan(body, (params, opt_state),
                                                            (full, full_draws, jnp.arange(full.shape[0])))
                metrics.append(stacked)
            if last is not None:
                params, opt_state, m = step(params, opt_state, batch_of(arrays, last, last_draws, extra),
                                            jax.random.fold_in(key, full.shape[0]))
                metrics.append(jax.tree.map(lambda v: v[None], m))
            return params, opt_state, jax.tree.map(lambda *v: jnp.concatenate(v), *metrics)

        def eval_epoch(params, arrays, full, last, key, extra):
            (full, full_draws), (last, last_draws) = full, last

            def body(_, xs):
                idx, draws, b = xs
                return None, evaluate(params, batch_of(arrays, idx, draws, extra), jax.random.fold_in(key, b))

            metrics = []
            if full.shape[0]:
                metrics.append(jax.lax.scan(body, None, (full, full_draws, jnp.arange(full.shape[0])))[1])
            if last is not None:
                m = evaluate(params, batch_of(arrays, last, last_draws, extra),
                             jax.random.fold_in(key, full.shape[0]))
                metrics.append(jax.tree.map(lambda v: v[None], m))
            return jax.tree.map(lambda *v: jnp.concatenate(v), *metrics)

        self.train_epoch, self.eval_epoch = jax.jit(train_epoch), jax.jit(eval_epoch)
        self.host_draws = data.host_draws

    def _indices(self, order: np.ndarray) -> tuple[tuple, tuple, list[int]]:
        """``(indices, draws)`` of the full-size batches, stacked along a leading batch axis (the cell axis sharded),
        the same of the last batch of another size (``(None, None)`` if none), and every batch's size. The draws are
        the data's per-batch host draws (``DeviceData.draws``)."""
        batches = list(minibatches(np.asarray(order, dtype=np.int32), self.batch_size))
        sizes = [len(b) for b in batches]
        n_full = sum(s == self.batch_size for s in sizes)
        draws = [self.host_draws(b) for b in batches]
        full = np.stack(batches[:n_full]) if n_full else np.zeros((0, self.batch_size), np.int32)
        full_draws = jax.tree.map(lambda *d: np.stack(d), *draws[:n_full]) if n_full else {}
        stacked = NamedSharding(self.mesh, PartitionSpec(None, "data"))
        full, full_draws = jax.device_put((full, full_draws), stacked)
        last = (None, None)
        if n_full < len(batches):
            last = jax.device_put((batches[-1], draws[-1]), self.replicated)
        return (full, full_draws), last, sizes

    def train(self, params, opt_state, order: np.ndarray, epoch_key, extra: dict):
        """One epoch over ``order`` in one dispatch; returns ``(params, opt_state, mean metrics)``."""
        full, last, sizes = self._indices(order)
        params, opt_state = jax.device_put((params, opt_state), self.replicated)
        params, opt_state, metrics = self.train_epoch(params, opt_state, self.arrays, full, last, epoch_key, extra)
        return params, opt_state, _weighted(metrics, sizes)

    def validate(self, params, indices: np.ndarray, key, extra: dict) -> dict[str, float]:
        """Mean held-out metrics over minibatches of ``indices`` (batch ``b`` with ``fold_in(key, b)``)."""
        full, last, sizes = self._indices(indices)
        params = jax.device_put(params, self.replicated)
        return _weighted(self.eval_epoch(params, self.arrays, full, last, key, extra), sizes)


def _weighted(metrics: dict, sizes: list[int]) -> dict[str, float]:
    host = {k: np.asarray(v) for k, v in metrics.items()}
    return mean_metrics([{k: v[b] for k, v in host.items()} for b in range(len(sizes))], sizes)


def memory_bytes() -> int:
    """Memory of the first local device (``memory_stats``), or the host's physical memory (CPU devices)."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def epoch_runner(graphdef, loss_fn: LossFn, tx, source, config,
                 epoch_bar_delay: float = EPOCH_BAR_DELAY) -> HostEpochs | DeviceEpochs:
    """:class:`DeviceEpochs` when ``config.device_resident`` is ``"always"``, or ``"auto"`` on an accelerator
    and the source has a device form whose arrays fit in ``config.device_budget`` of device memory; else
    :class:`HostEpochs`, building ``source.prefetch`` batches ahead when the source sets it (streamed sources). ``"auto"`` keeps the host loop on the CPU: XLA compiles the step inside the epoch's
    scan with other rounding than the per-batch step (cae: 2e-6 after 2 epochs), and on CPU the gain is small
    for the default networks (benchmarks/performance.md, training throughput), so CPU results stay those of the
    host loop. ``epoch_bar_delay``: see :class:`HostEpochs`."""
    if config.device_resident not in RESIDENT:
        raise ValueError(f"device_resident must be one of {RESIDENT}, got {config.device_resident!r}")
    always = config.device_resident == "always"
    if always or (config.device_resident == "auto" and jax.default_backend() != "cpu"):
        data = source.device_data() if hasattr(source, "device_data") else None
        if data is None and always:
            raise ValueError(f"{type(source).__name__} has no device-resident form (its batches are built on the "
                             "host); use device_resident='auto' or 'never'")
        if data is not None and (always or data.nbytes <= config.device_budget * memory_bytes()):
            return DeviceEpochs(graphdef, loss_fn, tx, data, config.batch_size,
                                data_mesh(config.devices, config.batch_size))
    return HostEpochs(graphdef, loss_fn, tx, source, config.batch_size, getattr(source, "prefetch", 0),
                      config.progress, epoch_bar_delay)
