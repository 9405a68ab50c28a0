"""Checks and readers of ``omics-cl`` inputs: ``--set`` parameters, paths, AnnData / MuData files."""
from __future__ import annotations

import json
from pathlib import Path

from omics_cl import models
from omics_cl.cli_io import check_readable, check_writable

CLUSTER_KEYS = "obsm X_NAME, obs NAME_cluster"  # what --key-added names for cluster and integrate
TRANSFER_KEYS = "obs NAME_label, NAME_is_novel, obsm X_NAME"  # and for transfer


def add_key_argument(parser, written: str) -> None:
    """``--key-added``; ``written`` lists the keys it names, e.g. ``"obsm X_NAME, obs NAME_cluster"``."""
    parser.add_argument("--key-added", default=None, metavar="NAME",
                        help=f"write the results under this name instead of the method's ({written}, ...), e.g. to "
                             "keep an earlier run's results in the input beside them")


def method_params(args, job: str) -> dict:
    """``--epochs`` and every ``--set KEY=VALUE`` (values read as JSON, else as text), checked against the
    method's config before any data is read."""
    params = {}
    if getattr(args, "epochs", None) is not None:
        params["epochs"] = args.epochs
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    method = models.get(args.method, job)
    if method.train is None:
        params.pop("epochs", None)  # untrained methods (pca) ignore --epochs
    try:
        models.configure(method, **params)
    except TypeError as err:
        raise ValueError(f"--set: {err}") from None
    return params


def read_input(path, kind: str = "h5ad", backed: bool = False):
    """An input AnnData (``h5ad``; ``backed``: X left in the file, opened read-only) or MuData (``h5mu``); a file
    that cannot be read (truncated, not HDF5, not an AnnData) becomes a ``ValueError`` naming it, so the CLI
    ends with one line and exit status 2."""
    import anndata as ad
    import mudata as md

    reader = ad.read_h5ad if kind == "h5ad" else md.read_h5mu
    try:
        return reader(path, backed="r") if backed else reader(path)
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"cannot read {path} as .{kind} ({type(err).__name__}: {err}); is the file complete?") from None


def check_paths(inputs: list[Path], out: Path) -> None:
    for src in inputs:
        if not src.is_file():
            raise ValueError(f"input file {src} not found")
        if out.resolve() == src.resolve():
            raise ValueError(f"--out must differ from the input {src}; omics-cl never overwrites its input")
        check_readable(src)
    if not out.resolve().parent.is_dir():
        raise ValueError(f"output directory {out.resolve().parent} does not exist")
    check_writable(out.resolve().parent)


def check_paired_args(args, out: Path, context: str = "") -> None:
    """Exactly one paired input (``--mudata``, ``--multiome``, or ``--rna`` with ``--atac``), its files readable
    and ``out`` writable; ``context`` prefixes the error."""
    given = [args.mudata is not None, args.multiome is not None, args.rna is not None or args.atac is not None]
    if sum(given) != 1 or (args.rna is None) != (args.atac is None):
        raise ValueError(f"{context}give one of --mudata, --multiome, or both --rna and --atac")
    check_paths([Path(p) for p in (args.mudata, args.multiome, args.rna, args.atac) if p], out)


def read_paired(args):
    """The MuData of the paired input checked by :func:`check_paired_args`."""
    import mudata as md

    from omics_cl import io

    if args.mudata:
        return read_input(args.mudata, "h5mu")
    if args.multiome:
        return io.read_10x_multiome(args.multiome)
    return md.MuData({"rna": read_input(args.rna), "atac": read_input(args.atac)})
