"""`bhbench list`: the registered methods."""

from __future__ import annotations

import argparse

from rich.table import Table

from bhbench.cli.output import Render, out


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list registered methods")
    p.add_argument("pattern", nargs="?", help="shell pattern or family, e.g. 'pftas_*' or handcrafted")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bhbench import api

    table = Table("name", "family", "tasks", "details", "reference", title="bhbench methods")
    for e in api.methods(args.pattern, args.submissions, Render()):
        details = ", ".join(f"{k}={v}" for k, v in e.details.items())
        table.add_row(e.name, e.family, ",".join(e.tasks), details, e.reference)
    out.print(table)
    return 0
