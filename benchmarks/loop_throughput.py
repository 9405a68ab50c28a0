"""Training throughput (cells/s) of every method's training loop against its raw step, stage by stage.

Each job is the user's call (``end_to_end.py``'s jobs: ``tl.cluster`` for cae / scinno / siamese, ``tl.transfer_labels``
for scncl, ``tl.integrate`` for sci2cl) with the training loop (``omics_cl.core.train.fit``) wrapped: every stage the
method trains is run from the same starting model along three paths in turn, each for one warm-up epoch
(compilation, not timed) and ``--epochs`` timed epochs:

- the **host loop** (``device_resident="never"``, the CPU default): batches built on the host, one dispatch per batch;
- the **device loop** (``"always"``, the accelerator default): the source's arrays on the device, one epoch per
  dispatch;
- the **raw step** (the baseline): the stage's jitted step looped from Python over one epoch's batches built
  by the source and put on the device before timing.

The method then goes on from the host loop's model, so a later stage starts where the method would (its stages are
shortened to ``--epochs`` + 1 epochs; a stage's cluster centres, for instance, come from that shortened training).
``of_raw_step``: a loop's cells/s over the raw step's median for the same stage. Labels are read only by the calls'
own scoring, never here.

    python benchmarks/loop_throughput.py --jobs cluster:zeisel_cortex:cae,transfer --rounds 2 --json out.json
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MACHINE, median_table, raw_step_seconds, write_json_atomic  # noqa: E402
from end_to_end import make_job  # noqa: E402

from omics_cl.core import train as core_train  # noqa: E402

JOBS = ("cluster:zeisel_cortex:cae,cluster:zeisel_cortex:scinno,cluster:zeisel_cortex:siamese,"
        "transfer,integrate")
PATHS = {"host": "host loop (CPU default)", "device": "device loop", "raw": "raw step (baseline)"}


def schedule_extra(schedule, epoch: int) -> dict:
    """The batch entries ``fit`` adds for ``schedule`` at ``epoch``."""
    if schedule is None:
        return {}
    return {core_train.SCHEDULE: {k: np.float32(v) for k, v in schedule(epoch).items()}}


class StageTimer:
    """Stands in for ``core.train.fit`` while a job runs: times each stage along ``paths`` and returns the host
    loop's result. ``rows`` gets one row per timed epoch."""

    def __init__(self, fit, job: str, paths: list[str], epochs: int, round_: int, rows: list[dict]):
        self.fit, self.job, self.paths, self.epochs, self.round, self.rows = fit, job, paths, epochs, round_, rows

    def __call__(self, model, loss_fn, source, config, seed, desc="training", schedule=None, after_epoch=None,
                 **kwargs):
        config = replace(config, epochs=self.epochs + 1, progress=False, early_stopping=False,
                         checkpoint_path=None)
        kept = None
        for key in self.paths:
            if key == "raw":
                seconds = raw_step_seconds(model, loss_fn, source, config, seed, self.epochs,
                                           schedule_extra(schedule, 0))
            else:
                mode = "never" if key == "host" else "always"
                result = self.fit(model, loss_fn, source, replace(config, device_resident=mode), seed, desc,
                                  schedule, after_epoch, **kwargs)
                seconds = result.epoch_seconds[1:]
                kept = result if key == "host" or kept is None else kept
            for s in seconds:
                row = {"job": self.job, "stage": desc, "path": PATHS[key], "round": self.round, "cells": source.n_obs,
                       "batch_size": config.batch_size, "cells_per_s": source.n_obs / s, "epoch_seconds": s}
                print(json.dumps(row), flush=True)
                self.rows.append({**row, "machine": MACHINE})
        if kept is None:
            kept = self.fit(model, loss_fn, source, config, seed, desc, schedule, after_epoch, **kwargs)
        return kept


def add_ratios(rows: list[dict]) -> None:
    """``of_raw_step`` of every row: its cells/s over the raw step's median for the same job and stage."""
    for group in {(r["job"], r["stage"]) for r in rows}:
        members = [r for r in rows if (r["job"], r["stage"]) == group]
        raw = [r["cells_per_s"] for r in members if r["path"] == PATHS["raw"]]
        for r in members:
            r["of_raw_step"] = r["cells_per_s"] / np.median(raw) if raw else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", default=JOBS, help="comma-separated jobs of end_to_end.py")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per path and stage (after one warm-up epoch)")
    p.add_argument("--rounds", type=int, default=1, help="times each job runs (all paths each time)")
    p.add_argument("--paths", default="host,device,raw", help=f"comma-separated, of {', '.join(PATHS)}")
    p.add_argument("--json", required=True, help="output JSON list of rows")
    p.add_argument("--append", action="store_true", help="keep the rows already in --json")
    args = p.parse_args(argv)
    paths = args.paths.split(",")
    if set(paths) - set(PATHS):
        p.error(f"unknown paths {sorted(set(paths) - set(PATHS))}")
    rows = json.loads(Path(args.json).read_text()) if args.append and Path(args.json).exists() else []
    original = core_train.fit
    try:
        for spec in args.jobs.split(","):
            call, _ = make_job(spec)
            for round_ in range(args.rounds):
                core_train.fit = StageTimer(original, spec, paths, args.epochs, round_, rows)
                call(0)
                write_json_atomic(rows, args.json)
    finally:
        core_train.fit = original
    add_ratios(rows)
    write_json_atomic(rows, args.json)
    print(f"\nmachine: {MACHINE}\nmedians over rounds x {args.epochs} timed epochs [spread max - min]; of_raw_step: "
          "cells/s over the raw step's median for the same stage")
    print(median_table(rows, ["job", "stage", "batch_size", "path"], ["cells_per_s", "of_raw_step", "epoch_seconds"],
                       spread=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
