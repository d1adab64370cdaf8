"""`bhbench run`: methods x folds under the protocol, records written, a summary printed."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from bhbench.cli.common import discover, parse_sets, path_arg, prepare, protocol_args
from bhbench.cli.output import console, out, progress_bar
from bhbench.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    from bhbench.config import DEFAULT_RESULTS

    p = sub.add_parser("run", help="run methods under the protocol and write records")
    p.add_argument("--method", "-m", action="append", required=True, metavar="NAME",
                   help="method name, wildcard ('pftas_*') or family (handcrafted); repeatable")  # fmt: skip
    protocol_args(p)
    p.add_argument("--params", action="append", default=[], type=path_arg, metavar="FILE",
                   help="parameters from `bhbench tune` (each fold runs with its own); repeatable")  # fmt: skip
    p.add_argument(
        "--results", type=path_arg, default=DEFAULT_RESULTS, help=f"record folder (default {DEFAULT_RESULTS})"
    )
    p.add_argument("--force", action="store_true", help="redo folds that already have a record")
    p.add_argument("--fps-images", type=int, default=16, help="images timed for FPS on the first fold (0: no timing)")
    p.add_argument("--executor", choices=["local", "process", "slurm"], default=None,
                   help="local: one worker process; process: --workers processes (default: one per core); "
                        "slurm: a submitit job array, one task per (method, fold)")  # fmt: skip
    p.add_argument("--workers", type=int, default=1, help="worker processes running (method, fold) jobs")
    _slurm_args(p)
    p.set_defaults(func=run)


def _specs(args: argparse.Namespace) -> list:
    from bhbench import registry
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
        specs.append(MethodSpec.create(name, mine))
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

    discover(args)
    specs = _specs(args)  # a bad --method, --set, --params or --executor fails before any image is decoded
    tuned = _tuned(args, specs)
    slurm = _slurm_options(args)
    executor = executors.choose(args.executor, args.workers, slurm)
    options = runner.Options(
        results=args.results,
        force=args.force,
        timeout=args.timeout,
        skip_bad=args.skip_bad,
        fps_images=args.fps_images,
        submissions=args.submissions,
        workers=args.workers,
    )
    plan = prepare(args, options)
    jobs = _jobs(args, plan, options, specs, tuned)
    finished: list[runner.JobResult] = []
    with progress_bar("running (method x fold)", len(jobs)) as bump:

        def done(result: runner.JobResult) -> None:
            finished.append(result)
            bump(1)
            r = result.record or {}
            state = "finished earlier" if result.skipped else r.get("status", "?")
            prr = r.get("metrics", {}) or {}
            prr_text = f" PRR {100 * prr['overall']['patient_rr']:.1f}" if prr else ""
            console.print(f"  {result.job.spec.name} fold {result.job.fold.index}: {state}{prr_text}")

        try:
            ran = executors.execute(plan, jobs, options, executor, slurm, done)
        except KeyboardInterrupt:
            console.print(
                f"interrupted: {len(finished)} of {len(jobs)} (method, fold) jobs finished and saved; "
                "rerun the same command to resume"
            )
            return 130
    for f in ran.failures:
        console.print(f"[red]job failed:[/] {f.job.spec.name} fold {f.job.fold.index}: {f.reason}; log {f.log}")
    return max(_report(finished, plan.dataset.synthetic), 1 if ran.failures else 0)


def _slurm_options(args: argparse.Namespace) -> Any:
    from bhbench.executors import SlurmOptions

    return SlurmOptions(
        partition=args.slurm_partition,
        gpus=args.slurm_gpus,
        cpus=args.slurm_cpus,
        mem_gb=args.slurm_mem,
        time_min=args.slurm_time,
        logs=args.slurm_logs,
        parallelism=args.slurm_parallelism,
        cluster=args.slurm_cluster,
    )


def _report(finished: list, synthetic: bool) -> int:
    from bhbench.leaderboard import aggregate, pct
    from bhbench.method import MAGNIFICATIONS

    records = [f.record for f in finished if f.record]
    failures = [r for r in records if r["status"] != "ok"]
    title = "% mean ± std over folds; PRR = patient recognition rate" + (" — synthetic data" if synthetic else "")
    mags = [f"{m}X" for m in MAGNIFICATIONS]
    table = Table("method", "folds", "failed", "PRR", *(f"PRR {m}" for m in mags), "accuracy", "AUC", title=title)
    for name in dict.fromkeys(r["method"]["name"] for r in records):
        ok = [r for r in records if r["method"]["name"] == name and r["status"] == "ok"]
        row = aggregate(name, ok) if ok else {}
        cells = [pct(row.get(k, [])) for k in ("patient_rr", *mags, "accuracy", "auc")]
        table.add_row(name, str(len(ok)), str(sum(r["method"]["name"] == name for r in failures)), *cells)
    out.print(table)
    for r in failures:
        console.print(f"[red]failed:[/] {r['method']['name']} fold {r['split']['fold']}: {r['error']}")
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
    g.add_argument("--slurm-logs", type=path_arg, default=Path("slurm-logs"), help="submitit log folder")
    g.add_argument("--slurm-parallelism", type=int, default=64, help="array tasks running at once")
    g.add_argument("--slurm-cluster", choices=["slurm", "local"], default="slurm",
                   help="local: the same job array through submitit's local executor (a dry run)")  # fmt: skip
