"""`bhbench report`: a Markdown page for one method, in the user's results folder."""

from __future__ import annotations

import argparse

from bhbench.cli.common import path_arg
from bhbench.cli.output import console
from bhbench.cli.results import reading_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    from bhbench.config import SCRATCH_RESULTS

    p = sub.add_parser("report", help="write a page for one method: per-fold table, ROC, calibration, patients")
    p.add_argument("--method", "-m", required=True, help="method name (or its leaderboard label)")
    reading_arg(p)
    p.add_argument("--output", type=path_arg, default=None,
                   help=f"the page goes to OUTPUT/reports/NAME.md (default $BHBENCH_RESULTS, else "
                        f"./{SCRATCH_RESULTS}; never in leaderboard/: see `bhbench leaderboard --report`)")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bhbench import api

    done = api.report(args.method, args.results, args.output)
    console.print(done.read)
    console.print(f"wrote {done.page}")
    return 0
