"""Run records on disk: one JSON file per (dataset, protocol, method + params, fold), with the
per-image predictions beside it. Both are written atomically (temp file + rename), predictions first,
so a record that exists always has complete predictions; a killed run never leaves a half record.
What a record holds, and its JSON mapping, is `bhbench.record.RunRecord`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bhbench import config, util
from bhbench.errors import DataError, UserError
from bhbench.record import PredictionsFile, RunRecord


@dataclass(frozen=True)
class RecordPath:
    """Where the record of one fold lives."""

    results: Path
    dataset_id: str
    protocol_id: str
    method: str
    params_hash: str
    fold: int
    kind: str = ""  # "robustness-" for a robustness record: not one of the row's folds

    @property
    def folder(self) -> Path:
        return self.results / self.dataset_id / self.protocol_id / self.method / self.params_hash

    @property
    def record(self) -> Path:
        return self.folder / f"{self.kind}fold{self.fold}.json"

    @property
    def predictions(self) -> Path:
        return self.folder / f"{self.kind}fold{self.fold}.predictions.csv"


def predictions_frame(filenames: list[str], proba: np.ndarray, classes: tuple[str, ...], aux: dict) -> pd.DataFrame:
    frame = pd.DataFrame({"filename": filenames})
    for j, c in enumerate(classes):
        frame[f"p_{c}"] = proba[:, j]
    for head, values in aux.items():
        for j in range(values.shape[1]):
            frame[f"aux_{head}_{j}"] = values[:, j]
    return frame


class RecordError(DataError):
    """A record file that cannot be read as a record of this schema."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.problem = problem


def encode(record: RunRecord) -> str:
    """The record's file content."""
    return json.dumps(record.to_json(), indent=1, sort_keys=True, default=util.jsonable)


def write(where: RecordPath, record: RunRecord, predictions: pd.DataFrame | None) -> RunRecord:
    """Predictions first, then the record that points at them (with their hash); the record written."""
    if predictions is not None:
        blob = predictions.to_csv(index=False).encode()  # full precision: the leaderboard re-scores it
        util.atomic_write(where.predictions, blob, fsync=True)
        record = dataclasses.replace(
            record, predictions=PredictionsFile(where.predictions.name, hashlib.sha256(blob).hexdigest())
        )
    util.atomic_write(where.record, encode(record), fsync=True)
    return record


def load(path: Path) -> RunRecord:
    """The record in `path`; RecordError naming the file and what is wrong with it."""
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise RecordError(path, f"cannot be read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(path, f"not JSON ({exc})") from None
    try:
        return RunRecord.from_json(doc)
    except DataError as exc:
        raise RecordError(path, str(exc)) from None


def read(path: Path) -> RunRecord | None:
    """The record in `path`, or None if it is missing or not a valid record (an interrupted write
    leaves no record, but a user may still have damaged one): a run redoes that fold."""
    try:
        return load(path)
    except RecordError:
        return None


def is_finished(where: RecordPath) -> bool:
    """True when a successful record and its intact predictions exist."""
    record = read(where.record)
    if record is None or not record.ok or record.predictions is None:
        return False
    try:
        blob = where.predictions.read_bytes()
    except OSError:
        return False
    return hashlib.sha256(blob).hexdigest() == record.predictions.sha256


def load_predictions(record_path: Path, record: RunRecord) -> pd.DataFrame:
    assert record.predictions is not None, "a successful record has predictions"
    return pd.read_csv(record_path.parent / record.predictions.file)


ROBUSTNESS = "robustness-"  # the RecordPath kind of a robustness record


def record_files(results: Path, select: Callable[[str, str, str], bool] | None = None, kind: str = "") -> list[Path]:
    """Every record file of `kind` under `results` (fold*.json, or robustness-fold*.json, at any
    depth), sorted; with `select`, only those of the method folders results/<dataset>/<protocol>/<method>/
    it accepts (called with the three names): the layout is the index, so a command about two rows
    reads their records only."""
    pattern = f"{kind}fold*.json"
    if select is None:
        return sorted(results.rglob(pattern))
    folders = (f for f in results.glob("*/*/*") if f.is_dir() and select(f.parent.parent.name, f.parent.name, f.name))
    return sorted(p for f in folders for p in f.rglob(pattern))


def placed(results: Path, path: Path) -> RecordPath | None:
    """The RecordPath of a record file found under `results`, or None where `run` and `robustness`
    write no record (another depth, another name)."""
    parts = path.relative_to(results).parts
    kind, _, fold = parts[-1].removesuffix(".json").rpartition("fold")
    if len(parts) != 5 or kind not in ("", ROBUSTNESS) or not fold.isdigit():
        return None
    return RecordPath(results, *parts[:4], int(fold), kind)


def reading_folders(given: Sequence[Path] | None = None) -> list[Path]:
    """The results folders a reading command (compare, report, export, reproduce) reads, in order:
    those given (each must exist), else the committed board and the user's folder when it exists.
    Records with the same place in two folders are one record: the first folder's is read."""
    if given:
        for folder in given:
            if not folder.is_dir():
                raise UserError(f"results folder {folder} does not exist (--results)")
        unique: dict[Path, Path] = {}
        for folder in given:
            unique.setdefault(folder.resolve(), folder)
        return list(unique.values())
    scratch = config.results_dir()
    if not scratch.is_dir() or is_committed(scratch):
        return [config.COMMITTED_RESULTS]
    return [config.COMMITTED_RESULTS, scratch] if config.COMMITTED_RESULTS.is_dir() else [scratch]


def is_committed(folder: Path) -> bool:
    """Whether `folder` is the committed board's records (read-only for every command but `leaderboard`)."""
    return folder.resolve() == config.COMMITTED_RESULTS.resolve()


def all_records(results: Path) -> list[tuple[Path, RunRecord | None]]:
    return [(p, read(p)) for p in record_files(results)]
