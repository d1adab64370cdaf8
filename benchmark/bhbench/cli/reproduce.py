"""`bhbench reproduce`: rerun records exactly as they say and compare with what they stored."""

from __future__ import annotations

import argparse

from rich.table import Table

from bhbench.cli.common import path_arg, sandbox_arg
from bhbench.cli.output import Render, console, out, tagged
from bhbench.cli.results import reading_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="rerun records (files, folders or rows like synthetic/MIBC/lbp_svm) and compare predictions and metrics",
    )
    p.add_argument("targets", nargs="+", metavar="RECORD",
                   help="a record file (fold1.json), a folder of records (a method's), or a leaderboard row "
                        "DATASET/PROTOCOL/METHOD: dataset id or name (synthetic, breakhis), protocol id or "
                        "MIBC/MSBC/MIFC/MSFC, method name")  # fmt: skip
    reading_arg(p)  # where rows DATASET/PROTOCOL/METHOD are looked up: the first folder holding the row
    p.add_argument("--data", type=path_arg, default=None,
                   help="the BreaKHis tree of records made on real data (default $BHBENCH_DATA)")  # fmt: skip
    p.add_argument("--folds", type=path_arg, default=None, help="official fold files, for official-split records")
    p.add_argument("--timeout", type=float, default=None, help="seconds one (method, fold) may take")
    sandbox_arg(p)
    p.add_argument("--strict-versions", action="store_true",
                   help="refuse before comparing when package versions differ from the records' (for maintainers; "
                        "by default they are compared anyway and named beside the verdict)")  # fmt: skip
    # Comparing across versions is now the default; the old flag stays accepted.
    p.add_argument("--any-versions", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bhbench import api, reproduce

    done = api.reproduce(args.targets, args.results, args.data, args.folds, timeout=args.timeout,
                         sandbox=args.sandbox, strict_versions=args.strict_versions, submissions=args.submissions,
                         progress=Render())  # fmt: skip
    _print(done.comparisons)
    for line in done.failed:
        console.print(tagged(line, "mismatch", "error"))
    for c in done.mismatches:
        where = f"{c.record.parent.parent.name} fold {c.fold}"
        if c.max_diff > reproduce.PROBA_TOLERANCE:
            console.print(tagged(f"{where}: {c.worst} differs by {c.max_diff:.3g}", "mismatch", "error"))
        for m in c.metrics_differ:
            console.print(tagged(f"{where}: metric {m} (%)", "mismatch", "error"))
        for n in c.notes:
            console.print(tagged(f"{where}: {n}", "mismatch", "error"))
    total = len(done.comparisons) + len(done.failed)
    drift = done.drift
    versions = (
        f"versions that differ from the records': {'; '.join(drift)}" if drift else "same versions as the records"
    )
    cpus = f"made on another CPU: {'; '.join(done.hardware)}" if done.hardware else ""
    if not done.ok:
        console.print(
            f"[red]{len(done.mismatches) + len(done.failed)} of {total} record(s) did not reproduce[/] ({versions})"
        )
        unknown = f"{done.cpu_unknown} record(s) do not name their CPU (made before records did)"
        why = "; ".join(w for w in (cpus, unknown if done.cpu_unknown else "") if w)
        if why:  # the likeliest cause for a deep record when the code and versions are the same
            console.print(tagged(
                f"{why}: deep training's float sums follow the CPU's vector instructions (and the thread "
                "count, which the rerun takes from the record), so a deep record reproduces bit for bit only "
                "on the kind of CPU it was made on", "note", "warning",
            ))  # fmt: skip
        return 1
    agree = f"probabilities within {reproduce.PROBA_TOLERANCE:g}, metrics to the leaderboard's precision"
    if drift or cpus:
        differs = " and ".join(w for w in (versions if drift else "", cpus) if w)
        console.print(f"all {total} record(s) reproduced ({agree}) although {differs}: the numbers did not move")
    else:
        console.print(f"all {total} record(s) reproduced ({agree}), {versions} ({done.lock})")
    return 0


def _print(comparisons: list) -> None:
    from bhbench import reproduce

    table = Table("method", "params", "fold", "images", "max |Δp|", "metrics", title="rerun vs stored")
    for c in sorted(comparisons, key=lambda c: (str(c.record.parent), c.fold)):
        metrics = "agree" if not c.metrics_differ else f"{len(c.metrics_differ)} differ"
        diff = f"{c.max_diff:.2g}" if c.max_diff <= reproduce.PROBA_TOLERANCE else f"[red]{c.max_diff:.3g}[/]"
        table.add_row(c.record.parent.parent.name, c.record.parent.name, str(c.fold), str(c.images), diff, metrics)
    out.print(table)
