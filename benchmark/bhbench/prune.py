"""Tidying a results folder: which files no run and no leaderboard should read any more (the
records of `run` and of `robustness` alike).

A failed fold's record stays until it is rerun (it tells the user what went wrong); pruning removes
it with its log. Damaged records (unreadable, another schema, predictions missing or changed),
predictions and logs whose record is gone, and temporary files of killed writes go too. With
`superseded`, so do successful records that `bhbench run` would redo because the method's code has
changed since they were made.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bhbench import registry, results
from bhbench.errors import UserError
from bhbench.record import RunRecord


@dataclass(frozen=True)
class Removal:
    path: Path
    reason: str


def _record_of(path: Path) -> Path:
    """fold3.predictions.csv / fold3.log -> fold3.json"""
    return path.with_name(path.name.split(".")[0] + ".json")


def _finished(folder: Path, path: Path) -> bool:
    """results.is_finished for a record found under `folder` (…/method/params_hash/[robustness-]foldK.json)."""
    where = results.placed(folder, path)
    return where is not None and results.is_finished(where)


def _superseded(record: RunRecord) -> str | None:
    from bhbench.runner import code_of

    name = record.method.name
    try:
        current = code_of(name).hash
    except UserError:
        return None  # a method not installed here: nothing to compare with, so keep it
    return None if record.method.code_hash == current else f"superseded: {name}'s code changed since this record"


def stale(folder: Path, superseded: bool = False) -> list[Removal]:
    """What `prune` would remove from a results folder, with the reason for each file."""
    if not folder.is_dir():
        raise UserError(f"--results {folder}: no such folder")
    if superseded:
        registry.discover()
    found: list[Removal] = []
    kept: set[Path] = set()
    for path in results.record_files(folder) + results.record_files(folder, kind=results.ROBUSTNESS):
        try:
            record = results.load(path)
        except results.RecordError as exc:
            found.append(Removal(path, f"not a record of this bhbench ({exc.problem})"))
            continue
        if not record.ok:
            found.append(Removal(path, f"failed: {str(record.error).splitlines()[0]}"))
        elif not _finished(folder, path):
            found.append(Removal(path, "its predictions are missing or changed"))
        elif superseded and (why := _superseded(record)):
            found.append(Removal(path, why))
        else:
            kept.add(path)
    for pattern, what in (("*fold*.predictions.csv", "predictions"), ("*fold*.log", "log")):
        for path in sorted(folder.rglob(pattern)):
            if _record_of(path) not in kept:
                found.append(Removal(path, f"{what} of a record that is gone or removed"))
    found += [Removal(p, "left by an interrupted write") for p in sorted(folder.rglob(".*.tmp"))]
    return found


def prune(folder: Path, superseded: bool = False) -> list[Removal]:
    removed = stale(folder, superseded)
    for r in removed:
        r.path.unlink(missing_ok=True)
    return removed
