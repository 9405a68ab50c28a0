"""Saved models on disk: one directory per model, no pickle.

``params.msgpack`` holds a ``flax.nnx`` module's state (flax msgpack), ``arrays.npz`` named numpy arrays
(numeric or fixed-width text, read back with ``allow_pickle=False``), and ``model.json`` the caller's
description plus the format, its version and each file's sha256. The directory is written beside the
target under a temporary name and renamed into place, so a reader never sees a half-written model.
Nothing here knows about methods or AnnData.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
from flax import nnx, serialization

FORMAT = "omics_cl saved model"
FORMAT_VERSION = 1
PARAMS, ARRAYS, META = "params.msgpack", "arrays.npz", "model.json"
RESERVED = ("format", "format_version", "files")


@dataclass(frozen=True)
class SavedModel:
    """What :func:`read_model` returns: the description (``model.json`` without the format keys), the
    module state as a nested dict of numpy arrays, and the named arrays."""

    meta: dict
    params: dict
    arrays: dict[str, np.ndarray]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_new_path(path: str | os.PathLike) -> Path:
    """``path`` as an absolute path where a model can be saved: it must not exist, its parent must."""
    path = Path(path).absolute()
    if path.exists():
        raise ValueError(f"{path} already exists; a saved model is never overwritten: remove it or choose "
                         "another directory")
    if not path.parent.is_dir():
        raise ValueError(f"cannot save a model in {path}: directory {path.parent} does not exist")
    return path


def save_model(path: str | os.PathLike, model: nnx.Module, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write ``model``'s state, the JSON-serialisable ``meta`` and ``arrays`` as a new directory ``path``
    (atomically; an existing ``path`` is refused)."""
    path = check_new_path(path)
    for name, value in arrays.items():
        if np.asarray(value).dtype.hasobject:
            raise ValueError(f"array {name!r} holds Python objects; convert it to numbers or fixed-width text "
                             "(e.g. .astype(str)) so that it loads without pickle")
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        state = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model)))
        (tmp / PARAMS).write_bytes(serialization.msgpack_serialize(state))
        with open(tmp / ARRAYS, "wb") as fh:
            np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})
        doc = {**meta, "format": FORMAT, "format_version": FORMAT_VERSION,
               "files": {name: _sha256(tmp / name) for name in (PARAMS, ARRAYS)}}
        (tmp / META).write_text(json.dumps(doc, indent=1))
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_model(path: str | os.PathLike) -> SavedModel:
    """Read a directory written by :func:`save_model`; ``ValueError`` naming the problem when it is missing,
    of another format or version, or corrupt (a file missing or its sha256 changed)."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"no saved model at {path}: not a directory")
    meta_file = path / META
    if not meta_file.is_file():
        raise ValueError(f"{path} is not a saved omics_cl model: {META} is missing")
    try:
        doc = json.loads(meta_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{meta_file} is corrupt ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path} is not a saved omics_cl model ({META} does not name the format {FORMAT!r})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} has saved-model format version {doc.get('format_version')!r}; this omics_cl "
                         f"reads version {FORMAT_VERSION} (the model was written by omics_cl "
                         f"{doc.get('versions', {}).get('omics_cl', 'unknown')}); install that version or retrain")
    files = doc.get("files") or {}
    for name in (PARAMS, ARRAYS):
        if not (path / name).is_file():
            raise ValueError(f"saved model {path} is incomplete: {name} is missing")
        if files.get(name) != _sha256(path / name):
            raise ValueError(f"saved model {path} is corrupt: {name} does not match the sha256 in {META}")
    params = serialization.msgpack_restore((path / PARAMS).read_bytes())
    with np.load(path / ARRAYS, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    return SavedModel({k: v for k, v in doc.items() if k not in RESERVED}, params, arrays)


def _layout(tree) -> dict[str, tuple]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(p): (tuple(np.shape(x)), str(np.asarray(x).dtype)) for p, x in leaves}


def restore(model: nnx.Module, params: dict) -> nnx.Module:
    """``model`` (built with the saved shapes) with its state replaced by ``params`` from :func:`read_model`;
    ``ValueError`` listing the differences when they do not fit."""
    state = nnx.state(model)
    expected, found = _layout(nnx.to_pure_dict(state)), _layout(params)
    if expected != found:
        diff = sorted(set(expected.items()) ^ set(found.items()))[:4]
        raise ValueError(f"saved parameters do not fit the model built from the saved config (e.g. {diff})")
    nnx.replace_by_pure_dict(state, params)
    nnx.update(model, state)
    return model
