"""Seconds per embedding call (``omics_cl.core.train.predict``) on a small cae: the first call (compiles) and
the later ones, against the baseline, a fresh ``jax.jit`` per call (what ``predict`` did before its compiled
apply was cached, so every call recompiled).

    python benchmarks/predict_calls.py --calls 6 --rounds 3 --json benchmarks/results/predict_calls.json
    python benchmarks/predict_calls.py --calls 6 --rounds 3 --hidden 1024,1024 --json ... --append
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MACHINE, median_table, write_json_atomic

from omics_cl.core.train import predict
from omics_cl.data.sources import KEYS, ArraySource
from omics_cl.models.cae import AutoEncoder, CAEConfig
from omics_cl.models.common import encoder_latent


def jit_per_call(fn, model, source, batch_size: int = 4096) -> np.ndarray:
    """The baseline: ``predict`` as it was, a new jitted apply built (and compiled) on every call."""
    graphdef, params = nnx.split(model)
    apply = jax.jit(lambda p, batch: fn(nnx.merge(graphdef, p), batch))
    return np.concatenate([np.asarray(apply(params, source.get(np.arange(s, min(s + batch_size, source.n_obs)))))
                           for s in range(0, source.n_obs, batch_size)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cells", type=int, default=3000)
    p.add_argument("--genes", type=int, default=2000)
    p.add_argument("--hidden", default="128", help="cae hidden layer widths")
    p.add_argument("--calls", type=int, default=6, help="calls per path and round (the first compiles)")
    p.add_argument("--rounds", type=int, default=3,
                   help="times both paths run, in turn, each on a new model of the same structure")
    p.add_argument("--json", required=True, help="output JSON list of rows")
    p.add_argument("--append", action="store_true", help="keep the rows already in --json")
    args = p.parse_args()
    config = CAEConfig(hidden=tuple(int(h) for h in args.hidden.split(",")))
    x = np.random.default_rng(0).random((args.cells, args.genes), dtype=np.float32)
    source = ArraySource(**{KEYS.X: x})
    paths = {"predict (cached jit)": predict, "jit per call (baseline)": jit_per_call}
    rows = json.loads(Path(args.json).read_text()) if args.append and Path(args.json).exists() else []
    for round_ in range(args.rounds):
        for path, call in paths.items():
            model = AutoEncoder(args.genes, config, rngs=nnx.Rngs(1000 + 2 * round_ + (path != "predict (cached jit)")))
            for i in range(args.calls):
                started = time.perf_counter()
                call(encoder_latent, model, source)
                seconds = time.perf_counter() - started
                call_kind = "later" if i else ("first in process" if round_ == 0 else "first, new model")
                rows.append({"path": path, "call": call_kind, "round": round_,
                             "seconds": seconds, "cells": args.cells, "hidden": args.hidden, "machine": MACHINE})
        write_json_atomic(rows, args.json)
    print(f"\nMachine: {MACHINE}\ncae (hidden {args.hidden}, latent {config.latent}), {args.cells} x {args.genes} "
          f"cells; medians [spread max - min] over {args.rounds} rounds x calls; each round a new model\n")
    print(median_table(rows, ["hidden", "path", "call"], ["seconds"], spread=True))


if __name__ == "__main__":
    main()
