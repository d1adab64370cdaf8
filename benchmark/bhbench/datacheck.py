"""`bhbench data check`: every problem of a tree and its fold files, in one pass, with counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bhbench.data import breakhis
from bhbench.data.images import ImageStore
from bhbench.data.index import Problem, stage
from bhbench.data.sources import open_dataset
from bhbench.splits import official_leaks, read_official

SHOWN = 5  # example file names per fold-file note


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    differences: list[str] | None = None  # counts unlike the complete BreaKHis_v1; None: not compared

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def lines(self) -> list[str]:
        out = list(self.notes)
        if self.differences is not None:
            out += breakhis.verdict(self.differences)
        for p in self.problems:
            out.append(f"{p.severity}: {p}")
        counts: Counter[tuple[str, str]] = Counter()
        for p in self.problems:
            counts[p.severity, p.kind] += p.count
        if counts:
            out.append("summary: " + ", ".join(f"{n} {kind} ({sev})" for (sev, kind), n in sorted(counts.items())))
        out.append(f"{len(self.errors)} error(s), {len(self.problems) - len(self.errors)} warning(s)")
        return out


def _examples(names: list[str]) -> str:
    more = f", ... ({len(names) - SHOWN} more)" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def check(data: Path | None, folds: Path | None, progress: Callable[[int], None] | None = None) -> Report:
    report = Report()
    filenames: set[str] | None = None
    if data is not None or folds is None:
        dataset = open_dataset(data)
        decoded = stage(dataset, ImageStore(), progress)  # a full decode: finds truncated files too
        report.problems += dataset.problems + decoded
        bad = {p.path for p in decoded}
        good = dataset.table[~dataset.table["relpath"].isin(bad)]
        filenames = set(good["filename"])
        report.notes.append(
            f"{dataset.root}: {len(dataset.table)} indexed image(s), {len(good)} readable, "
            f"{good['patient'].nunique()} patients"
        )
        if dataset.synthetic:
            report.notes.append("synthetic tree: not compared with BreaKHis_v1's published counts")
        else:
            report.differences = breakhis.differences(good)
    if folds is not None:
        table = read_official(folds)
        per_fold = table.groupby("fold").size()
        report.notes.append(
            f"{folds}: {len(per_fold)} fold(s), " + ", ".join(f"fold {k}: {n} entries" for k, n in per_fold.items())
        )
        for fold, patients in official_leaks(table).items():
            if patients:
                report.problems.append(
                    Problem(
                        f"{folds} fold {fold}",
                        f"patient(s) {', '.join(patients)} in both train and test (leak in the official protocol)",
                        "patient leak",
                        "warning",
                    )
                )
        if filenames is not None:
            listed = set(table["filename"])
            absent = sorted(listed - filenames)
            if absent:
                report.problems.append(
                    Problem(
                        str(folds),
                        f"{len(absent)} fold line(s) name images not in the data: {_examples(absent)}",
                        "fold lines without image",
                        "warning",
                        len(absent),
                    )  # fmt: skip
                )
            unlisted = sorted(filenames - listed)
            if unlisted:
                report.problems.append(
                    Problem(
                        str(folds),
                        f"{len(unlisted)} image(s) appear in no fold: {_examples(unlisted)}",
                        "image in no fold",
                        "warning",
                        len(unlisted),
                    )  # fmt: skip
                )
    return report
