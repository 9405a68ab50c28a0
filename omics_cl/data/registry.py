"""Dataset registry: one JSON manifest per dataset in ``data_manifests/``, files in a data directory.

The data directory is ``$OMICS_CL_DATA_DIR``, defaulting to ``../shared/data`` beside the
repository when that exists. Files are checked against the manifest's sha256 before loading.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import anndata as ad

DATA_DIR_VAR = "OMICS_CL_DATA_DIR"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_REPO_DIR = _PACKAGE_DIR.parent
_verified: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class DataFile:
    role: str
    path: str
    sha256: str


@dataclass(frozen=True)
class Manifest:
    name: str
    description: str
    files: tuple[DataFile, ...]
    label_keys: tuple[str, ...]
    default_label_key: str
    unlabelled_values: tuple[str, ...]
    origin_url: str
    licence: str

    @property
    def modalities(self) -> list[str]:
        return [f.role for f in self.files if f.path.endswith(".h5ad")]

    def file(self, role: str) -> DataFile:
        for f in self.files:
            if f.role == role:
                return f
        raise KeyError(f"dataset {self.name!r} has no file with role {role!r}; roles: {[f.role for f in self.files]}")


def manifest_dir() -> Path:
    """Manifests shipped inside the wheel, else the repository's ``data_manifests/``."""
    packaged = _PACKAGE_DIR / "data_manifests"
    return packaged if packaged.is_dir() else _REPO_DIR / "data_manifests"


def data_dir() -> Path:
    env = os.environ.get(DATA_DIR_VAR)
    if env:
        return Path(env).expanduser()
    return (_REPO_DIR.parent / "shared" / "data").resolve()


def annotation_path(name: str) -> Path:
    """A gene annotation file shipped beside the data directory (``<data dir>/../annotations/<name>``)."""
    out = data_dir().parent / "annotations" / name
    if not out.is_file():
        raise FileNotFoundError(f"gene annotation {out} not found (set ${DATA_DIR_VAR} to the data directory "
                                "that has an annotations/ folder beside it)")
    return out


def _parse(raw: dict) -> Manifest:
    return Manifest(
        name=raw["name"], description=raw["description"],
        files=tuple(DataFile(f["role"], f["path"], f["sha256"]) for f in raw["files"]),
        label_keys=tuple(raw["label_keys"]), default_label_key=raw["default_label_key"],
        unlabelled_values=tuple(raw.get("unlabelled_values", [])),
        origin_url=raw["origin_url"], licence=raw["licence"],
    )


def manifests() -> dict[str, Manifest]:
    found = {}
    for path in sorted(manifest_dir().glob("*.json")):
        m = _parse(json.loads(path.read_text()))
        found[m.name] = m
    return found


def get_manifest(name: str) -> Manifest:
    known = manifests()
    if name not in known:
        raise KeyError(f"unknown dataset {name!r}; registered: {sorted(known)}")
    return known[name]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_status(name: str, role: str) -> tuple[Path, str]:
    """``(path, status)`` with status ``ok``, ``missing`` or ``checksum mismatch``."""
    entry = get_manifest(name).file(role)
    path = data_dir() / entry.path
    if not path.is_file():
        return path, "missing"
    st = path.stat()
    memo = (str(path), st.st_size, st.st_mtime_ns)
    if memo not in _verified:
        _verified[memo] = sha256(path)
    return path, "ok" if _verified[memo] == entry.sha256 else "checksum mismatch"


def path(name: str, role: str) -> Path:
    """Verified path of one file of a registered dataset."""
    p, status = file_status(name, role)
    if status == "missing":
        raise FileNotFoundError(
            f"dataset {name!r}: file {p} is missing. Set ${DATA_DIR_VAR} to the directory holding "
            f"{get_manifest(name).file(role).path} (now {data_dir()}); the data come from "
            f"{get_manifest(name).origin_url}")
    if status != "ok":
        raise ValueError(
            f"dataset {name!r}: file {p} does not match its sha256 in the manifest (corrupt or a different "
            f"version). Re-fetch it from {get_manifest(name).origin_url}, or point ${DATA_DIR_VAR} elsewhere")
    return p


def load(name: str, modality: str | None = None, backed: bool = False):
    """Load a registered dataset: an AnnData, or a MuData when it has several modalities and none is named."""
    m = get_manifest(name)
    mods = m.modalities
    mode = "r" if backed else None
    if modality is not None:
        if modality not in mods:
            raise KeyError(f"dataset {name!r} has modalities {mods}, not {modality!r}")
        return ad.read_h5ad(path(name, modality), backed=mode)
    if len(mods) == 1:
        return ad.read_h5ad(path(name, mods[0]), backed=mode)
    import mudata as md

    with md.set_options(pull_on_update=False):
        return md.MuData({mod: ad.read_h5ad(path(name, mod), backed=mode) for mod in mods})
