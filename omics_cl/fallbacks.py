"""Fallbacks a run takes where a numerical routine fails on valid input (the HVG loess, ARPACK): each is warned
about and listed in the tool's run record, ``uns["omics_cl"][key]["fallbacks"]``."""
from __future__ import annotations

import functools
import warnings
from contextvars import ContextVar

_TAKEN: ContextVar[list[str] | None] = ContextVar("omics_cl_fallbacks", default=None)


def warn_fallback(message: str, stacklevel: int = 2) -> None:
    """Warn (``UserWarning``) that a fallback was taken and list it for the current tool's run record;
    ``stacklevel`` as ``warnings.warn``'s would be in the caller."""
    warnings.warn(message, UserWarning, stacklevel=stacklevel + 1)
    taken = _TAKEN.get()
    if taken is not None and message not in taken:
        taken.append(message)


def recorded(tool):
    """Decorator for a tool: the fallbacks taken during its call are kept for its run record (:func:`taken`); a
    tool called inside another adds to the outer call's list."""

    @functools.wraps(tool)
    def run(*args, **kwargs):
        if _TAKEN.get() is not None:
            return tool(*args, **kwargs)
        token = _TAKEN.set([])
        try:
            return tool(*args, **kwargs)
        finally:
            _TAKEN.reset(token)

    return run


def taken() -> list[str]:
    """The fallbacks taken so far in the current tool's call (none outside one)."""
    return list(_TAKEN.get() or [])
