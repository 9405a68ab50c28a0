"""Shared benchmark plumbing: machine description, median tables, atomic JSON output, labelled registry sets."""
from __future__ import annotations

import json
import os
import time

import numpy as np

from omics_cl import datasets, environment, metrics
from omics_cl.core import graph
from omics_cl.core.files import atomic_write


def add_seed_arguments(parser) -> None:
    """``--seeds N --first-seed F``: run seeds F, F+1, ..., F+N-1 (every benchmark script alike)."""
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds, from --first-seed on")
    parser.add_argument("--first-seed", type=int, default=0, help="first seed to run")


def seed_range(args) -> range:
    """The seeds :func:`add_seed_arguments` asks for."""
    return range(args.first_seed, args.first_seed + args.seeds)


def transfer_halves(n_obs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The label-transfer split of mop_snare_paired's cells: a seeded permutation cut in half (reference RNA of
    the first half, query ATAC of the second)."""
    perm = np.random.default_rng(seed).permutation(n_obs)
    return perm[: n_obs // 2], perm[n_obs // 2:]


def raw_step_seconds(model, loss_fn, source, config, seed: int, epochs: int, extra: dict | None = None) -> list[float]:
    """Seconds of each of ``epochs`` timed passes (after one untimed, compiling pass) of the jitted training step
    (``omics_cl.core.epochs.step_fn``) over one epoch's batches of ``source`` (``config``'s batch size, the order
    and keys ``fit`` uses for epoch 0 under ``seed``, each batch with ``extra`` added), put on the device before
    timing: the raw-step baseline of the throughput benchmarks."""
    import jax
    from flax import nnx

    from omics_cl.core import train as core_train
    from omics_cl.core.epochs import minibatches, step_fn

    graphdef, params = nnx.split(model)
    tx = core_train.make_optimizer(config)
    step, opt_state = jax.jit(step_fn(graphdef, loss_fn, tx)), tx.init(params)
    order = core_train.epoch_order(source, np.arange(source.n_obs), seed, 0)
    batches = [jax.device_put({**source.get(idx), **(extra or {})}) for idx in minibatches(order, config.batch_size)]
    keys = [jax.random.fold_in(jax.random.key(seed), b) for b in range(len(batches))]
    seconds = []
    for _ in range(epochs + 1):
        started = time.perf_counter()
        for batch, key in zip(batches, keys):
            params, opt_state, metrics = step(params, opt_state, batch, key)
        jax.block_until_ready((params, metrics))
        seconds.append(time.perf_counter() - started)
    return seconds[1:]


def scglue_stage_dir(root: str | None, run: str, max_epochs: int | None) -> str | None:
    """Where one scGLUE run keeps its finished training stages (``--scglue-workdir``): ``root/run``, with
    ``_max<N>`` for a capped schedule so that a capped and a full run never resume from each other; None
    without a root."""
    if not root:
        return None
    return os.path.join(root, run + (f"_max{max_epochs}" if max_epochs else ""))


def machine() -> str:
    """One line for the tables: CPU (family / model / stepping, AVX-512), cores, jax and its backend, the other
    libraries' versions, BLAS / OpenMP threads and ``$XLA_FLAGS`` (``omics_cl.environment``, as run records hold
    them)."""
    env = environment.machine()
    cpu = env["cpu"]
    versions = environment.library_versions()
    libs = ", ".join(f"{name} {v}" for name, v in versions.items()
                     if v != "unknown" and name not in ("omics_cl", "jax", "jaxlib"))
    threads = ", ".join(f"{api} {n}" for api, n in sorted(env["threads"].items())) or "unknown"
    return (f"{cpu['name']} (family {cpu.get('family', '?')} model {cpu.get('model', '?')} "
            f"stepping {cpu.get('stepping', '?')}, "
            f"{'avx512' if cpu['avx512'] else 'no avx512'}), {env['cores']} cores, jax {versions['jax']} on "
            f"{env['backend']}, python {env['python']}; {libs}; threads: {threads}; XLA_FLAGS={env['xla_flags']!r}")


def write_json_atomic(rows: list[dict], path: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            json.dump(rows, fh, indent=1)

    atomic_write(path, write)


def _fmt(x: float) -> str:
    """Three decimals; small nonzero values (e.g. FOSCTTM) in scientific notation so they do not read as 0."""
    return f"{x:.2e}" if 0 < abs(x) < 0.005 else f"{x:.3f}"


def median_table(rows: list[dict], keys: list[str], values: list[str], spread: bool = False) -> str:
    """Markdown table of medians of ``values`` over rows grouped by ``keys`` (first-seen order); with
    ``spread``, each float median is followed by the spread (max - min) in brackets."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    lines = ["| " + " | ".join(keys + values + ["runs"]) + " |", "|" + "---|" * (len(keys) + len(values) + 1)]
    for group, members in groups.items():
        cells = []
        for v in values:
            xs = [m[v] for m in members if m.get(v) is not None]
            if not xs:
                cells.append("n/a")
            elif isinstance(xs[0], float):
                cells.append(_fmt(float(np.median(xs))) + (f" [{_fmt(max(xs) - min(xs))}]" if spread else ""))
            else:
                cells.append(f"{np.median(xs):g}")
        lines.append("| " + " | ".join([str(g) for g in group] + cells + [str(len(members))]) + " |")
    return "\n".join(lines)


MACHINE = machine()  # recorded with every benchmark row


def require_obs_columns(name: str, adata, keys) -> None:
    """Exit with the columns ``adata.obs`` has when any of ``keys`` is not one of them."""
    missing = [key for key in keys if key not in adata.obs]
    if missing:
        raise SystemExit(f"{name} has no obs column {missing}; it has {list(adata.obs.columns)}")


def labelled_rna(name: str, label_key: str | None = None):
    """``(manifest, adata, labels, k)``: a registry set's RNA AnnData, its labels in ``label_key`` (``None``: the
    manifest's default) and the number of labelled classes (the n_clusters protocol's K); prints what was loaded."""
    manifest = datasets.get_manifest(name)
    adata = datasets.load(name, modality="rna")
    label_key = label_key or manifest.default_label_key
    require_obs_columns(name, adata, [label_key])
    labels = adata.obs[label_key]
    scored = metrics.labelled_mask(labels, manifest.unlabelled_values)
    k = int(labels[scored].nunique())
    print(f"{name}: {adata.n_obs} cells x {adata.n_vars} genes, {k} classes in "
          f"{label_key} ({int(scored.sum())} cells scored)", flush=True)
    return manifest, adata, labels, k


def n_clusters_leiden(embedding: np.ndarray, seed: int, k: int) -> np.ndarray:
    """Consensus Leiden at ``k`` clusters on the 15-neighbour cosine graph of ``embedding`` (the n_clusters protocol,
    as ``tl.cluster_embedding``)."""
    labels, _, _ = graph.consensus_leiden(graph.neighbor_graph(embedding, 15, "cosine", seed), seed, None, 1.0, k)
    return labels


def clustering_row(manifest, truth, labels: np.ndarray, seconds: float, **fields) -> dict:
    """One benchmark row: ``fields`` then the scores of ``labels`` against ``truth`` (the manifest's unlabelled values
    left out), the number of clusters and ``seconds``; printed, and returned with the machine."""
    scores = metrics.clustering_scores(truth, labels.astype(str), exclude=manifest.unlabelled_values)
    row = {**fields, **scores, "n_clusters": len(np.unique(labels)), "train_seconds": seconds}
    print(json.dumps(row), flush=True)
    return {**row, "machine": MACHINE}


def print_clustering_summary(rows: list[dict]) -> None:
    """The machine, then the median [spread] of each (dataset, method)'s clustering scores."""
    print(f"\nmachine: {machine()}")
    print(median_table(rows, ["dataset", "method"], ["nmi", "ari", "acc", "n_clusters"], spread=True))
