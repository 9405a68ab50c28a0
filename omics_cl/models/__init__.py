"""One file per method, each exporting a :class:`~omics_cl.models.method.Method`; the registry below is
what ``omics_cl.tl``, ``omics_cl.pl`` and the CLI read. A new method is one file plus one line in
``_BUILTIN`` (or, from outside the package, one call to :func:`register`).
"""
from __future__ import annotations

from omics_cl.models import cae, pca, sci2cl, scinno, scncl, siamese
from omics_cl.models.members import run_members
from omics_cl.models.method import (
    JOBS,
    Context,
    Method,
    StreamingError,
    TrainedRun,
    configure,
    run,
    train_method,
)

_BUILTIN = (pca.PCA, pca.PCA_UNSCALED, pca.PCA_PEARSON, cae.AE, cae.CAE, scinno.METHOD, siamese.METHOD, sci2cl.METHOD, scncl.METHOD)

METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to the registry (its name must be new); returns it."""
    if method.name in METHODS:
        raise ValueError(f"a method named {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def unregister(name: str) -> None:
    METHODS.pop(name, None)


def names(job: str) -> list[str]:
    """Registered method names for ``job``, in registration order."""
    return [name for name, m in METHODS.items() if m.job == job]


def streaming_names(job: str = "cluster") -> list[str]:
    """Registered ``job`` methods that can stream their input, with at least some config (``Method.streams``)."""
    return [name for name in names(job) if METHODS[name].streams]


def get(name: str, job: str) -> Method:
    """The registered ``job`` method called ``name``; ``ValueError`` naming the choices otherwise."""
    method = METHODS.get(name)
    if method is None or method.job != job:
        raise ValueError(f"unknown {job} method {name!r}; choose one of {names(job)}")
    return method


for _method in _BUILTIN:
    register(_method)

__all__ = ["JOBS", "METHODS", "Context", "Method", "StreamingError", "TrainedRun", "configure", "get", "names",
           "register", "run", "run_members", "streaming_names", "train_method", "unregister"]
