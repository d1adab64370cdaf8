"""`bhbench check`: the uniform battery of checks on methods or submissions."""

from __future__ import annotations

import argparse

from bhbench.cli.common import memory_arg, parse_sets, sandbox_arg, timeout_arg
from bhbench.cli.output import Render, console


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="run the uniform method checks (contract, determinism, no test labels...)")
    p.add_argument("target", nargs="*", metavar="NAME|PATH",
                   help="method, wildcard, family, or submission file/folder (default: all submissions)")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="set a method parameter")
    p.add_argument("--budget", type=float, default=120.0,
                   help="CPU seconds (all threads) one fit + predict on the tiny set may take")  # fmt: skip
    from bhbench.limits import CHECK_SECONDS

    timeout_arg(p, f"wall-clock seconds one check may take (default {CHECK_SECONDS:g})")
    sandbox_arg(p)  # the checks run in a separate worker process, sandboxed or not
    memory_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bhbench import api

    summary = api.check(args.target, parse_sets(args.set), budget=args.budget, timeout=args.timeout,
                        sandbox=args.sandbox, memory_gb=args.memory, submissions=args.submissions,
                        progress=Render())  # fmt: skip
    failed = summary.failed
    console.print(
        f"{len(summary.results) - len(failed)} of {len(summary.results)} method(s) passed every check"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 0 if summary.ok else 1
