"""Output writing, access checks and one-line error messages for ``omics-cl``: every error the CLI reports
(bad input, an unreadable or corrupt file, permission denied, disk full) is one line on stderr, exit status 2."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from omics_cl.core.files import atomic_write

REPORTED = (ValueError, KeyError, OSError)  # the errors main() reports as one line (OSError: files, disks)


def error_message(err: BaseException) -> str:
    """``err`` as one line; an ``OSError`` as its reason and file (``Permission denied: in.h5ad``)."""
    if isinstance(err, OSError) and err.strerror:
        text = f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    else:
        text = str(err)
    return " ".join(text.split())


def check_readable(path: Path) -> None:
    """Refuse an input file the user may not read, before any work."""
    if not os.access(path, os.R_OK):
        raise ValueError(f"cannot read input file {path}: permission denied")


def check_writable(directory: Path) -> None:
    """Refuse an output directory the user may not write to, before any work."""
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write to output directory {directory}: permission denied")


def write_file(path: Path, write: Callable[[str], None], suffix: str = ".tmp") -> None:
    """``atomic_write``; when it fails (disk full, permission denied) ``path`` is left as it was, no temporary
    file remains, and the ``OSError`` raised names ``path``."""
    try:
        atomic_write(path, write, suffix=suffix)
    except OSError as err:
        raise OSError(err.errno, f"cannot write {path}: {err.strerror or err}") from err


def write_output(data, out: Path) -> None:
    """Write an AnnData (or a MuData, as .h5mu) with ``write_file``."""
    write_file(out, data.write, suffix=".tmp.h5mu" if hasattr(data, "mod") else ".tmp.h5ad")
