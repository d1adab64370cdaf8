"""`bhbench robustness`: a method fitted once per fold, its test images shifted in HED space at
graded strengths; the headline at each strength and its drop from the unshifted images."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rich.markup import escape

from bhbench.cli.common import api_kwargs, path_arg, protocol_args, sandbox_arg
from bhbench.cli.output import console, failures, out

if TYPE_CHECKING:
    from bhbench.leaderboard.robustness import Curve


def _strengths(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    from bhbench.config import SCRATCH_RESULTS
    from bhbench.perturb import STRENGTHS

    p = sub.add_parser(
        "robustness",
        help="test-time stain shift: score a method's one fit per fold on its test images shifted in HED space",
    )
    p.add_argument("--method", "-m", required=True, metavar="NAME", help="one method name")
    protocol_args(p)
    p.add_argument("--strengths", type=_strengths, default=None, metavar="0.05,0.1",
                   help=f"shift strengths (0 is always added; default {','.join(map(str, STRENGTHS))}): "
                        "each stain scaled by U(1-s, 1+s) and offset by U(-s, s) of its range")  # fmt: skip
    p.add_argument("--results", type=path_arg, default=None,
                   help=f"record folder: robustness-foldK.json go beside the row's records (default "
                        f"$BHBENCH_RESULTS, else ./{SCRATCH_RESULTS})")  # fmt: skip
    p.add_argument("--force", action="store_true", help="redo folds whose robustness records exist")
    sandbox_arg(p)
    p.set_defaults(func=robustness)


def robustness(args: argparse.Namespace) -> int:
    from bhbench import api

    done = api.robustness(args.method, strengths=args.strengths, results=args.results, force=args.force,
                          **api_kwargs(args))  # fmt: skip
    if done.curve is not None:
        out.print(table(done.curve))
    failures(done.jobs, args.verbose)
    console.print(f"{done.seconds:.0f} s; records in {done.folder}")
    return 0 if done.ok else 1


def table(curve: Curve):  # -> rich Table
    from rich.table import Table

    t = Table("HED shift strength", "headline [95% CI]", "drop from 0 [95% CI]",
              title=f"{escape(curve.method)} under test-time stain shift — {curve.dataset.id}, {curve.protocol.id}, "
                    f"{curve.folds} fold(s), one fit each")  # fmt: skip
    for i, s in enumerate(curve.strengths):
        drop = (
            "–"
            if s == 0
            else f"{100 * curve.drop[i]:+.1f} [{100 * curve.drop_low[i]:+.1f}, {100 * curve.drop_high[i]:+.1f}]"
        )
        t.add_row(
            f"{s:g}", f"{100 * curve.headline[i]:.1f} [{100 * curve.low[i]:.1f}, {100 * curve.high[i]:.1f}]", drop
        )
    return t
