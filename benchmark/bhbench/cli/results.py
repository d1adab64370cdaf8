"""`bhbench results prune`: remove failed, damaged and (optionally) superseded records; and the
`--results` option of the commands that read records (compare, report, export, reproduce)."""

from __future__ import annotations

import argparse

from bhbench.cli.common import path_arg
from bhbench.cli.output import console


def reading_arg(p: argparse.ArgumentParser) -> None:
    """`--results A --results B`: the folders a reading command takes records from, in order."""
    from bhbench.config import COMMITTED_RESULTS, SCRATCH_RESULTS

    p.add_argument("--results", type=path_arg, action="append", default=None, metavar="FOLDER",
                   help="a results folder to read (repeatable; a record in two is read from the first one); default "
                        f"{COMMITTED_RESULTS} (read-only), then $BHBENCH_RESULTS or ./{SCRATCH_RESULTS}")  # fmt: skip


def add_parser(sub: argparse._SubParsersAction) -> None:
    from bhbench.config import SCRATCH_RESULTS

    p = sub.add_parser("results", help="tidy a results folder")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    prune = actions.add_parser(
        "prune",
        help="remove failed records, damaged ones, stray predictions/logs and temporary files",
    )
    prune.add_argument("--results", type=path_arg, default=None,
                       help=f"record folder (default $BHBENCH_RESULTS, else ./{SCRATCH_RESULTS})")  # fmt: skip
    prune.add_argument("--superseded", action="store_true",
                       help="also remove records made by older code of their method (run redoes those)")  # fmt: skip
    prune.add_argument("--dry-run", "-n", action="store_true", help="list what would go, remove nothing")
    prune.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bhbench import prune
    from bhbench.config import results_dir

    folder = args.results or results_dir()
    found = prune.stale(folder, args.superseded) if args.dry_run else prune.prune(folder, args.superseded)
    for r in found:
        console.print(f"  {r.path.relative_to(folder)}: {r.reason}")
    verb = "would remove" if args.dry_run else "removed"
    console.print(f"{verb} {len(found)} file(s) from {folder}")
    return 0
