"""`bhbench tune`: optuna search on training patients only, one study per fold."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from bhbench.cli.common import discover, parse_sets, path_arg, prepare, protocol_args, sandbox_arg, sandbox_of
from bhbench.cli.output import console, out


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="tune a method's hyperparameters with optuna on training patients only")
    p.add_argument("--method", "-m", required=True, metavar="NAME", help="a method that declares search_space()")
    p.add_argument("--trials", type=int, required=True, help="trials to run per fold in this process (0: export)")
    p.add_argument("--storage", default=None,
                   help="optuna storage URL shared by processes or machines (default: SQLite in cache)")  # fmt: skip
    p.add_argument("--study", default=None, help="study name (default: method, dataset and protocol)")
    p.add_argument("--out", type=path_arg, default=None,
                   help="tuned-parameters file (default <results>/tuned/<study>.json, beside the records)")  # fmt: skip
    p.add_argument("--fold", type=int, action="append", default=[], help="tune only this fold; repeatable")
    protocol_args(p)
    sandbox_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bhbench import params, runner, tuning
    from bhbench.config import cache_dir, results_dir

    discover(args)
    tuning.search_space(args.method)  # refuse an untunable method before decoding any image
    fixed = params.validate(args.method, {**parse_sets(args.set), **({"device": args.device} if args.device else {})})
    spec = runner.MethodSpec.create(args.method, fixed)
    # Tuning writes no records: its split file and manifest go to the cache, not the results folder.
    options = runner.Options(
        results=cache_dir("tuning"),
        timeout=args.timeout,
        skip_bad=args.skip_bad,
        submissions=args.submissions,
        memory_gb=args.memory,
        sandbox=sandbox_of(args),
    )
    plan = prepare(args, options)
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
    path = args.out or results_dir() / "tuned" / f"{study}.json"
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
