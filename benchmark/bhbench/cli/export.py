"""`bhbench export`: LaTeX and CSV tables of chosen rows and their per-patient scores, for papers."""

from __future__ import annotations

import argparse
from pathlib import Path

from bhbench.cli.common import path_arg
from bhbench.cli.output import console
from bhbench.cli.results import reading_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write table.tex, table.csv and patients.csv for chosen methods")
    p.add_argument("--method", "-m", action="append", required=True,
                   help="method name, label or wildcard ('pftas_*'); repeatable")  # fmt: skip
    reading_arg(p)
    p.add_argument("--output", type=path_arg, default=Path("bhbench-export"), help="folder for the three files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bhbench import api

    done = api.export(args.method, args.results, args.output)
    console.print(done.read)
    names = ", ".join(f.name for f in done.files)
    console.print(f"wrote {names} to {args.output} ({len(done.rows)} row(s), {len(done.patients)} patient line(s))")
    return 0
