"""Command line: parses arguments, calls the harness, prints with rich. No logic of its own."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bhbench.errors import UserError

# Wide tables when piped (CI logs), the terminal's width otherwise.
console = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 160)
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


# --- progress --------------------------------------------------------------------------------


@contextmanager
def progress_bar(label: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A rich bar on a terminal (a pulsing one when the total is unknown); in CI and pipes a single
    line when done, with no control codes."""
    if not console.is_terminal:
        count = [0]

        def bump(n: int) -> None:
            count[0] += n

        yield bump
        if count[0]:
            console.print(f"{label}: {count[0]} done")
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
        done = bar.tasks[0].completed
    if done:
        console.print(f"{label}: {done:.0f} done")


# --- helpers ---------------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """`--set` values: JSON where it parses (numbers, true/false, null, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"True": True, "False": False, "None": None}.get(text, text)


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    sets = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected key=value")
        sets[key.strip()] = parse_value(value.strip())
    return sets


def _discover(args: argparse.Namespace) -> None:
    from bhbench import registry

    registry.discover(args.submissions)
    for err in registry.discovery_errors():
        console.print(f"[yellow]warning:[/] skipped {err.source}: {err.message}")


# --- commands --------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    import fnmatch

    from bhbench import registry

    _discover(args)
    table = Table("name", "family", "tasks", "details", "reference", title="bhbench methods")
    for e in registry.entries():
        if args.pattern and not (fnmatch.fnmatchcase(e.name, args.pattern) or e.family == args.pattern):
            continue
        details = ", ".join(f"{k}={v}" for k, v in e.details.items())
        table.add_row(e.name, e.family, ",".join(e.tasks), details, e.reference)
    out.print(table)
    return 0


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


def _plan(args: argparse.Namespace, options: Any) -> Any:
    """Open the dataset, stage its images and build the split, saying what was found (run, tune)."""
    from bhbench import runner
    from bhbench.data.sources import folds_beside, open_dataset
    from bhbench.protocol import Protocol

    with progress_bar("preparing images (the synthetic set is generated once)") as bump:
        dataset = open_dataset(args.data, bump)
    folds = args.folds or folds_beside(dataset)
    split = args.split or ("official" if folds else "patient")
    protocol = Protocol(args.task, args.regime, split, args.mag, args.seed)
    label = "synthetic (generated BreaKHis-like data)" if dataset.synthetic else f"BreaKHis at {dataset.root}"
    console.print(f"dataset: {label}: {len(dataset.table)} images, {dataset.table['patient'].nunique()} patients")
    for p in dataset.problems:
        if p.severity == "warning":
            console.print(f"[yellow]warning:[/] {p}")
    with progress_bar("decoding images into the cache", len(dataset.table)) as bump:
        plan = runner.make_plan(dataset, protocol, folds, options, bump)
    console.print(f"protocol: {protocol.title} ({len(plan.split.folds)} folds, {plan.split.source})")
    for p in plan.skipped:
        console.print(f"[yellow]skipped (--skip-bad):[/] {p}")
    if plan.split.missing:
        console.print(
            f"[yellow]note:[/] the fold files name {len(plan.split.missing)} image(s) not in this data "
            f"(e.g. {plan.split.missing[0]}); folds use the {len(plan.dataset.table)} present"
        )
    for fold, patients in plan.leaks.items():
        console.print(f"[red]leak:[/] fold {fold}: patient(s) {', '.join(patients)} in both train and test")
    if plan.split.kind == "image-kfold":
        console.print("[red]leaky protocol:[/] image-level folds put images of one patient on both sides")
    return plan


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


def cmd_run(args: argparse.Namespace) -> int:
    from bhbench import executors, runner

    _discover(args)
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
    plan = _plan(args, options)
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


def cmd_check(args: argparse.Namespace) -> int:
    from bhbench import checks, registry

    _discover(args)
    entries = checks.targets(args.target, args.submissions or registry.default_submissions_dir())
    sets = parse_sets(args.set)
    failed = []
    for entry in entries:
        mine = {k: v for k, v in sets.items() if k in entry.cls.param_names()}
        battery = checks.Battery(entry, mine, args.budget)
        found = battery.run_all(lambda r: out.print(r.line(), style=None if r.passed else "red", markup=False))
        if not all(r.passed for r in found):
            failed.append(entry.name)
    passed = len(entries) - len(failed)
    console.print(
        f"{passed} of {len(entries)} method(s) passed every check"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


def cmd_tune(args: argparse.Namespace) -> int:
    from bhbench import runner, tuning
    from bhbench.config import cache_dir

    _discover(args)
    tuning.search_space(args.method)  # refuse an untunable method before decoding any image
    fixed = {**parse_sets(args.set), **({"device": args.device} if args.device else {})}
    spec = runner.MethodSpec.create(args.method, fixed)
    # Tuning writes no records: its split file and manifest go to the cache, not the results folder.
    options = runner.Options(
        results=cache_dir("tuning"), timeout=args.timeout, skip_bad=args.skip_bad, submissions=args.submissions
    )
    plan = _plan(args, options)
    study = args.study or tuning.default_study(plan, spec, fixed)
    storage = args.storage or tuning.default_storage()
    console.print(f"study {study}-fold1..{len(plan.split.folds)} in {tuning.public_url(storage)}")

    def report(fold: int, trial: Any) -> None:
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
        value = (
            f"inner PRR {100 * trial.value:.1f}"
            if trial.value is not None
            else f"failed: {trial.user_attrs.get('error')}"
        )
        console.print(f"  fold {fold} trial {trial.number}: {value} ({shown})")

    doc = tuning.Tuner(plan, args.method, fixed, storage, study, options).tune(args.trials, report, args.fold)
    path = args.out or Path("tuned") / f"{study}.json"
    tuning.write_params(path, doc)
    table = Table("fold", "trials", "best inner PRR", "parameters", title=f"{args.method}: best per fold")
    for fold, best in doc["folds"].items():
        searched = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["searched"].items()
        )
        table.add_row(fold, str(best["trials"]), f"{100 * best['inner_patient_rr']:.1f}", searched)
    out.print(table)
    console.print(f"wrote {path}; use it with: bhbench run --method {args.method} --params {path}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from bhbench import leaderboard

    if args.check:
        reasons = leaderboard.stale(args.results, args.output)
        for reason in reasons:
            console.print(f"[red]check failed:[/] {reason}")
        if not reasons:
            console.print(f"{args.output / 'README.md'} matches the records in {args.results}")
        return 1 if reasons else 0
    checked = leaderboard.write(args.results, args.output)
    refused = [c for c in checked if not c.accepted]
    for c in refused:
        console.print(f"[yellow]refused:[/] {c.path}: {'; '.join(c.problems)}")
    console.print(f"wrote {args.output / 'README.md'} and leaderboard.csv from {len(checked) - len(refused)} record(s)")
    return 1 if refused else 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from bhbench.data import synthetic

    given = {"width": args.width, "height": args.height, "images_per_patient": args.images_per_patient}
    config = synthetic.SynthConfig(seed=args.seed, **{k: v for k, v in given.items() if v is not None})
    if args.out is None:
        root = synthetic.default_root(config)
    else:
        with progress_bar("generating images") as bump:
            root = synthetic.generate(args.out, config, bump)
    out.print(f"synthetic BreaKHis-like tree at {root}")
    return 0


def cmd_data_index(args: argparse.Namespace) -> int:
    from bhbench.data.sources import open_dataset

    dataset = open_dataset(args.data)
    table = dataset.table
    if args.csv:
        table.to_csv(args.csv, index=False)
        console.print(f"wrote {len(table)} rows to {args.csv}")
    summary = Table("class", "subtype", "patients", "images", *(f"{m}X" for m in (40, 100, 200, 400)))
    for (cls, sub), part in table.groupby(["tumor_class", "subtype"]):
        counts = part["magnification"].value_counts()
        summary.add_row(
            cls,
            sub,
            str(part["patient"].nunique()),
            str(len(part)),
            *(str(counts.get(m, 0)) for m in (40, 100, 200, 400)),
        )
    out.print(summary)
    out.print(f"{dataset.name}: {len(table)} images, {table['patient'].nunique()} patients, id {dataset.id}")
    for p in dataset.problems:
        console.print(f"{p.severity}: {p}")
    return 1 if dataset.errors else 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from bhbench.data import check

    if args.data is None and args.folds is None and not os.environ.get("BHBENCH_DATA"):
        raise UserError("give --data PATH and/or --folds PATH (or set BHBENCH_DATA)")
    with progress_bar("checking images") as bump:
        report = check.check(args.data, args.folds, bump)
    for line in report.lines():
        out.print(line)
    return 1 if report.errors else 0


# --- parser ----------------------------------------------------------------------------------


def _path(text: str) -> Path:
    return Path(text).expanduser()


def _protocol_args(p: argparse.ArgumentParser) -> None:
    """What to run on and how (shared by run and tune)."""
    p.add_argument("--task", choices=["binary", "subtype"], default="binary")
    p.add_argument("--regime", choices=["mi", "ms"], default="mi",
                   help="mi: one model over all magnifications; ms: one model per magnification")  # fmt: skip
    p.add_argument("--split", choices=["official", "patient", "image-kfold"], default=None,
                   help="default: official if fold files are given or beside the data, else patient")  # fmt: skip
    p.add_argument("--mag", type=int, choices=[40, 100, 200, 400], default=None, help="use one magnification only")
    p.add_argument("--data", type=_path, default=None,
                   help="BreaKHis_v1, its histology_slides, or a folder holding them (default: $BHBENCH_DATA, "
                        "else the synthetic dataset)")  # fmt: skip
    p.add_argument("--folds", type=_path, default=None, help="official dsfold1..5.txt folder or Folds.csv")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="set a method parameter")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None, help="for deep methods")
    p.add_argument("--timeout", type=float, default=None, help="seconds one (method, fold) may take")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable or misnamed images (listed in records)")
    p.add_argument("--seed", type=int, default=0, help="seed of generated splits")


def _slurm_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Slurm (--executor slurm)")
    g.add_argument("--slurm-partition", default=None)
    g.add_argument("--slurm-gpus", type=int, default=0, help="GPUs per job")
    g.add_argument("--slurm-cpus", type=int, default=2, help="CPUs per job")
    g.add_argument("--slurm-mem", type=float, default=None, help="memory per job, GB")
    g.add_argument("--slurm-time", type=int, default=120, help="time limit per job, minutes")
    g.add_argument("--slurm-logs", type=_path, default=Path("slurm-logs"), help="submitit log folder")
    g.add_argument("--slurm-parallelism", type=int, default=64, help="array tasks running at once")
    g.add_argument("--slurm-cluster", choices=["slurm", "local"], default="slurm",
                   help="local: the same job array through submitit's local executor (a dry run)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    from bhbench.config import DEFAULT_RESULTS

    parser = argparse.ArgumentParser(
        prog="bhbench",
        description="Benchmark breast histopathology methods on BreaKHis under one leak-free protocol.",
    )
    parser.add_argument(
        "--submissions", type=_path, default=None, help="folder of submitted methods (default: ./submissions)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list registered methods")
    p.add_argument("pattern", nargs="?", help="shell pattern or family, e.g. 'pftas_*' or handcrafted")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="run methods under the protocol and write records")
    p.add_argument("--method", "-m", action="append", required=True, metavar="NAME",
                   help="method name, wildcard ('pftas_*') or family (handcrafted); repeatable")  # fmt: skip
    _protocol_args(p)
    p.add_argument("--params", action="append", default=[], type=_path, metavar="FILE",
                   help="parameters from `bhbench tune` (each fold runs with its own); repeatable")  # fmt: skip
    p.add_argument("--results", type=_path, default=DEFAULT_RESULTS, help=f"record folder (default {DEFAULT_RESULTS})")
    p.add_argument("--force", action="store_true", help="redo folds that already have a record")
    p.add_argument("--fps-images", type=int, default=16, help="images timed for FPS on the first fold (0: no timing)")
    p.add_argument("--executor", choices=["local", "process", "slurm"], default=None,
                   help="local: one worker process; process: --workers processes (default: one per core); "
                        "slurm: a submitit job array, one task per (method, fold)")  # fmt: skip
    p.add_argument("--workers", type=int, default=1, help="worker processes running (method, fold) jobs")
    _slurm_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", help="run the uniform method checks (contract, determinism, no test labels...)")
    p.add_argument("target", nargs="*", metavar="NAME|PATH",
                   help="method, wildcard, family, or submission file/folder (default: all submissions)")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="set a method parameter")
    p.add_argument("--budget", type=float, default=60.0, help="seconds one fit + predict on the tiny set may take")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("tune", help="tune a method's hyperparameters with optuna on training patients only")
    p.add_argument("--method", "-m", required=True, metavar="NAME", help="a method that declares search_space()")
    p.add_argument("--trials", type=int, required=True, help="trials to run per fold in this process (0: export)")
    p.add_argument("--storage", default=None,
                   help="optuna storage URL shared by processes or machines (default: SQLite in cache)")  # fmt: skip
    p.add_argument("--study", default=None, help="study name (default: method, dataset and protocol)")
    p.add_argument("--out", type=_path, default=None, help="tuned-parameters file (default tuned/<study>.json)")
    p.add_argument("--fold", type=int, action="append", default=[], help="tune only this fold; repeatable")
    _protocol_args(p)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("leaderboard", help="regenerate leaderboard/README.md and leaderboard.csv from records")
    p.add_argument("--check", action="store_true", help="fail if the committed leaderboard is stale or a record is bad")
    p.add_argument("--results", type=_path, default=DEFAULT_RESULTS)
    p.add_argument("--output", type=_path, default=DEFAULT_RESULTS.parent, help="where README.md and the CSV go")
    p.set_defaults(func=cmd_leaderboard)

    data = sub.add_parser("data", help="synthesise, index or check a dataset").add_subparsers(
        dest="data_command", required=True, metavar="ACTION"
    )
    p = data.add_parser("synth", help="generate the synthetic BreaKHis-like tree")
    p.add_argument("--out", type=_path, default=None, help="folder to write (default: the cache used by run)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--images-per-patient", type=int, default=None, help="per magnification")
    p.set_defaults(func=cmd_data_synth)
    p = data.add_parser("index", help="index a tree and summarise it")
    p.add_argument("--data", type=_path, default=None)
    p.add_argument("--csv", type=_path, default=None, help="also write the index table here")
    p.set_defaults(func=cmd_data_index)
    p = data.add_parser("check", help="report every problem of a tree and/or fold files in one pass")
    p.add_argument("--data", type=_path, default=None)
    p.add_argument("--folds", type=_path, default=None)
    p.set_defaults(func=cmd_data_check)
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (a scheduler's kill) stops as cleanly as Ctrl-C


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return int(args.func(args))
    except UserError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    except OSError as exc:  # unwritable results folder, full disk, vanished file: the message names it
        console.print(f"[red]error:[/] {exc}")
        return 2
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
