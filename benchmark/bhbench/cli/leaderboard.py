"""`bhbench leaderboard`: regenerate or verify the leaderboard from records."""

from __future__ import annotations

import argparse

from bhbench.cli.common import path_arg
from bhbench.cli.output import console


def add_parser(sub: argparse._SubParsersAction) -> None:
    from bhbench.config import COMMITTED_RESULTS

    p = sub.add_parser("leaderboard", help="regenerate leaderboard/README.md, the CSV and figures/ from records")
    p.add_argument("--check", action="store_true", help="fail if the committed leaderboard is stale or a record is bad")
    p.add_argument("--results", type=path_arg, default=COMMITTED_RESULTS,
                   help=f"record folder (default {COMMITTED_RESULTS}; or your own, e.g. bhbench-results)")  # fmt: skip
    p.add_argument("--output", type=path_arg, default=None,
                   help=f"where README.md, the CSV and figures/ go (default {COMMITTED_RESULTS.parent} for the "
                        "committed records, else the --results folder itself)")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bhbench import leaderboard
    from bhbench.config import COMMITTED_RESULTS

    if args.output is None:  # someone's own records never overwrite the committed leaderboard
        committed = args.results.resolve() == COMMITTED_RESULTS.resolve()
        args.output = COMMITTED_RESULTS.parent if committed else args.results
    if args.check:
        notes: list[str] = []
        reasons = leaderboard.stale(args.results, args.output, notes)
        for note in notes:
            console.print(f"[yellow]note:[/] {note}")
        for reason in reasons:
            console.print(f"[red]check failed:[/] {reason}")
        if not reasons:
            console.print(f"{args.output / 'README.md'} matches the records in {args.results}")
        return 1 if reasons else 0
    checked = leaderboard.write(args.results, args.output)
    refused = [c for c in checked if not c.accepted]
    for c in refused:
        console.print(f"[yellow]refused:[/] {c.path}: {'; '.join(c.problems)}")
    console.print(
        f"wrote {args.output / 'README.md'}, leaderboard.csv and figures/ from {len(checked) - len(refused)} record(s)"
    )
    return 1 if refused else 0
