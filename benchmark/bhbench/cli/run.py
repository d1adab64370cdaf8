"""`bhbench run`: methods x folds under the protocol, records written, a summary printed."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from bhbench.cli.common import api_kwargs, path_arg, protocol_args, sandbox_arg
from bhbench.cli.output import console, failures, out, tagged
from bhbench.config import COMMITTED_RESULTS, results_dir

if TYPE_CHECKING:
    from bhbench.api import RunResult
    from bhbench.executors import SlurmOptions


def add_parser(sub: argparse._SubParsersAction) -> None:
    from bhbench.config import COMMITTED_RESULTS, SCRATCH_RESULTS

    p = sub.add_parser("run", help="run methods under the protocol and write records")
    p.add_argument("--method", "-m", action="append", required=True, metavar="NAME",
                   help="method name, wildcard ('pftas_*') or family (handcrafted); repeatable")  # fmt: skip
    protocol_args(p)
    p.add_argument("--params", action="append", default=[], type=path_arg, metavar="FILE",
                   help="parameters from `bhbench tune` (each fold runs with its own); repeatable")  # fmt: skip
    p.add_argument("--results", type=path_arg, default=None,
                   help=f"record folder (default $BHBENCH_RESULTS, else ./{SCRATCH_RESULTS}; "
                        f"the committed leaderboard's is {COMMITTED_RESULTS})")  # fmt: skip
    p.add_argument("--force", action="store_true", help="redo folds that already have a record")
    p.add_argument("--fps-images", type=int, default=16, help="images timed for FPS on the first fold (0: no timing)")
    p.add_argument("--executor", choices=["local", "process", "slurm"], default=None,
                   help="local: one worker process; process: --workers processes (default: one per core); "
                        "slurm: a submitit job array, one task per (method, fold)")  # fmt: skip
    p.add_argument("--workers", type=int, default=1, help="worker processes running (method, fold) jobs")
    sandbox_arg(p)
    slurm_args(p)
    p.set_defaults(func=run)


def slurm_args(p: argparse.ArgumentParser) -> None:
    """The Slurm job options of --executor slurm (run and tune)."""
    g = p.add_argument_group("Slurm (--executor slurm)")
    g.add_argument("--slurm-partition", default=None)
    g.add_argument("--slurm-gpus", type=int, default=0, help="GPUs per job")
    g.add_argument("--slurm-cpus", type=int, default=2, help="CPUs per job")
    g.add_argument("--slurm-mem", type=float, default=None, help="memory per job, GB")
    g.add_argument("--slurm-time", type=int, default=120, help="time limit per job, minutes")
    g.add_argument("--slurm-logs", type=path_arg, default=None,
                   help="submitit log folder (default <results>/slurm-logs; tune: in the cache)")  # fmt: skip
    g.add_argument("--slurm-parallelism", type=int, default=64, help="array tasks running at once")
    g.add_argument("--slurm-cluster", choices=["slurm", "local"], default="slurm",
                   help="local: the same job array through submitit's local executor (a dry run)")  # fmt: skip


def slurm_options(args: argparse.Namespace) -> SlurmOptions:
    from bhbench.executors import SlurmOptions

    return SlurmOptions(args.slurm_partition, args.slurm_gpus, args.slurm_cpus, args.slurm_mem, args.slurm_time,
                        args.slurm_logs, args.slurm_parallelism, args.slurm_cluster)  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from bhbench import api

    try:
        result = api.run(args.method, tuned=args.params, results=args.results, executor=args.executor,
                         workers=args.workers, slurm=slurm_options(args), force=args.force, fps_images=args.fps_images,
                         **api_kwargs(args))  # fmt: skip
    except api.Interrupted as stop:
        console.print(f"interrupted: {stop}; to resume, rerun: bhbench {shlex.join(sys.argv[1:])}")
        if stop.revealed:
            console.print(escape(str(stop.revealed)))
        return 130
    for text in result.warnings:
        console.print(tagged(text, "warning (shown once)", "warning"))
    for f in result.failures:
        console.print(
            tagged(f"{f.job.spec.name} fold {f.job.fold.index}: {f.reason}; log {f.log}", "job failed", "error")
        )
    _summary(result, args.verbose)
    for j in result.damaged:
        console.print(tagged(f"{j.job.where.record}: {j.job.damaged}; the fold was redone", "damaged record", "error"))
    # The reading commands read the committed board and the default results folder unless told.
    folders = "" if result.results == results_dir() else f" --results {COMMITTED_RESULTS} --results {result.results}"
    for s in result.standings:
        aside = " (a smoke result of the quick recipe: the leaderboard lists it apart, unranked)" if s.smoke else ""
        dataset, protocol = s.board.parent.name, s.board.name
        console.print(escape(
            f"{s.method} (PRR {100 * s.headline:.1f}) would rank {s.place} of {s.of} by mean PRR on the committed "
            f"leaderboard ({dataset}, {protocol}){aside}; `bhbench report -m {s.method}{folders}` ranks it "
            "beside the committed rows, with intervals"
        ))  # fmt: skip
    if result.revealed:
        console.print(escape(str(result.revealed)))
    return 0 if result.ok else 1


def _summary(result: RunResult, verbose: bool) -> None:
    from bhbench.leaderboard import aggregate, pct
    from bhbench.protocol import MAGNIFICATIONS

    dataset = result.plan.dataset
    private = dataset.name == "synthetic-private"
    title = "% mean ± std over folds; PRR = patient recognition rate, mean of magnifications" + (
        (" — synthetic, private cohort" if private else " — synthetic data") if dataset.synthetic else ""
    )
    mags = [f"{m}X" for m in MAGNIFICATIONS]
    table = Table(
        "method", "folds", "failed", "PRR", "pooled PRR", *(f"PRR {m}" for m in mags), "accuracy", "AUC", title=title
    )
    for row in result.rows:
        summary = aggregate(row.label, row.records) if row.records else {}
        cells = [pct(summary.get(k, [])) for k in ("headline", "patient_rr", *mags, "accuracy", "auc")]
        jobs, failed = len(row.jobs) + len(row.ended), len(row.failed) + len(row.ended)
        table.add_row(escape(row.label), f"{len(row.records)} of {jobs}", str(failed), *cells)
    out.print(table)
    for row in result.rows:
        if row.folds_without_classes:
            folds = ", ".join(map(str, row.folds_without_classes))
            console.print(tagged(f"{row.label}: fold(s) {folds} trained without some classes (their records list them)",
                                 "note", "warning"))  # fmt: skip
    failures(result.jobs, verbose)
    if result.failed and len(result.failed) == len(result.jobs):
        console.print(f"every job failed ({len(result.jobs)} of {len(result.jobs)}); no result was saved")
    elif result.failed:
        console.print(f"{len(result.failed)} of {len(result.jobs)} job(s) failed; the others' records are saved")
