"""`bhbench leaderboard`: regenerate or verify the leaderboard from records."""

from __future__ import annotations

import argparse

from bhbench.cli.common import path_arg
from bhbench.cli.output import console, tagged


def add_parser(sub: argparse._SubParsersAction) -> None:
    from bhbench.config import COMMITTED_RESULTS

    p = sub.add_parser("leaderboard", help="regenerate leaderboard/README.md, the CSV and figures/ from records")
    p.add_argument("--check", action="store_true", help="fail if the committed leaderboard is stale or a record is bad")
    p.add_argument("--results", type=path_arg, action="append", default=None, metavar="FOLDER",
                   help=f"record folder, repeatable (default {COMMITTED_RESULTS}; or your own, e.g. bhbench-results, "
                        "beside it: --results leaderboard/results --results bhbench-results)")  # fmt: skip
    p.add_argument("--report", action="append", default=[], metavar="NAME",
                   help="add a method page to the board (reports/NAME.md; the pages it has are rebuilt)")  # fmt: skip
    p.add_argument("--output", type=path_arg, default=None,
                   help=f"where README.md, the CSV, figures/ and the web board site/ go (default "
                        f"{COMMITTED_RESULTS.parent} for the committed records, else the --results folder "
                        "itself)")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bhbench import api
    from bhbench.config import COMMITTED_RESULTS

    folders = args.results or [COMMITTED_RESULTS]
    board = api.leaderboard(folders, args.output, check=args.check, add_pages=args.report)
    if args.check:
        for note in board.notes:
            console.print(tagged(note, "note", "warning"))
        for reason in board.stale:
            console.print(tagged(reason, "check failed", "error"))
        if not board.stale:
            console.print(f"{board.output / 'README.md'} matches the records in {', '.join(map(str, folders))}")
        return 0 if board.ok else 1
    for c in board.refused:
        console.print(tagged(f"{c.path}: {'; '.join(c.problems)}", "refused", "warning"))
    accepted = len(board.checked) - len(board.refused)
    wrote = f"{board.output / 'README.md'}, leaderboard.csv, figures/ and site/ (the web board)"
    console.print(f"wrote {wrote} from {accepted} record(s)")
    return 0 if board.ok else 1
