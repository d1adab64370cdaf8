"""`bhbench compare A B`: the paired patient-level comparison of two rows on the same folds."""

from __future__ import annotations

import argparse

from bhbench.cli.output import console, out
from bhbench.cli.results import reading_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="paired bootstrap comparison of two methods (difference, interval, p-value)")
    p.add_argument("a", help="method name or leaderboard label")
    p.add_argument("b", help="method name or leaderboard label")
    reading_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from bhbench import api
    from bhbench.scoring import BOOTSTRAP_RESAMPLES

    done = api.compare(args.a, args.b, args.results)
    console.print(done.read)
    table = Table(
        "dataset", "protocol", "A", "B", "folds", "PRR A", "PRR B", "A − B", "95% CI", "p",
        title=f"PRR (mean of magnifications, %): paired patient-level bootstrap, {BOOTSTRAP_RESAMPLES:,} resamples",
    )  # fmt: skip
    for _, r in done.table.iterrows():
        table.add_row(
            r["dataset"], r["protocol"], r["a"], r["b"], str(r["common_folds"]), f"{100 * r['a_headline']:.1f}",
            f"{100 * r['b_headline']:.1f}", f"{100 * r['difference']:+.1f}",
            f"[{100 * r['lo']:+.1f}, {100 * r['hi']:+.1f}]", f"{r['p']:.4f}",
        )  # fmt: skip
    out.print(table)
    console.print("p: two-sided, one comparison per section (not adjusted; the leaderboard's ranks adjust with Holm)")
    return 0
