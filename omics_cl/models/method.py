"""The method contract: a method is a description (:class:`Method`), run by :func:`run`.

A method names its job (``cluster`` / ``integrate`` / ``transfer``), carries its config dataclass and its
training defaults, and says how to build its batch source (from ``omics_cl.data.sources``), how to build
its model, its training stages and how to read results off the trained model. ``run`` wires these with
the stage runner of ``omics_cl.core.train``; ``omics_cl.tl`` and the CLI find methods in the registry
(``omics_cl.models.METHODS``).
"""
from __future__ import annotations

import numbers
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from omics_cl.core.train import StagesResult, TrainConfig, run_record, run_stages

JOBS = ("cluster", "integrate", "transfer")


class StreamingError(ValueError):
    """Streaming asked of a method that reads the whole matrix; ``by_config``: other configs of the method
    stream (e.g. cae with ``fusion="none"``), so the fix is a parameter rather than another method."""

    def __init__(self, message: str, method: str, by_config: bool):
        super().__init__(message)
        self.method = method
        self.by_config = by_config


@dataclass(frozen=True)
class Context:
    """What a run knows beyond its config: the seed and, for the cluster job, the clustering request
    (self-clustering methods read ``n_clusters`` / ``resolution`` / ``n_neighbors`` / ``leiden_restarts``; no
    labels)."""

    seed: int = 0
    n_clusters: int | None = None
    resolution: float = 1.0
    n_neighbors: int = 15
    leiden_restarts: int = 1


@dataclass(frozen=True)
class Method:
    """One method. ``source(data, config, ctx)`` -> batch source; ``init(source, config, ctx)`` -> model
    (None for untrained methods); ``stages(config, train, source, ctx)`` -> list of ``core.train.Stage``;
    ``embed(model, source, config, train, ctx)`` -> ``(arrays, notes)`` or ``(arrays, notes, state)``: named
    per-cell result arrays, extra record entries and (optional) named arrays fitted while embedding that
    ``query_state`` reuses (sci2cl: the PCA projection). Arrays by job: cluster ``embedding`` (+ ``memberships``
    when a self-clustering method reads off their argmax; without them ``tl.cluster`` runs Leiden on the
    embedding); integrate ``joint``, ``rna``, ``atac``; transfer ``rna_embedding``, ``atac_embedding``,
    ``probabilities`` and optionally ``novelty`` (default: 1 - the maximum probability) and ``query_clusters``. ``variants``: named parameter sets (e.g. ``"seed"``: the published recipe), chosen with
    ``variant=`` wherever parameters are given.
    ``map_query(model, query, config, ctx)`` -> ``(arrays, notes)`` (optional): the query arrays of ``embed``
    for new cells from a trained model, without training (transfer: ``omics_cl.data.transfer.QueryInputs``;
    integrate: ``omics_cl.data.paired.PairedQuery``); only methods with it can be saved for query mapping.
    ``query_state(arrays, state, config, ctx)`` -> named arrays (integrate; with ``map_query``): what
    ``map_query`` needs besides the parameters, from ``embed``'s arrays and state; saved with the model.
    ``streams``: the method reads its cells only through ``prepared.source()`` in epoch order (no neighbour or
    whole-matrix reads), so it can train on counts streamed from a backed file (``PreparedCounts.stream``); a
    predicate of the config when only some configs can (:meth:`can_stream`).
    ``saved_defaults``: config fields added after the method's models could first be saved, with the value that
    reproduces a model saved before the field existed (a saved config lacking the field is read with it, not
    with today's default).
    """

    name: str
    job: str
    config: Any
    train: TrainConfig | None
    source: Callable
    embed: Callable
    init: Callable | None = None
    stages: Callable | None = None
    self_clustering: bool = False
    summary: str = ""
    variants: dict = field(default_factory=dict)
    map_query: Callable | None = None
    query_state: Callable | None = None
    streams: bool | Callable[[Any], bool] = False
    saved_defaults: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.job not in JOBS:
            raise ValueError(f"job must be one of {JOBS}, got {self.job!r}")
        unknown = sorted(set(self.saved_defaults) - {f.name for f in fields(self.config)})
        if unknown:
            raise ValueError(f"saved_defaults of {self.name} name fields its config lacks: {unknown}")

    def can_stream(self, config) -> bool:
        """Whether the method streams its input with ``config`` (see ``streams``)."""
        return self.streams(config) if callable(self.streams) else self.streams


def _type_name(hint) -> str:
    return getattr(hint, "__name__", str(hint))


def coerce(hint, value, name: str):
    """``value`` checked against the type ``hint`` of a config field (lists become tuples); TypeError if not."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(hint):
            try:
                return coerce(option, value, name)
            except TypeError as err:
                errors.append(str(err))
        raise TypeError(f"{name}={value!r} matches none of {hint}")
    if hint is type(None):
        if value is None:
            return None
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            item = typing.get_args(hint)[0]
            return tuple(coerce(item, v, name) for v in value)
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
    elif hint is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise TypeError(f"{name} must be {_type_name(hint)}, got {value!r}")


def _apply(obj, params: dict, where: str):
    hints = typing.get_type_hints(type(obj))
    unknown = sorted(set(params) - set(hints))
    if unknown:
        raise TypeError(f"unknown {where} parameter(s) {unknown}; valid: {sorted(hints)}")
    return replace(obj, **{k: coerce(hints[k], v, k) for k, v in params.items()})


def configure(method: Method, config: dict | None = None, train: dict | None = None, variant: str | None = None,
              **params: Any) -> tuple[Any, TrainConfig | None]:
    """The method's config and training config with ``params`` applied.

    ``variant`` names one of ``method.variants``, applied first (``params`` win over it). Each keyword goes to
    whichever of the two has that field; a name both have is refused (pass it in ``config={...}`` or
    ``train={...}`` instead); an unknown name or a value of the wrong type raises ``TypeError`` listing the
    valid names.
    """
    if variant is not None:
        if variant not in method.variants:
            raise TypeError(f"unknown variant {variant!r} for {method.name}; variants: {sorted(method.variants)}")
        params = {**method.variants[variant], **params}
    cfg = _apply(method.config, config or {}, f"{method.name} config")
    tr = method.train
    if train:
        if tr is None:
            raise TypeError(f"{method.name} is not trained; it takes no train parameters")
        tr = _apply(tr, train, "train")
    cfg_fields = {f.name for f in fields(cfg)}
    train_fields = {f.name for f in fields(tr)} if tr is not None else set()
    for name in params:
        if name in cfg_fields and name in train_fields:
            raise TypeError(f"{name!r} is a field of both {type(cfg).__name__} and TrainConfig; pass "
                            f"config={{{name!r}: ...}} or train={{{name!r}: ...}}")
        if name not in cfg_fields and name not in train_fields:
            raise TypeError(f"unknown parameter {name!r} for {method.name}; valid parameters: "
                            f"{sorted(cfg_fields | train_fields)}")
    cfg = _apply(cfg, {k: v for k, v in params.items() if k in cfg_fields}, f"{method.name} config")
    if tr is not None:
        tr = _apply(tr, {k: v for k, v in params.items() if k in train_fields}, "train")
    return cfg, tr


@dataclass(frozen=True)
class TrainedRun:
    """A finished run: the method, its config and training config, the trained model (None for untrained
    methods), the named result arrays, the run record and the state ``embed`` fitted (see :class:`Method`)."""

    method: Method
    config: Any
    train: TrainConfig | None
    model: Any
    arrays: dict
    record: dict
    state: dict = field(default_factory=dict)


def train_method(method: Method, data: Any, ctx: Context = Context(), progress: bool = True,
                 **params: Any) -> TrainedRun:
    """Configure, build the source and model, run the stages, read the results; keeps the trained model."""
    config, train = configure(method, **params)
    if train is not None:
        train = replace(train, progress=progress and train.progress)
    source = method.source(data, config, ctx)
    model = method.init(source, config, ctx) if method.init is not None else None
    stages = method.stages(config, train, source, ctx) if method.stages is not None else []
    result = run_stages(model, stages, source, train, ctx.seed, desc=method.name) if stages else StagesResult(model)
    arrays, notes, *state = method.embed(result.model, source, config, train, ctx)
    record = run_record(config, train, result, variant=params.get("variant"), **notes)
    return TrainedRun(method, config, train, result.model, arrays, record, *state)


def run(method: Method, data: Any, ctx: Context = Context(), progress: bool = True,
        **params: Any) -> tuple[dict, dict]:
    """:func:`train_method` without the model: ``(arrays, record)``, the named result arrays and the run record
    (config, training fields, history, epochs, notes)."""
    trained = train_method(method, data, ctx, progress, **params)
    return trained.arrays, trained.record
