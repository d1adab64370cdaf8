"""Command line: one module per command, each only parsing arguments and printing; the work is
done by the harness modules they call."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from rich.markup import escape

from bhbench.cli import (
    audit,
    cache,
    check,
    compare,
    data,
    export,
    leaderboard,
    paper,
    report,
    reproduce,
    results,
    robustness,
    run,
    tune,
)
from bhbench.cli import list as list_cmd
from bhbench.cli.common import parse_sets, path_arg
from bhbench.cli.folders import explain, folders
from bhbench.cli.output import console
from bhbench.errors import UserError

__all__ = ["build_parser", "main", "parse_sets"]

COMMANDS = (
    list_cmd,
    run,
    robustness,
    audit,
    check,
    tune,
    reproduce,
    leaderboard,
    report,
    paper,
    compare,
    export,
    data,
    results,
    cache,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bhbench",
        description="Benchmark breast histopathology methods on BreaKHis under one leak-free protocol.",
    )
    parser.add_argument(
        "--submissions", type=path_arg, default=None, help="folder of submitted methods (default: ./submissions)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (a scheduler's kill) stops as cleanly as Ctrl-C


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return int(args.func(args))
    except UserError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    except OSError as exc:  # unwritable results folder, full disk, vanished file: named with its setting
        console.print(f"[red]error:[/] {escape(explain(exc, folders(args)))}")
        return 2
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
