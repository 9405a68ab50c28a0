"""Atomic file writes (the one helper used for checkpoints, results and outputs): write to a temporary
file in the target directory, then rename over the target, so a reader never sees a half-written file."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], suffix: str = ".tmp") -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it to ``path``.

    ``suffix`` is the temporary file's ending (e.g. ``".h5ad"`` for writers that check it). The directory
    must exist unless it can be created; the temporary file is removed when ``write`` fails.
    """
    path = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give the mode a plain open() would
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
