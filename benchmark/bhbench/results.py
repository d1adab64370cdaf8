"""Run records on disk: one JSON file per (dataset, protocol, method + params, fold), with the
per-image predictions beside it. Both are written atomically (temp file + rename), predictions first,
so a record that exists always has complete predictions; a killed run never leaves a half record.
What a record holds, and its JSON mapping, is `bhbench.record.RunRecord`."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bhbench import util
from bhbench.errors import DataError
from bhbench.record import PredictionsFile, RunRecord


def params_hash(params: dict[str, Any]) -> str:
    return util.digest(params)[:10]


def code_files(module_file: str | Path) -> list[Path]:
    """The source files that define a method: the .py files of its package folder (a built-in
    family, a folder submission with method.py), or the one file of a single-file submission; then,
    for a package, the modules of its top-level package that those files import, transitively (the
    probe fits the hand-crafted classifiers: editing them must change the probe's fingerprint).
    Imports are read with ast, never executed. Those of `__init__.py` files are not followed: there
    they register methods (`bhbench_baselines/__init__.py` imports every family)."""
    path = Path(module_file).resolve()
    folder = path.parent
    if path.name in ("__init__.py", "method.py") or (folder / "__init__.py").is_file():
        own = sorted(folder.glob("*.py"))
    else:
        own = [path]
    top = folder
    while (top.parent / "__init__.py").is_file():
        top = top.parent
    if not (top / "__init__.py").is_file():  # not inside a package: nothing to resolve imports against
        return own
    found, todo = set(own), [f for f in own if f.name != "__init__.py"]
    while todo:
        for module in _imported_modules(todo.pop(), top.parent):
            if module not in found:
                found.add(module)
                if module.name != "__init__.py":
                    todo.append(module)
    return own + sorted(found - set(own))


def _imported_modules(file: Path, root: Path) -> set[Path]:
    """Source files under `root` (the folder holding `file`'s top-level package) that `file` imports,
    at module level or inside functions: `import a.b`, `from a.b import c` (module c, else a.b's own
    file) and relative imports."""
    package = file.parent.relative_to(root).parts
    found: set[Path] = set()

    def add(parts: tuple[str, ...] | list[str]) -> bool:
        if not parts or parts[0] != package[0]:  # another distribution: its version is recorded instead
            return False
        for candidate in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
            if candidate.is_file():
                found.add(candidate)
                return True
        return False

    for node in ast.walk(ast.parse(file.read_bytes(), str(file))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name.split("."))
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1] if node.level else ())
            base += node.module.split(".") if node.module else []
            submodules = [add([*base, alias.name]) for alias in node.names]
            if not all(submodules):  # some names are defined in the module `base` itself
                add(base)
    return found


def code_fingerprint(files: list[Path]) -> dict[str, Any]:
    """Hash of a method's source files and the harness version: a record names the code that made it.
    Files are named relative to the first one's folder (the method's own: `classifiers.py`; another
    family's: `../handcrafted/classifiers.py`)."""
    harness = metadata.version("bhbench")
    digest = hashlib.sha256(f"bhbench {harness}\n".encode())
    names = [Path(os.path.relpath(f, files[0].parent)).as_posix() for f in files]
    for name, f in zip(names, files, strict=True):
        # Line endings normalised: a Windows checkout of the same commit has the same code.
        digest.update(f"{name}\n".encode() + f.read_bytes().replace(b"\r\n", b"\n") + b"\0")
    return {"hash": digest.hexdigest()[:10], "files": names, "harness": harness}


@dataclass(frozen=True)
class RecordPath:
    """Where the record of one fold lives."""

    results: Path
    dataset_id: str
    protocol_id: str
    method: str
    params_hash: str
    fold: int

    @property
    def folder(self) -> Path:
        return self.results / self.dataset_id / self.protocol_id / self.method / self.params_hash

    @property
    def record(self) -> Path:
        return self.folder / f"fold{self.fold}.json"

    @property
    def predictions(self) -> Path:
        return self.folder / f"fold{self.fold}.predictions.csv"


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


def record_files(results: Path) -> list[Path]:
    """Every record file under `results` (fold*.json, at any depth), sorted."""
    return sorted(results.rglob("fold*.json"))


def all_records(results: Path) -> list[tuple[Path, RunRecord | None]]:
    return [(p, read(p)) for p in record_files(results)]


def mean_headline(records: list[RunRecord]) -> dict[tuple[str, str], tuple[float, int]]:
    """(method, params hash) -> (mean patient recognition rate, folds) over the successful records."""
    rows: dict[tuple[str, str], list[float]] = {}
    for r in records:
        if r.metrics is not None:
            rows.setdefault((r.method.name, r.method.params_hash), []).append(r.metrics.headline)
    return {k: (float(np.mean(v)), len(v)) for k, v in rows.items()}


def would_rank(row: tuple[str, str], score: float, board: Path) -> tuple[int, int] | None:
    """Where a row with mean PRR `score` would rank among the other methods of a leaderboard
    section (`board` = results/<dataset>/<protocol>): (rank, rows), or None without such a section."""
    others = [
        prr for (name, _), (prr, _) in mean_headline([r for _, r in all_records(board) if r]).items()
        if name != row[0]
    ]  # fmt: skip
    return (1 + sum(prr > score for prr in others), len(others) + 1) if others else None
