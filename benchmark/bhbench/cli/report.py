"""`bhbench report`: a Markdown page for one method, linked from the leaderboard."""

from __future__ import annotations

import argparse

from bhbench.cli.common import path_arg
from bhbench.cli.output import console


def add_parser(sub: argparse._SubParsersAction) -> None:
    from bhbench.config import COMMITTED_RESULTS

    p = sub.add_parser("report", help="write a page for one method: per-fold table, ROC, calibration, patients")
    p.add_argument("--method", "-m", required=True, help="method name (or its leaderboard label)")
    p.add_argument(
        "--results", type=path_arg, default=COMMITTED_RESULTS, help="record folder (default leaderboard/results)"
    )
    p.add_argument("--output", type=path_arg, default=COMMITTED_RESULTS.parent,
                   help="leaderboard folder; the page goes to OUTPUT/reports/NAME.md")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bhbench.leaderboard import load, report

    page = report.write(load(args.results), args.method, args.output)
    console.print(f"wrote {page} (rerun `bhbench leaderboard` to link it)")
    return 0
