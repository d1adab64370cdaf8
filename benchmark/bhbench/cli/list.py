"""`bhbench list`: the registered methods; `bhbench list NAME`: one method's card, parameters and search space."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from bhbench.cli.output import Render, console, out

if TYPE_CHECKING:
    from bhbench.api import MethodInfo


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list registered methods, or one method's parameters and search space")
    p.add_argument("pattern", nargs="?",
                   help="a method's name (its parameters, defaults, constraints and search space), or a shell "
                        "pattern or family, e.g. 'pftas_*' or handcrafted")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bhbench import api

    entries = api.methods(args.pattern, args.submissions, Render())
    if [e.name for e in entries] == [args.pattern]:
        _show(api.method(args.pattern, args.submissions))
        return 0
    table = Table("name", "family", "tasks", "details", "reference", title="bhbench methods")
    for e in entries:
        details = ", ".join(f"{k}={v}" for k, v in e.details.items())
        table.add_row(e.name, e.family, ",".join(e.tasks), details, e.reference)
    out.print(table)
    console.print("`bhbench list NAME` shows a method's parameters, defaults, constraints and search space")
    return 0


def _show(info: MethodInfo) -> None:
    e = info.entry
    out.print(escape(f"{e.name} ({e.family}): {e.summary}"))
    facts = {
        "reference": e.reference,
        "tasks": ", ".join(e.tasks) + (" (transductive)" if e.transductive else ""),
        **e.details,
        "source": e.origin,
    }
    for key, value in facts.items():
        if value:
            out.print(escape(f"  {key}: {value}"))
    table = Table("parameter", "type", "default", "allowed", "tune explores", title=f"{e.name}: parameters (--set)")
    for p in info.parameters:
        table.add_row(*map(escape, (p.name, p.type, repr(p.default), p.constraint or "-", p.search or "-")))
    out.print(table)
    names = {p.name for p in info.parameters}
    if info.searched is None:
        out.print(f"{e.name} declares no search space: `bhbench tune` cannot tune it")
    for trial_name, space in (info.searched or {}).items():
        if trial_name not in names:  # a search parameter of its own name, mapped onto the method's in its code
            out.print(escape(f"tune also draws {trial_name}: {space}"))
