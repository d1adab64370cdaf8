"""`bhbench run`: methods x folds under the protocol, records written, a summary printed."""

from __future__ import annotations

import argparse
import shlex
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from bhbench.cli.common import (
    discover,
    parse_sets,
    path_arg,
    prepare,
    protocol_args,
    reveal,
    sandbox_arg,
    sandbox_of,
)
from bhbench.cli.output import console, out, progress_bar
from bhbench.errors import UserError


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
    _slurm_args(p)
    p.set_defaults(func=run)


def _specs(args: argparse.Namespace) -> list:
    from bhbench import params, registry
    from bhbench.runner import MethodSpec

    names = registry.resolve(args.method)
    sets = parse_sets(args.set)
    if args.device:
        sets["device"] = args.device
    unused = set(sets)
    specs = []
    for name in names:
        accepted = registry.get(name).cls.param_names()
        mine = {k: v for k, v in sets.items() if k in accepted}
        unused -= set(mine)
        specs.append(MethodSpec.create(name, params.validate(name, mine)))
    unused.discard("device")  # --device applies to the methods that have a device
    if unused:
        raise UserError(f"no selected method has parameter(s) {', '.join(sorted(unused))}")
    return specs


def _tuned(args: argparse.Namespace, specs: list) -> dict[str, tuple[Path, dict]]:
    """--params files by the method they tune, each naming a method that --method selects."""
    from bhbench import tuning

    tuned = {}
    for path in args.params:
        doc = tuning.read_params(path)
        if doc["method"] not in {s.name for s in specs}:
            raise UserError(f"--params {path} holds parameters of {doc['method']}, which no --method selects")
        tuned[doc["method"]] = (path, doc)
    return tuned


def _jobs(args: argparse.Namespace, plan: Any, options: Any, specs: list, tuned: dict) -> list:
    """(method x fold) jobs; a method with a --params file runs each fold with its tuned parameters."""
    from bhbench import runner, tuning

    sets = {**parse_sets(args.set), **({"device": args.device} if args.device else {})}
    jobs = runner.make_jobs(plan, [s for s in specs if s.name not in tuned], options)
    for path, doc in tuned.values():
        jobs += tuning.tuned_jobs(plan, doc, sets, options, path)
    return jobs


def run(args: argparse.Namespace) -> int:
    from bhbench import executors, runner
    from bhbench.config import results_dir

    discover(args)
    specs = _specs(args)  # a bad --method, --set, --params or --executor fails before any image is decoded
    tuned = _tuned(args, specs)
    slurm = _slurm_options(args)
    executor = executors.choose(args.executor, args.workers, slurm)
    launcher = sandbox_of(args)
    options = runner.Options(
        results=args.results or results_dir(),
        force=args.force,
        timeout=args.timeout,
        skip_bad=args.skip_bad,
        fps_images=args.fps_images,
        submissions=args.submissions,
        workers=args.workers,
        sandbox=launcher,
        memory_gb=args.memory,
    )
    plan = prepare(args, options)
    jobs = _jobs(args, plan, options, specs, tuned)
    for fold in plan.split.folds:
        for part, lacking in runner.missing_classes(plan, fold).items():
            where = "" if part == "all" else f" at {part}"
            console.print(
                f"[yellow]note:[/] fold {fold.index}{where}: no training image of {', '.join(lacking)}; "
                "every method is fitted without them and the records say so"
            )
    finished: list[runner.JobResult] = []
    with progress_bar("running (method x fold)", len(jobs)) as bump, Heartbeat(len(jobs)) as heart:

        def done(result: runner.JobResult) -> None:
            finished.append(result)
            heart.beat(len(finished))
            bump(1)
            r = result.record
            state = "finished earlier" if result.skipped else r.status
            if result.job.rerun:
                state += f" (rerun: {result.job.rerun})"
            prr_text = f" PRR {100 * r.metrics.headline:.1f}" if r.metrics else ""
            console.print(f"  {_label(result.job.spec)} fold {result.job.fold.index}: {state}{prr_text}")

        try:
            with collected_warnings() as caught:
                ran = executors.execute(plan, jobs, options, executor, slurm, done)
        except KeyboardInterrupt:
            saved = sum(1 for f in finished if f.record.ok)
            console.print(
                f"interrupted: {saved} of {len(jobs)} (method, fold) jobs finished and saved; "
                f"to resume, rerun: bhbench {shlex.join(sys.argv[1:])}"
            )
            reveal(plan)
            return 130
    for f in finished:  # the workers' warnings, kept in the records of this run's folds
        if not f.skipped:
            caught.update(dict.fromkeys(f.record.warnings or ()))
    for text in caught:
        console.print(f"[yellow]warning (shown once):[/] {escape(text)}")
    for f in ran.failures:
        console.print(f"[red]job failed:[/] {f.job.spec.name} fold {f.job.fold.index}: {f.reason}; log {f.log}")
    code = _report(finished, plan.dataset.synthetic, private=plan.dataset.name == "synthetic-private")
    _rank(finished, plan, options.results)
    reveal(plan)
    return max(code, 1 if ran.failures else 0)


def _rank(finished: list, plan: Any, written: Path) -> None:
    """Where each complete row of this run would rank on the committed leaderboard's section."""
    from bhbench.config import COMMITTED_RESULTS
    from bhbench.leaderboard import standing

    board = COMMITTED_RESULTS / plan.dataset.id / plan.protocol.id
    if written.resolve() == COMMITTED_RESULTS.resolve() or not board.is_dir():
        return
    from bhbench.leaderboard.aggregate import block_of

    records = [f.record for f in finished]
    smoke = {(r.method.name, r.method.params_hash) for r in records if block_of(r) == "smoke"}
    for (name, phash), (prr, folds) in standing.mean_headline(records).items():
        if folds == len(plan.split.folds) and (place := standing.would_rank((name, phash), prr, board)):
            aside = " (a smoke result of the quick recipe: the leaderboard lists it apart, unranked)"
            console.print(
                f"{name} (PRR {100 * prr:.1f}) would rank {place[0]} of {place[1]} by mean PRR on the committed "
                f"leaderboard ({plan.dataset.id}, {plan.protocol.id}){aside if (name, phash) in smoke else ''}; "
                f"`bhbench leaderboard --results {written}` ranks your own records"
            )


def _slurm_options(args: argparse.Namespace) -> Any:
    from bhbench.config import results_dir
    from bhbench.executors import SlurmOptions

    return SlurmOptions(
        partition=args.slurm_partition,
        gpus=args.slurm_gpus,
        cpus=args.slurm_cpus,
        mem_gb=args.slurm_mem,
        time_min=args.slurm_time,
        # Beside the records by default: never a stray folder in the working directory (or the repository).
        logs=args.slurm_logs or (args.results or results_dir()) / "slurm-logs",
        parallelism=args.slurm_parallelism,
        cluster=args.slurm_cluster,
    )


def _label(spec: Any) -> str:
    """A method with the parameters that make this variant: `lbp_svm [C=10]`, `pftas_svm [tuned]`."""
    from bhbench.params import describe

    shown = "tuned" if spec.tuned else describe(spec.name, spec.params)  # registered: the run created it
    return escape(f"{spec.name} [{shown}]" if shown else spec.name)  # printed through rich: [..] is markup


def _report(finished: list, synthetic: bool, private: bool = False) -> int:
    from bhbench.leaderboard import aggregate, pct
    from bhbench.protocol import MAGNIFICATIONS

    failures = [f for f in finished if not f.record.ok]
    title = "% mean ± std over folds; PRR = patient recognition rate, mean of magnifications" + (
        (" — synthetic, private cohort" if private else " — synthetic data") if synthetic else ""
    )
    mags = [f"{m}X" for m in MAGNIFICATIONS]
    table = Table(
        "method", "folds", "failed", "PRR", "pooled PRR", *(f"PRR {m}" for m in mags), "accuracy", "AUC", title=title
    )
    variants: dict[str, list] = {}  # one row per method and parameter set
    for f in finished:
        variants.setdefault(_label(f.job.spec), []).append(f.record)
    notes = []
    for label, records in variants.items():
        ok = [r for r in records if r.ok]
        row = aggregate(label, ok) if ok else {}
        cells = [pct(row.get(k, [])) for k in ("headline", "patient_rr", *mags, "accuracy", "auc")]
        table.add_row(label, f"{len(ok)} of {len(records)}", str(len(records) - len(ok)), *cells)
        gaps = [r for r in ok if r.split.missing_classes]
        if gaps:
            folds = ", ".join(str(r.split.fold) for r in gaps)
            notes.append(f"{label}: fold(s) {folds} trained without some classes (their records list them)")
    out.print(table)
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    for f in failures:
        console.print(f"[red]failed:[/] {_label(f.job.spec)} fold {f.job.fold.index}: {f.record.error}")
    if failures:
        console.print(f"{len(failures)} job(s) failed; the others' records are saved")
        return 1
    return 0


def _slurm_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Slurm (--executor slurm)")
    g.add_argument("--slurm-partition", default=None)
    g.add_argument("--slurm-gpus", type=int, default=0, help="GPUs per job")
    g.add_argument("--slurm-cpus", type=int, default=2, help="CPUs per job")
    g.add_argument("--slurm-mem", type=float, default=None, help="memory per job, GB")
    g.add_argument("--slurm-time", type=int, default=120, help="time limit per job, minutes")
    g.add_argument(
        "--slurm-logs", type=path_arg, default=None, help="submitit log folder (default <results>/slurm-logs)"
    )
    g.add_argument("--slurm-parallelism", type=int, default=64, help="array tasks running at once")
    g.add_argument("--slurm-cluster", choices=["slurm", "local"], default="slurm",
                   help="local: the same job array through submitit's local executor (a dry run)")  # fmt: skip


HEARTBEAT_SECONDS = 30.0  # a fold may fit for minutes: say the run is alive when nothing finishes for this long


class Heartbeat:
    """Prints "still working" while no (method, fold) job finishes, so a long fold is not mistaken
    for a hang. (Progress from inside a fold would need the worker to report it.)"""

    def __init__(self, total: int):
        self.total, self.done, self.last = total, 0, time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def beat(self, done: int) -> None:
        self.done, self.last = done, time.monotonic()

    def _watch(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            quiet = time.monotonic() - self.last
            if quiet >= HEARTBEAT_SECONDS:
                console.print(
                    f"  still working: {self.done} of {self.total} (method, fold) jobs done, "
                    f"none finished in the last {quiet:.0f} s"
                )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


@contextmanager
def collected_warnings() -> Iterator[dict[str, None]]:
    """Library warnings raised here while the jobs run (scoring a fold that lacks a class...),
    shown once each at the end instead of once per fold (the usual filters still apply)."""
    caught: dict[str, None] = {}
    with warnings.catch_warnings(record=True) as seen:
        yield caught
    caught.update(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in seen))
