"""`bhbench paper`: a paper's claims re-measured under its protocol and the leak-free one."""

from __future__ import annotations

import argparse

from bhbench.cli.common import path_arg, sandbox_arg
from bhbench.cli.output import Render, console, out


def add_parser(sub: argparse._SubParsersAction) -> None:
    from bhbench.config import SCRATCH_RESULTS

    p = sub.add_parser("paper", help="re-measure a paper's numbers and check its claims (writes one page)")
    p.add_argument("name", help="a shipped paper (spanhol2016, bayramoglu2016, liu2020) or a manifest .toml")
    p.add_argument("--data", type=path_arg, default=None,
                   help="BreaKHis_v1 or a folder holding it (default: $BHBENCH_DATA, else synthetic data)")  # fmt: skip
    p.add_argument("--folds", type=path_arg, default=None, help="official dsfold1..5.txt folder or Folds.csv")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None, help="for deep methods")
    p.add_argument("--results", type=path_arg, default=None,
                   help=f"records read and written here ($BHBENCH_RESULTS, else ./{SCRATCH_RESULTS})")  # fmt: skip
    p.add_argument("--output", type=path_arg, default=None,
                   help="the page goes to OUTPUT/papers/NAME.md (default: the results folder)")  # fmt: skip
    sandbox_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bhbench import api

    done = api.paper(args.name, args.data, args.folds, device=args.device, results=args.results,
                     sandbox=args.sandbox, output=args.output, submissions=args.submissions,
                     progress=Render())  # fmt: skip
    out.print(done.table, markup=False)
    for claim, paper, leak_free in done.verdicts:
        out.print(f"{claim}: {paper} (paper's protocol), {leak_free} (leak-free)", markup=False)
    console.print(f"wrote {done.page}")
    return 0
