"""Epoch-level resume of one scGLUE training stage (run in the anchors environment).

scGLUE keeps only its best checkpoints, and a stage at its own schedule takes hours on 2 cores, so a run stopped
mid-stage (a session's end) had to start that stage again. ``EpochResume`` keeps, after every epoch, all that the next
epoch reads: the network and its optimisers, the learning-rate schedulers, early stopping's and the checkpoint
handler's counters with the checkpoint files they refer to, the engines' epoch counters, torch's random state, the
data loaders' generators and the datasets' shuffle seeds. Under a fixed hash seed (``rerun_with_fixed_hash_seed``) a
stage resumed from it ends with the same model, bit for bit, as one that ran through (``scglue_resume_check.py``).
"""
import io
import os
import pathlib
import sys

import ignite
import numpy as np
import scglue
import torch

STATE_FILE = "resume.pt"
STOP_AFTER = "SCGLUE_STOP_AFTER_EPOCH"  # for the check: the process ends right after keeping this epoch's state
STOPPED = 75


class EpochResume(scglue.models.plugins.TrainingPlugin):
    """Writes ``directory/resume.pt`` after each epoch and, when it is there at the start, continues from it."""

    def __init__(self, schedulers):
        super().__init__()
        self.schedulers = schedulers  # the stage's LRScheduler plugins, recorded as they attach

    def attach(self, net, trainer, train_engine, val_engine, train_loader, val_loader, directory, **kwargs):
        loaders = train_loader.data_loaders + val_loader.data_loaders
        handlers = engine_handlers(train_engine, (ignite.handlers.Checkpoint, ignite.handlers.EarlyStopping))
        schedulers = [s for plugin in self.schedulers for s in plugin.schedulers]
        directory = pathlib.Path(directory)
        path = directory / STATE_FILE

        def save(engine):
            drain(train_loader)
            drain(val_loader)
            state = {
                "net": net.state_dict(), "trainer": trainer.state_dict(), "torch_rng": torch.get_rng_state(),
                "numpy_rng": np.random.get_state(),
                "generators": [loader.generator.get_state() for loader in loaders],
                "shuffle_seeds": [loader.dataset.shuffle_seed for loader in loaders],
                "train_engine": dict(train_engine.state_dict(), n_lrs=getattr(train_engine.state, "n_lrs", 0)),
                "val_engine": val_engine.state_dict(),
                "schedulers": [s.state_dict() for s in schedulers],
                "handlers": [h.state_dict() for h in handlers],
                "checkpoints": {p.name: p.read_bytes() for p in directory.glob("checkpoint_*.pt")},
            }
            buffer = io.BytesIO()
            torch.save(state, buffer)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(buffer.getvalue())
            os.replace(tmp, path)
            if os.environ.get(STOP_AFTER) == str(engine.state.epoch):
                for loader in loaders:
                    loader.dataset.clean()  # its shuffling workers would outlive the process
                os._exit(STOPPED)

        if path.exists():
            state = torch.load(path, weights_only=False)
            net.load_state_dict(state["net"])
            trainer.load_state_dict(dict(state["trainer"]))
            for loader, generator_state in zip(loaders, state["generators"]):
                loader.generator.set_state(generator_state)
            for loader, seed in zip(loaders, state["shuffle_seeds"]):
                restore_shuffle_seed(loader.dataset, seed)
            n_lrs = state["train_engine"].pop("n_lrs")
            train_engine.load_state_dict(state["train_engine"])
            train_engine.state.n_lrs = n_lrs
            val_engine.load_state_dict(state["val_engine"])
            for scheduler, scheduler_state in zip(schedulers, state["schedulers"]):
                scheduler.load_state_dict(scheduler_state)
            for handler, handler_state in zip(handlers, state["handlers"]):
                handler.load_state_dict(handler_state)
            for name, content in state["checkpoints"].items():
                (directory / name).write_bytes(content)

            def restore_random_state(engine):  # after Trainer.fit's torch.manual_seed
                torch.set_rng_state(state["torch_rng"])
                np.random.set_state(state["numpy_rng"])

            train_engine.add_event_handler(ignite.engine.Events.STARTED, restore_random_state)
            print(f"scglue: resuming {directory} after epoch {train_engine.state.epoch}", file=sys.stderr, flush=True)
        train_engine.add_event_handler(ignite.engine.Events.EPOCH_COMPLETED, save)


def engine_handlers(engine, kinds):
    """The handler objects of the given classes registered on ``engine``, in registration order."""
    found = []
    for entries in engine._event_handlers.values():
        for handler, _, _ in entries:
            handler = handler._parent() if hasattr(handler, "_parent") else handler
            if isinstance(handler, kinds) and handler not in found:
                found.append(handler)
    return found


def drain(parallel_loader):
    """Run out the epoch's data iterators (not the cycled graph ones) now. With ``drop_last`` the sampler draws its
    next permutation only when asked for one more batch, which an uninterrupted run does at the next epoch's start:
    drawing it now keeps that draw in the state."""
    for iterator, cycled in zip(parallel_loader.iterators or [], parallel_loader.cycle_flags):
        if not cycled:
            for _ in iterator:
                pass


def restore_shuffle_seed(dataset, seed):
    """Point ``dataset``'s next shuffle at ``seed``; its background workers (if any) are queued that seed onward."""
    if dataset.has_workers and dataset.shuffle_seed != seed:
        n_workers = len(scglue.models.data.processes[id(dataset)])
        for i in range(n_workers):
            dataset.seed_queue.put(seed + i)
    dataset.shuffle_seed = seed


def rerun_with_fixed_hash_seed():
    """Start this script again under ``PYTHONHASHSEED=0`` unless it runs so already. scGLUE's training follows
    Python's string hashing (two runs in fresh processes with the same seed differ after one epoch), so a stage
    resumed in a new process can only go on as the stopped one would have under a fixed hash seed."""
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.execve(sys.executable, [sys.executable, *sys.argv], dict(os.environ, PYTHONHASHSEED="0"))


def fit_resumable(model, *args, directory, **kwargs):
    """``model.fit(*args, directory=directory, **kwargs)``, resuming from ``directory/resume.pt`` when present."""
    lr_plugins = []
    attach = scglue.models.plugins.LRScheduler.attach

    def recording_attach(plugin, *a, **k):
        lr_plugins.append(plugin)
        return attach(plugin, *a, **k)

    trainer_fit = model.trainer.fit
    model.trainer.fit = lambda *a, **k: trainer_fit(*a, plugins=[EpochResume(lr_plugins)], **k)
    scglue.models.plugins.LRScheduler.attach = recording_attach
    try:
        model.fit(*args, directory=directory, **kwargs)
    finally:
        scglue.models.plugins.LRScheduler.attach = attach
        del model.trainer.fit
