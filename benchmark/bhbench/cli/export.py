"""`bhbench export`: LaTeX and CSV tables of chosen rows and their per-patient scores, for papers."""

from __future__ import annotations

import argparse
from pathlib import Path

from bhbench.cli.common import path_arg
from bhbench.cli.output import console


def add_parser(sub: argparse._SubParsersAction) -> None:
    from bhbench.config import COMMITTED_RESULTS

    p = sub.add_parser("export", help="write table.tex, table.csv and patients.csv for chosen methods")
    p.add_argument("--method", "-m", action="append", required=True,
                   help="method name, label or wildcard ('pftas_*'); repeatable")  # fmt: skip
    p.add_argument(
        "--results", type=path_arg, default=COMMITTED_RESULTS, help="record folder (default leaderboard/results)"
    )
    p.add_argument("--output", type=path_arg, default=Path("bhbench-export"), help="folder for the three files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bhbench.leaderboard import compare, load
    from bhbench.util import atomic_write

    rows, patients = compare.export(load(args.results), args.method)
    files = {
        "table.tex": compare.latex(rows),
        "table.csv": rows.to_csv(index=False, float_format="%.6g"),
        "patients.csv": patients.to_csv(index=False, float_format="%.6g"),
    }
    for name, text in files.items():
        atomic_write(args.output / name, text)
    console.print(f"wrote {', '.join(files)} to {args.output} ({len(rows)} row(s), {len(patients)} patient line(s))")
    return 0
