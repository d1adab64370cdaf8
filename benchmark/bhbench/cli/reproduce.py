"""`bhbench reproduce`: rerun records exactly as they say and compare with what they stored."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.table import Table

from bhbench.cli.common import discover, path_arg, sandbox_arg, sandbox_of
from bhbench.cli.output import console, out, progress_bar
from bhbench.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    from bhbench.config import COMMITTED_RESULTS

    p = sub.add_parser(
        "reproduce",
        help="rerun records (files, folders or rows like synthetic/MIBC/lbp_svm) and compare predictions and metrics",
    )
    p.add_argument("targets", nargs="+", metavar="RECORD",
                   help="a record file (fold1.json), a folder of records (a method's), or a leaderboard row "
                        "DATASET/PROTOCOL/METHOD: dataset id or name (synthetic, breakhis), protocol id or "
                        "MIBC/MSBC/MIFC/MSFC, method name")  # fmt: skip
    p.add_argument("--results", type=path_arg, default=COMMITTED_RESULTS,
                   help=f"where rows are looked up (default {COMMITTED_RESULTS})")  # fmt: skip
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
    from bhbench import reproduce, results, runner

    discover(args)
    paths = list(dict.fromkeys(p for t in args.targets for p in reproduce.resolve(t, args.results)))
    loaded = reproduce.load(paths)
    drift = sorted({d for _, r in loaded for d in reproduce.version_drift(r)})
    if drift and args.strict_versions:
        raise UserError(
            "this environment differs from the records' in versions that can move the numbers: "
            f"{'; '.join(drift)} (install the lock: pip install -r requirements.lock; or drop --strict-versions)"
        )
    for name, (then, now) in reproduce.code_changes(loaded).items():
        console.print(
            f"[yellow]note:[/] the code of {name} changed since its records (code {then} -> {now}); "
            "comparing what the current code predicts with what the records stored"
        )
    launcher = sandbox_of(args)
    comparisons: list[reproduce.FoldComparison] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bhbench-reproduce-") as tmp:
        options = runner.Options(
            results=Path(tmp), fps_images=0, submissions=args.submissions, timeout=args.timeout, sandbox=launcher
        )
        for (dataset_id, protocol_id, _), group in reproduce.groups(loaded).items():
            console.print(f"reproducing {len(group)} record(s) of {dataset_id} / {protocol_id}")
            with progress_bar("preparing images (the synthetic set is generated once)") as bump:
                dataset = reproduce.open_data(group[0][1], args.data, bump)
            with progress_bar("decoding images into the cache", len(dataset.table)) as bump:
                plan = reproduce.plan_for(group[0][1], dataset, args.folds, options, bump)
            jobs = reproduce.jobs_for(plan, group, options)
            stored = {id(job): g for job, g in zip(jobs, group, strict=True)}
            with progress_bar("rerunning (method x fold)", len(jobs)) as bump:
                for done in runner.run(plan, jobs, options, lambda _: bump(1)):
                    path, record = stored[id(done.job)]
                    rerun = done.record
                    if not rerun.ok:
                        failed.append(f"{path}: the rerun failed: {rerun.error}")
                        continue
                    fresh = results.load_predictions(done.job.where.record, rerun)
                    comparisons.append(reproduce.compare(path, record, rerun, fresh))
    _print(comparisons)
    for line in failed:
        console.print(f"[red]mismatch:[/] {line}")
    bad = [c for c in comparisons if not c.agrees]
    for c in bad:
        where = f"{c.record.parent.parent.name} fold {c.fold}"
        if c.max_diff > reproduce.PROBA_TOLERANCE:
            console.print(f"[red]mismatch:[/] {where}: {c.worst} differs by {c.max_diff:.3g}")
        for m in c.metrics_differ:
            console.print(f"[red]mismatch:[/] {where}: metric {m} (%)")
        for n in c.notes:
            console.print(f"[red]mismatch:[/] {where}: {n}")
    total = len(comparisons) + len(failed)
    versions = (
        f"versions that differ from the records': {'; '.join(drift)}" if drift else "same versions as the records"
    )
    if bad or failed:
        console.print(f"[red]{len(bad) + len(failed)} of {total} record(s) did not reproduce[/] ({versions})")
        return 1
    agree = f"probabilities within {reproduce.PROBA_TOLERANCE:g}, metrics to the leaderboard's precision"
    if drift:
        console.print(f"all {total} record(s) reproduced ({agree}) although {versions}: the numbers did not move")
    else:
        console.print(f"all {total} record(s) reproduced ({agree}), {versions} ({reproduce.lock_note(loaded)})")
    return 0


def _print(comparisons: list) -> None:
    from bhbench import reproduce

    table = Table("method", "params", "fold", "images", "max |Δp|", "metrics", title="rerun vs stored")
    for c in sorted(comparisons, key=lambda c: (str(c.record.parent), c.fold)):
        metrics = "agree" if not c.metrics_differ else f"{len(c.metrics_differ)} differ"
        diff = f"{c.max_diff:.2g}" if c.max_diff <= reproduce.PROBA_TOLERANCE else f"[red]{c.max_diff:.3g}[/]"
        table.add_row(c.record.parent.parent.name, c.record.parent.name, str(c.fold), str(c.images), diff, metrics)
    out.print(table)
