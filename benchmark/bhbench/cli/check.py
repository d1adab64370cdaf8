"""`bhbench check`: the uniform battery of checks on methods or submissions."""

from __future__ import annotations

import argparse

from bhbench.cli.common import discover, memory_arg, parse_sets, sandbox_arg, sandbox_of
from bhbench.cli.output import console, out


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="run the uniform method checks (contract, determinism, no test labels...)")
    p.add_argument("target", nargs="*", metavar="NAME|PATH",
                   help="method, wildcard, family, or submission file/folder (default: all submissions)")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="set a method parameter")
    p.add_argument("--budget", type=float, default=120.0,
                   help="CPU seconds (all threads) one fit + predict on the tiny set may take")  # fmt: skip
    sandbox_arg(p)  # the checks run in a separate worker process, sandboxed or not
    memory_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bhbench import checks, registry

    discover(args)  # cards only: the methods' code runs in the check worker
    submissions = args.submissions or registry.default_submissions_dir()
    entries = checks.targets(args.target, submissions)
    sets = parse_sets(args.set)
    launcher = sandbox_of(args)
    failed = []
    for entry in entries:
        mine = {k: v for k, v in sets.items() if k in entry.param_names()}
        found = checks.run_isolated(
            entry,
            mine,
            args.budget,
            launcher,
            submissions,
            lambda r: out.print(r.line(), style=None if r.passed else "red", markup=False),
            lambda source, message: console.print(f"[yellow]warning:[/] skipped {source}: {message}"),
            memory_gb=args.memory,
        )
        if not all(r.passed for r in found):
            failed.append(entry.name)
    passed = len(entries) - len(failed)
    console.print(
        f"{passed} of {len(entries)} method(s) passed every check"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0
