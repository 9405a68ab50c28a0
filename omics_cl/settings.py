"""Process-wide settings.

- :func:`compilation_cache`: keep jax's compiled programs on disk, so that a new process loads them instead of
  compiling again (the ``omics-cl`` command turns it on; ``$OMICS_CL_COMPILATION_CACHE=0`` turns that off).
"""
from __future__ import annotations

import os
from pathlib import Path

COMPILATION_CACHE_VAR = "OMICS_CL_COMPILATION_CACHE"
OFF_VALUES = ("0", "false", "no")


def compilation_cache(directory: str | os.PathLike | None = None) -> Path | None:
    """Turn on jax's persistent compilation cache for this process; call it before any jax work.

    Programs compiled from then on are written to ``directory`` (default: ``$OMICS_CL_COMPILATION_CACHE`` when it
    names a directory, else ``<omics_cl.datasets.cache_dir()>/jax``), and a later process loads them instead of
    compiling: the same executables, so the same results. Every program is kept (jax's default keeps only those that
    took a second or more to compile; most of this package's take less, and there are some thirty per method).

    Parameters
    ----------
    directory
        Cache directory (created if missing).

    Returns
    -------
    pathlib.Path or None
        The directory in use; ``None`` where jax already had a cache directory, which is left as it is.
    """
    import jax

    if jax.config.jax_compilation_cache_dir:
        return None
    path = compilation_cache_directory(directory)
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return path


def compilation_cache_directory(directory: str | os.PathLike | None = None) -> Path:
    """Where :func:`compilation_cache` keeps the programs: ``directory``, else ``$OMICS_CL_COMPILATION_CACHE`` when
    it names a directory, else ``<omics_cl.datasets.cache_dir()>/jax``."""
    from omics_cl.data.registry import cache_dir

    env = os.environ.get(COMPILATION_CACHE_VAR, "")
    named = env and env.lower() not in OFF_VALUES + ("1", "true", "yes")
    return Path(directory or (env if named else cache_dir() / "jax")).expanduser()


def compilation_cache_wanted() -> bool:
    """Whether ``$OMICS_CL_COMPILATION_CACHE`` leaves the cache on (anything but ``0``, ``false`` or ``no``)."""
    return os.environ.get(COMPILATION_CACHE_VAR, "").lower() not in OFF_VALUES
