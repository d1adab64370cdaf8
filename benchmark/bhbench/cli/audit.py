"""`bhbench audit`: refit a method on training labels permuted among patients; a learner falls to chance."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from rich.markup import escape

from bhbench.cli.common import api_kwargs, path_arg, protocol_args, sandbox_arg
from bhbench.cli.output import console, failures, out

if TYPE_CHECKING:
    from bhbench.api import AuditOutcome


def add_parser(sub: argparse._SubParsersAction) -> None:
    from bhbench.config import COMMITTED_RESULTS, SCRATCH_RESULTS

    p = sub.add_parser(
        "audit",
        help="label-permutation audit: refit a method on permuted training labels and check it falls to chance",
    )
    p.add_argument("--method", "-m", required=True, metavar="NAME", help="one method name")
    protocol_args(p)
    folds = p.add_mutually_exclusive_group()
    folds.add_argument("--all-folds", action="store_true", help="audit every fold (default: the first)")
    folds.add_argument("--fold", type=int, action="append", default=None, metavar="N", help="audit fold N; repeatable")
    p.add_argument("--results", type=path_arg, default=None,
                   help=f"record folder: the honest fits are its records (run when missing) and audit.json goes "
                        f"beside them (default $BHBENCH_RESULTS, else ./{SCRATCH_RESULTS}; the committed "
                        f"leaderboard's is {COMMITTED_RESULTS})")  # fmt: skip
    p.add_argument("--force", action="store_true", help="redo the honest fits even where records exist")
    p.add_argument("--private-cohort", action="store_true",
                   help="also fit the method on a private synthetic cohort (a secret seed, the same "
                        "distribution) and fail it when its public score is higher beyond the intervals "
                        "(synthetic data only)")  # fmt: skip
    sandbox_arg(p)  # maintainers audit with on
    p.set_defaults(func=audit)


def audit(args: argparse.Namespace) -> int:
    from bhbench import api

    which = "all" if args.all_folds else args.fold
    done = api.audit(args.method, which_folds=which, private_cohort=args.private_cohort, results=args.results,
                     force=args.force, **api_kwargs(args))  # fmt: skip
    _print(done)
    failures(done.jobs, args.verbose)
    return 0 if done.ok else 1


def _print(done: AuditOutcome) -> None:
    from rich.table import Table

    from bhbench.data.sources import PRIVATE_NAME

    result = done.result
    data = "real data" if not result.synthetic else "synthetic data"
    if result.dataset.startswith(PRIVATE_NAME):
        data = "synthetic, private cohort"
    table = Table("fold", "test patients", "PRR honest", "PRR permuted labels", "chance", "kept own label",
                  title=f"label-permutation audit of {escape(result.method)} — {data} ({result.dataset}, "
                        f"{result.protocol})")  # fmt: skip

    def pc(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.1f}"

    for f in result.folds:
        table.add_row(str(f.fold), str(f.test_patients), pc(f.honest), pc(f.permuted), pc(f.chance),
                      f"{100 * f.kept:.0f}%")  # fmt: skip
    out.print(table)
    gap = result.private_cohort
    if gap and gap.get("public") is not None:
        console.print(
            f"synthetic, private cohort {gap['cohort']}: PRR {100 * gap['private']:.1f} against "
            f"{100 * gap['public']:.1f} on the public one (gap {100 * gap['gap']:+.1f}, "
            f"bound {100 * gap['bound']:.1f}); "
            f"seed {gap['seed']} (commitment {gap['seed_commitment']})"
        )
    colour = {"pass": "green", "fail": "red"}.get(result.verdict, "yellow")
    console.print(f"[{colour}]audit {result.verdict}:[/] {escape(result.reason)}")
    console.print(
        f"draw committed as {result.seed_commitment}; {result.seconds:.0f} s of fitting, {done.seconds:.0f} s in all; "
        f"written to {done.file}"
    )
