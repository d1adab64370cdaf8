"""`bhbench tune`: optuna search on training patients only, one study per fold."""

from __future__ import annotations

import argparse
import shlex
import sys

from rich.markup import escape
from rich.table import Table

from bhbench.cli.common import api_kwargs, path_arg, protocol_args, sandbox_arg
from bhbench.cli.output import console, number, out
from bhbench.cli.run import slurm_args, slurm_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="tune a method's hyperparameters with optuna on training patients only")
    p.add_argument("--method", "-m", required=True, metavar="NAME", help="a method that declares search_space()")
    p.add_argument("--trials", type=int, required=True,
                   help="trials per fold in all: a rerun, or another process sharing the study, continues up to "
                        "this many (0: export)")  # fmt: skip
    p.add_argument("--storage", default=None,
                   help="where the studies live: a journal file (PATH.log) shared by this machine's processes, or a "
                        "database URL shared by machines (default: a journal file in the cache)")  # fmt: skip
    p.add_argument("--study", default=None,
                   help="study name (default: method, data, protocol and the method's code fingerprint)")  # fmt: skip
    p.add_argument("--out", type=path_arg, default=None,
                   help="tuned-parameters file, into which the folds tuned now merge "
                        "(default <results>/tuned/<study>.json, beside the records)")  # fmt: skip
    p.add_argument("--fold", type=int, action="append", default=[], help="tune only this fold; repeatable")
    p.add_argument("--executor", choices=["local", "slurm"], default=None,
                   help="local: trials run here, one at a time; slurm: --workers Slurm jobs each run trials of the "
                        "same studies (their storage must be reachable from the nodes)")  # fmt: skip
    p.add_argument("--workers", type=int, default=1, help="Slurm jobs sharing the studies (--executor slurm)")
    protocol_args(p)
    sandbox_arg(p)
    slurm_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bhbench import api

    try:
        result = api.tune(args.method, args.trials, storage=args.storage, study=args.study, out=args.out,
                          only_folds=args.fold, executor=args.executor, workers=args.workers,
                          slurm=slurm_options(args), **api_kwargs(args))  # fmt: skip
    except api.TuneInterrupted as stop:
        console.print(escape(f"interrupted: {stop}; to resume, rerun: bhbench {shlex.join(sys.argv[1:])}"))
        return 130
    table = Table("fold", "trials", "best inner PRR", "parameters", title=f"{args.method}: best per fold")
    for fold, best in result.doc["folds"].items():
        searched = ", ".join(f"{k}={number(v)}" for k, v in best["searched"].items())
        table.add_row(fold, str(best["trials"]), f"{100 * best['inner_patient_rr']:.1f}", searched)
    out.print(table)
    console.print(f"wrote {result.path}; use it with: bhbench run --method {args.method} --params {result.path}")
    return 0
