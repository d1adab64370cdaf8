"""Verify every record: its metrics are recomputed from the stored per-image predictions and the
labels the file names carry; a record whose numbers, split, dataset fingerprint or predicted images
do not match what is stored beside it is refused with the reason. An accepted record keeps its
scored predictions, from which everything downstream (intervals, ranks, figures) is computed."""

from __future__ import annotations

import hashlib
import io
import json
import math
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bhbench import results
from bhbench.data.index import fingerprint
from bhbench.data.names import ImageName, parse_name
from bhbench.metric import METRICS
from bhbench.protocol import TASK_CLASSES
from bhbench.record import Metrics, RunRecord
from bhbench.scoring import score_all
from bhbench.splits import split_hash

TOLERANCE = 1e-6
# Metrics declared after older records were written: their absence from a record is no mismatch.
ADDED_LATER = frozenset(m.name for m in METRICS if m.added_later)


@dataclass(frozen=True)
class Scored:
    """A fold's predictions as the harness scores them, in the order of the predictions file."""

    filenames: list[str]
    y: np.ndarray
    proba: np.ndarray
    patients: np.ndarray
    magnifications: np.ndarray
    aux: dict[str, np.ndarray]
    metrics: Metrics | None  # recomputed by the harness (None for several folds pooled)

    @property
    def correct(self) -> np.ndarray:
        return self.proba.argmax(axis=1) == self.y


@dataclass
class Checked:
    path: Path
    record: RunRecord | None  # None when the file is not a valid record
    problems: list[str] = field(default_factory=list)
    scored: Scored | None = None
    shifted: dict[float, Scored] | None = None  # a robustness record's, by strength (`scored`: strength 0)

    @property
    def accepted(self) -> bool:
        return self.record is not None and not self.problems


class Shared:
    """What many records point at (split files, dataset manifests, image names), each read once
    per check: a thousand records share a handful of splits and datasets."""

    def __init__(self) -> None:
        self._splits: dict[Path, tuple[dict[int, list[str]], str] | None] = {}
        self._fingerprints: dict[Path, str | None] = {}
        self._names: dict[str, ImageName] = {}

    def split(self, path: Path) -> tuple[dict[int, list[str]], str] | None:
        """{fold: its test images, sorted} and the split's hash; None when the file is missing or not JSON."""
        if path not in self._splits:
            try:
                split = json.loads(path.read_text())
                tests = {f["fold"]: sorted(f["test"]) for f in split["folds"]}
                self._splits[path] = (tests, split_hash(split))
            except (OSError, json.JSONDecodeError):
                self._splits[path] = None
        return self._splits[path]

    def fingerprint(self, path: Path) -> str | None:
        """The fingerprint of a dataset manifest; None when it is missing."""
        if path not in self._fingerprints:
            try:
                self._fingerprints[path] = fingerprint(pd.read_csv(path))
            except OSError:
                self._fingerprints[path] = None
        return self._fingerprints[path]

    def name(self, filename: str) -> ImageName:
        if filename not in self._names:
            self._names[filename] = parse_name(filename)
        return self._names[filename]


def _labels(filenames: list[str], task: str, shared: Shared) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    names = [shared.name(f) for f in filenames]
    if task == "binary":
        y = np.array([n.tumor_class == "M" for n in names], dtype=int)
    else:
        y = np.array([TASK_CLASSES["subtype"].index(n.subtype) for n in names], dtype=int)
    return y, np.array([n.patient for n in names]), np.array([n.magnification for n in names])


def _differs(a: object, b: object, where: str = "") -> str | None:
    """First path at which two metric trees (recomputed a, stored b) differ beyond rounding, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key in a and key not in b and key in ADDED_LATER:
                continue
            if key not in a or key not in b:
                return f"{where}{key}"
            found = _differs(a[key], b[key], f"{where}{key}.")
            if found:
                return found
        return None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) and math.isnan(b):
            return None
        return None if abs(a - b) <= TOLERANCE else where.rstrip(".")
    return None if a == b else where.rstrip(".")


def verify(path: Path, record: RunRecord, root: Path, shared: Shared | None = None) -> Checked:
    """Check one record against its predictions, split file and dataset manifest."""
    shared = shared or Shared()
    if not record.ok or record.predictions is None:  # a successful record has predictions (from_json)
        return Checked(path, record)
    problems: list[str] = []
    try:
        blob = (path.parent / record.predictions.file).read_bytes()
    except OSError:
        return Checked(path, record, ["predictions file is missing"])
    if hashlib.sha256(blob).hexdigest() != record.predictions.sha256:
        problems.append("predictions file does not match the hash in the record")
    frame = pd.read_csv(io.BytesIO(blob))  # the bytes just hashed, not a second read
    by_strength = _strengths(frame, record, problems)
    frame = by_strength.get(0.0, frame.iloc[:0]) if by_strength is not None else frame
    dataset_dir = root / record.dataset.id
    split_file = dataset_dir / "splits" / record.split.file
    split = shared.split(split_file)
    if split is None:
        problems.append(f"split file {split_file.name} is missing")
    elif split[1] != record.split.hash:
        problems.append(f"split hash does not match the split file {split_file.name}")
    elif split[0].get(record.split.fold) != sorted(frame["filename"]):
        problems.append("predictions do not cover exactly the test images of the fold")
    found = shared.fingerprint(dataset_dir / "manifest.csv")
    if found is None:
        problems.append("dataset manifest is missing")
    elif found != record.dataset.fingerprint:
        problems.append("dataset fingerprint does not match the dataset manifest")
    task = record.protocol.task
    try:
        scored = _scored(frame, task, shared)
        shifted = {s: _scored(f, task, shared) for s, f in by_strength.items()} if by_strength is not None else None
    except (KeyError, ValueError) as exc:
        return Checked(path, record, [*problems, f"predictions cannot be scored ({exc})"])
    assert scored.metrics is not None
    where = _differs(scored.metrics.to_json(), record.metrics.to_json() if record.metrics else None)
    if where:
        problems.append(f"stored metric {where} differs from the one recomputed from the predictions")
    return Checked(path, record, problems, scored, shifted)


def _scored(frame: pd.DataFrame, task: str, shared: Shared) -> Scored:
    """The predictions scored by the harness; KeyError or ValueError when they cannot be."""
    proba = frame[[f"p_{c}" for c in TASK_CLASSES[task]]].to_numpy(dtype=float)
    y, patients, mags = _labels(frame["filename"].tolist(), task, shared)
    aux_cols = [c for c in frame.columns if c.startswith("aux_magnification_")]
    aux = {"magnification": frame[aux_cols].to_numpy(dtype=float)} if aux_cols else {}
    return Scored(frame["filename"].tolist(), y, proba, patients, mags, aux, score_all(y, proba, patients, mags, aux))


def _strengths(frame: pd.DataFrame, record: RunRecord, problems: list[str]) -> dict[float, pd.DataFrame] | None:
    """A robustness record's predictions by strength (None for an ordinary record); a problem when
    they are not the strengths the record names, each over the same images."""
    if record.perturbation is None:
        if "strength" in frame:
            problems.append("predictions have a strength column but the record names no perturbation")
        return None
    if "strength" not in frame:
        problems.append("a robustness record's predictions have no strength column")
        return {}
    parts = {float(s): f.drop(columns="strength").reset_index(drop=True) for s, f in frame.groupby("strength")}
    if sorted(parts) != sorted(record.perturbation.strengths) or 0.0 not in parts:
        problems.append(f"predictions' strengths {sorted(parts)} are not the record's")
    elif any(sorted(f["filename"]) != sorted(parts[0.0]["filename"]) for f in parts.values()):
        problems.append("predictions of some strength do not cover the same images as strength 0")
    return parts


def _check(root: Path, paths: list[Path]) -> list[Checked]:
    checked = []
    shared = Shared()
    for path in paths:
        try:
            record = results.load(path)
        except results.RecordError as exc:
            checked.append(Checked(path, None, [exc.problem]))
            continue
        checked.append(verify(path, record, root, shared))
    return checked


def check_all(root: Path, pool: Executor | None = None, paths: list[Path] | None = None) -> list[Checked]:
    """Every record under `root` (or those of `paths`, files under it), verified (in `pool`'s
    workers, a share each, when given); a file that is not a valid record is refused with the reason."""
    paths = results.record_files(root) if paths is None else paths
    if pool is None or len(paths) < 16:
        return _check(root, paths)
    # runs of neighbouring files: a share reads few datasets' manifests and split files
    shares = [paths[len(paths) * i // 8 : len(paths) * (i + 1) // 8] for i in range(8)]
    checked = {c.path: c for share in pool.map(_check, [root] * len(shares), shares) for c in share}
    return [checked[p] for p in paths]
