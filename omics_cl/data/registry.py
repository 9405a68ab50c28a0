"""Dataset registry: one JSON manifest per dataset in ``data_manifests/``, files in a data directory.

The data directory is ``$OMICS_CL_DATA_DIR``, defaulting to ``../shared/data`` beside the
repository. A file missing there is downloaded from its manifest ``url`` (when it has one) with pooch
into ``$OMICS_CL_CACHE_DIR`` (default ``pooch.os_cache("omics_cl")``). Files are checked against the
manifest's sha256 before loading. ``$OMICS_CL_OFFLINE=1`` turns downloads off (a missing file is then an
error naming the URL); the tests set it.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import pooch

DATA_DIR_VAR = "OMICS_CL_DATA_DIR"
CACHE_DIR_VAR = "OMICS_CL_CACHE_DIR"
MANIFEST_DIR_VAR = "OMICS_CL_MANIFEST_DIR"
OFFLINE_VAR = "OMICS_CL_OFFLINE"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_REPO_DIR = _PACKAGE_DIR.parent
_verified: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class DataFile:
    role: str
    path: str
    sha256: str
    url: str | None = None


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
    """``$OMICS_CL_MANIFEST_DIR``, else the manifests shipped inside the wheel, else ``data_manifests/``."""
    env = os.environ.get(MANIFEST_DIR_VAR)
    if env:
        return Path(env).expanduser()
    packaged = _PACKAGE_DIR / "data_manifests"
    return packaged if packaged.is_dir() else _REPO_DIR / "data_manifests"


def data_dir() -> Path:
    """Where registered data files are looked for first: ``$OMICS_CL_DATA_DIR``, else ``shared/data`` beside the repository directory.

    Returns
    -------
    pathlib.Path
        The data directory.
    """
    env = os.environ.get(DATA_DIR_VAR)
    if env:
        return Path(env).expanduser()
    return (_REPO_DIR.parent / "shared" / "data").resolve()


def cache_dir() -> Path:
    """Where downloaded files go: ``$OMICS_CL_CACHE_DIR``, else ``pooch.os_cache("omics_cl")``.

    Returns
    -------
    pathlib.Path
        The cache directory.
    """
    env = os.environ.get(CACHE_DIR_VAR)
    return Path(env).expanduser() if env else Path(pooch.os_cache("omics_cl"))


def offline() -> bool:
    """Whether downloads are off: ``$OMICS_CL_OFFLINE`` set to anything but empty, ``0``, ``false`` or ``no``.

    Returns
    -------
    bool
        ``True`` when downloads are off.
    """
    return os.environ.get(OFFLINE_VAR, "").strip().lower() not in ("", "0", "false", "no")


def annotation_path(name: str) -> Path:
    """A gene annotation file shipped beside the data directory (``<data dir>/../annotations/<name>``).

    Parameters
    ----------
    name
        File name in the annotations directory.

    Returns
    -------
    pathlib.Path
        Path of the existing file.
    """
    out = data_dir().parent / "annotations" / name
    if not out.is_file():
        raise FileNotFoundError(f"gene annotation {out} not found (set ${DATA_DIR_VAR} to the data directory "
                                "that has an annotations/ folder beside it)")
    return out


def _parse(raw: dict) -> Manifest:
    return Manifest(
        name=raw["name"], description=raw["description"],
        files=tuple(DataFile(f["role"], f["path"], f["sha256"], f.get("url")) for f in raw["files"]),
        label_keys=tuple(raw["label_keys"]), default_label_key=raw["default_label_key"],
        unlabelled_values=tuple(raw.get("unlabelled_values", [])),
        origin_url=raw["origin_url"], licence=raw["licence"],
    )


def manifests() -> dict[str, Manifest]:
    """Every registered dataset: the ``*.json`` manifests of the manifest directory, by dataset name.

    Returns
    -------
    dict[str, Manifest]
        Manifest per dataset name.
    """
    found = {}
    for path in sorted(manifest_dir().glob("*.json")):
        m = _parse(json.loads(path.read_text()))
        found[m.name] = m
    return found


def get_manifest(name: str) -> Manifest:
    """The manifest of one registered dataset; ``KeyError`` naming the registered ones when unknown.

    Parameters
    ----------
    name
        Registered dataset name.

    Returns
    -------
    Manifest
        Its manifest.
    """
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


def _matches(path: Path, expected: str) -> bool:
    st = path.stat()
    memo = (str(path), st.st_size, st.st_mtime_ns)
    if memo not in _verified:
        _verified[memo] = sha256(path)
    return _verified[memo] == expected


def file_status(name: str, role: str) -> tuple[Path, str]:
    """``(path, status)``: ``ok`` or ``checksum mismatch`` in the data directory, else ``cached`` (a valid
    download in the cache directory) or ``missing`` (the data-directory path).

    Parameters
    ----------
    name
        Registered dataset name.
    role
        File role in the manifest (e.g. a modality).

    Returns
    -------
    tuple[pathlib.Path, str]
        The path and its status.
    """
    entry = get_manifest(name).file(role)
    path = data_dir() / entry.path
    if path.is_file():
        return path, "ok" if _matches(path, entry.sha256) else "checksum mismatch"
    cached = cache_dir() / entry.path
    if cached.is_file() and _matches(cached, entry.sha256):
        return cached, "cached"
    return path, "missing"


def _download(m: Manifest, entry: DataFile) -> Path:
    """Fetch ``entry.url`` into the cache with pooch; only a file matching its sha256 is kept."""
    target = cache_dir() / entry.path
    where = (f"dataset {m.name!r}, file {entry.role!r} ({entry.path}) is not in the data directory {data_dir()} "
             f"(${DATA_DIR_VAR}) nor in the download cache {cache_dir()} (${CACHE_DIR_VAR})")
    try:
        target.unlink(missing_ok=True)  # a copy that failed its sha256 check
        pooch.retrieve(entry.url, known_hash=f"sha256:{entry.sha256}", fname=target.name, path=target.parent,
                       progressbar=False)
    except ValueError:
        raise ValueError(f"{where}, and {entry.url} served a file whose sha256 does not match the manifest "
                         f"(nothing was kept). The data come from {m.origin_url}") from None
    except OSError as err:  # requests' errors are OSErrors too; their text is long, the class says enough
        status = getattr(getattr(err, "response", None), "status_code", None)
        reason = f"HTTP {status}" if status else type(err).__name__
        raise FileNotFoundError(
            f"{where}, and downloading {entry.url} failed ({reason}). Check the network and that "
            f"${CACHE_DIR_VAR} is writable, or put the file under ${DATA_DIR_VAR}; the data come from "
            f"{m.origin_url}") from None
    return target


def path(name: str, role: str) -> Path:
    """Verified path of one file of a registered dataset, downloading it into the cache when missing.

    Parameters
    ----------
    name
        Registered dataset name.
    role
        File role in the manifest (e.g. a modality).

    Returns
    -------
    pathlib.Path
        Path of the verified file.
    """
    p, status = file_status(name, role)
    m = get_manifest(name)
    entry = m.file(role)
    if status == "checksum mismatch":
        raise ValueError(
            f"dataset {name!r}: file {p} does not match its sha256 in the manifest (corrupt or a different "
            f"version). Re-fetch it from {m.origin_url}, or point ${DATA_DIR_VAR} elsewhere")
    if status != "missing":
        return p
    if entry.url is None:
        raise FileNotFoundError(
            f"dataset {name!r}: file {p} is missing. Set ${DATA_DIR_VAR} to the directory holding "
            f"{entry.path} (now {data_dir()}); no direct download is registered for this file (it was derived "
            f"from the original data: {m.origin_url})")
    if offline():
        raise FileNotFoundError(
            f"dataset {name!r}: file {p} is missing and downloads are off (${OFFLINE_VAR}={os.environ[OFFLINE_VAR]}). "
            f"Set ${DATA_DIR_VAR} to the directory holding {entry.path} (now {data_dir()}), or unset "
            f"${OFFLINE_VAR} to fetch {entry.url} into {cache_dir()} (${CACHE_DIR_VAR})")
    return _download(m, entry)


def load(name: str, modality: str | None = None, backed: bool = False):
    """Load a registered dataset: an AnnData, or a MuData when it has several modalities and none is named.

    Parameters
    ----------
    name
        Registered dataset name.
    modality
        Load only this modality (``None``: all).
    backed
        Open the h5ad files backed (read-only) instead of in memory.

    Returns
    -------
    AnnData or MuData
        The dataset.
    """
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
