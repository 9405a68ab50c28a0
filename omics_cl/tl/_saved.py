"""Saving a trained method and loading it back, for any job (``omics_cl.core.saved_model`` on disk).

``model.json`` holds the method's name and job, its config and training config, the library versions and the
machine it was trained on (``omics_cl.environment``) and what the job adds (e.g. the reference's classes);
``params.msgpack`` the trained parameters; ``arrays.npz`` the job's arrays (e.g. selected genes, reference latent).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from omics_cl import models
from omics_cl.core import saved_model
from omics_cl.environment import provenance

# fields of the training config that describe one session, not the model
SESSION_FIELDS = ("progress", "checkpoint_path")


@dataclass(frozen=True)
class LoadedModel:
    """A saved method read back: the registered method, its config and training config, the model with the
    saved parameters, the rest of ``model.json`` and the saved arrays."""

    method: models.Method
    config: Any
    train: Any
    model: Any
    meta: dict
    arrays: dict[str, np.ndarray]


def check_saveable(path: str | os.PathLike, method: models.Method) -> None:
    """Refuse, before any training, a method that cannot be saved or a ``path`` that exists or has no parent."""
    if method.init is None:
        raise ValueError(f"{method.name} has no trained model to save")
    saved_model.check_new_path(path)


def save_method_model(path: str | os.PathLike, trained: models.TrainedRun, arrays: dict[str, np.ndarray],
                      **meta: Any) -> None:
    """Save ``trained`` (a :class:`omics_cl.models.TrainedRun`) with the job's ``arrays`` and JSON ``meta``."""
    train = {k: v for k, v in asdict(trained.train).items() if k not in SESSION_FIELDS}
    saved_model.save_model(path, trained.model, {
        "method": trained.method.name, "job": trained.method.job, "config": asdict(trained.config),
        "train": train, **provenance(), **meta}, arrays)


def load_method_model(path: str | os.PathLike, job: str,
                      build: Callable[[models.Method, Any, dict, dict], Any]) -> LoadedModel:
    """Read a model saved by :func:`save_method_model` for ``job``; ``build(method, config, meta, arrays)``
    returns a freshly initialised model of the saved shapes, whose parameters are then replaced by the saved
    ones. ``ValueError`` when the directory is missing, corrupt, of another format version, of another job or
    of a method that is not registered. Config fields the saved config lacks (it predates them) take the method's
    ``saved_defaults`` (the value the model was trained with), else today's default."""
    saved = saved_model.read_model(path)
    meta = saved.meta
    if meta.get("job") != job:
        raise ValueError(f"{path} holds a {meta.get('job')!r} model ({meta.get('method')}), not a {job} model")
    method = models.get(str(meta.get("method")), job)
    saved_config = meta.get("config")
    if isinstance(saved_config, dict):
        saved_config = {**{k: v for k, v in method.saved_defaults.items() if k not in saved_config}, **saved_config}
    try:
        config, train = models.configure(method, config=saved_config, train=meta.get("train"))
    except TypeError as err:
        raise ValueError(f"the config saved in {path} does not fit {method.name} in this omics_cl version "
                         f"(saved with {meta.get('versions', {}).get('omics_cl', 'unknown')}): {err}") from None
    model = saved_model.restore(build(method, config, meta, saved.arrays), saved.params)
    return LoadedModel(method, config, train, model, meta, saved.arrays)
