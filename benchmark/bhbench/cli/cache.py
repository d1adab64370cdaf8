"""`bhbench cache`: what the cache folder holds and what clearing each part frees; `--clear` removes
derived parts."""

from __future__ import annotations

import argparse

from rich.table import Table

from bhbench.cli.output import console, out


def add_parser(sub: argparse._SubParsersAction) -> None:
    from bhbench.cache import DERIVED

    p = sub.add_parser("cache", help="show the cache folder's parts and their sizes, or clear derived ones")
    p.add_argument("--clear", nargs="+", metavar="PART", default=[],
                   help=f"remove these parts; the next run that needs them makes them again ({', '.join(DERIVED)}). "
                        "Clear while no run is going: a run whose part goes fails the folds it was on")  # fmt: skip
    p.set_defaults(func=run)


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def run(args: argparse.Namespace) -> int:
    from bhbench.cache import clear, usage
    from bhbench.config import cache_location

    root = cache_location()
    if args.clear:
        freed = clear(args.clear, root)
        console.print(f"cleared {', '.join(dict.fromkeys(args.clear))} from {root}: {_size(freed)} freed")
        return 0
    parts, total = usage(root)
    table = Table("part", "frees", "files", "clearable", "holds", title=f"{root}: {_size(total)}")
    for p in parts:
        table.add_row(p.name, _size(p.frees), str(p.files), "yes" if p.clearable else "no", p.about)
    out.print(table)
    return 0
