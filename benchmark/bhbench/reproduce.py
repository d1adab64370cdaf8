"""Rerun what records say and compare: `bhbench reproduce`.

A record names everything its numbers depend on: dataset fingerprint, split (hash and file),
protocol, method, parameters, seed, the method's code and the package versions. Reproducing it
means rerunning exactly that through the runner (the same path `bhbench run` takes, into a
temporary results folder) and comparing the new per-image predictions and metrics with the
stored ones. What cannot be rerun faithfully (data not given, another split) is refused with the
reason; other package versions are compared all the same and named beside the verdict, since
whether they moved a number is exactly what the comparison tells.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bhbench import environment, results, runner
from bhbench.data import synthetic
from bhbench.data.index import Dataset
from bhbench.data.sources import folds_beside, open_dataset, synthetic_default
from bhbench.errors import UserError
from bhbench.protocol import LIU_NAMES, STAIN_NORMS
from bhbench.record import RunRecord

Progress = Callable[[int], None]

# Largest per-image probability difference that still counts as the same prediction. The
# hand-crafted pipelines are deterministic given the seed; what may differ between two runs is the
# order of floating-point sums (the blind test order is fresh per run), which moves float64
# results by ~1e-13. 1e-6 is far above that and far below any change that matters (a ranking moves
# only when some image's prediction crosses a decision boundary, which the metrics check catches).
PROBA_TOLERANCE = 1e-6
# Metrics agree when they agree to the leaderboard's precision: it shows percentages with one
# decimal, so two values agree within half of that last digit.
METRIC_TOLERANCE = 0.0005


def resolve(target: str, root: Path) -> list[Path]:
    """The record files a target names: a record file, a folder holding records (a method or one
    of its parameter folders), or a row `DATASET/PROTOCOL/METHOD` under `root`, where DATASET is a
    dataset id or its name (`synthetic`, `breakhis`) and PROTOCOL a protocol id or Liu's name
    (MIBC, MSBC, MIFC, MSFC), which names the leak-free protocol of that regime and task (the leaky
    image-kfold twin goes by its id) when the dataset has one."""
    path = Path(target).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        found = results.record_files(path)
        if not found:
            raise UserError(f"{path}: no records (fold*.json) in this folder")
        return found
    parts = target.strip("/").split("/")
    if len(parts) != 3:
        raise UserError(
            f"{target}: not a record file, a folder of records, or a row DATASET/PROTOCOL/METHOD "
            "(e.g. synthetic/MIBC/lbp_svm)"
        )
    dataset, protocol, method = parts
    if dataset == "synthetic" and (root / synthetic.DEFAULT_DATASET_ID).is_dir():
        dataset = synthetic.DEFAULT_DATASET_ID  # what this version generates, among older synthetic sets
    datasets = _match(root, dataset, lambda d: d.name == dataset or d.name.startswith(f"{dataset}-"), "dataset")
    protocols = _match(datasets, protocol, lambda p: p.name == protocol or _is_liu(p.name, protocol), "protocol")
    folder = protocols / method
    found = results.record_files(folder)
    if not found:
        names = sorted(p.name for p in protocols.iterdir() if p.is_dir())
        raise UserError(f"{target}: no records of {method} in {protocols}; methods there: {', '.join(names)}")
    return found


def resolve_in(target: str, folders: Sequence[Path]) -> list[Path]:
    """`resolve` in the first of `folders` that holds the target; UserError with each folder's reason
    when none does."""
    reasons = []
    for folder in folders:
        try:
            return resolve(target, folder)
        except UserError as exc:
            reasons.append(str(exc))
    raise UserError("; ".join(dict.fromkeys(reasons)))


def _is_liu(protocol_id: str, name: str) -> bool:
    """Whether a protocol id is the leak-free one of Liu et al.'s (regime, task) protocols, e.g. MIBC:
    the patient or official split, on raw pixels from every training patient at every magnification
    (--stain-norm, --train-fraction, --train-mags and --test-mags each add a part to the id: its
    method, frac..., train...x, test...x)."""
    parts = protocol_id.split("-")
    variant = any(p in STAIN_NORMS or p.startswith(("frac", "train", "test")) for p in parts[3:])
    return (
        parts[2:3] in (["patient"], ["official"])  # not image-kfold, cross-stain or stain-random
        and not variant
        and any(
            liu == name.upper() and protocol_id.startswith(f"{task}-{regime}-")
            for (regime, task), liu in LIU_NAMES.items()
        )
    )


def _match(folder: Path, name: str, test: Callable[[Path], bool], what: str) -> Path:
    if not folder.is_dir():
        raise UserError(f"{folder}: no such results folder")
    hits = sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "splits" and test(p))
    if len(hits) != 1:
        known = ", ".join(sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name != "splits"))
        which = "matches several" if hits else "matches none"
        raise UserError(f"{what} {name!r} {which} of the {what}s in {folder}: {known}")
    return hits[0]


def load(paths: list[Path]) -> list[tuple[Path, RunRecord]]:
    """The successful records among `paths`; a failed or invalid one is an error naming it."""
    loaded = []
    for path in paths:
        record = results.load(path)
        if not record.ok:
            raise UserError(f"{path}: a failed run ({record.error}); only successful records can be reproduced")
        loaded.append((path, record))
    return loaded


def version_drift(record: RunRecord) -> list[str]:
    """Package versions that differ from the record's, among those that can move its numbers."""
    then = record.environment.versions
    now = environment.versions()
    drift = [
        f"{name} {then[name]} in the record, {now.get(name, 'not installed')} here"
        for name in environment.VERSIONED
        if name in then and then[name] != now.get(name)
    ]
    recorded_python = ".".join(then.get("python", "").split(".")[:2])
    here_python = ".".join(platform.python_version().split(".")[:2])
    if recorded_python and recorded_python != here_python:
        drift.append(f"python {recorded_python} in the record, {here_python} here")
    return drift


def hardware_drift(record: RunRecord) -> list[str]:
    """The record's CPU when it names one other than this machine's: a deep record's float sums, and
    so its numbers, may differ there (the thread count is not drift: the rerun takes the record's)."""
    then, now = record.environment.cpu, environment.cpu()
    return [f"CPU {then} in the record, {now} here"] if then and then != now else []


def lock_note(loaded: list[tuple[Path, RunRecord]]) -> str:
    """Which lock the records and this environment were made under, in a phrase."""
    here = environment.lock_here()
    then = sorted({r.environment.lock or "none" for _, r in loaded})
    if then == [here]:
        return f"lock {here}"
    return f"records' lock {', '.join(then)}; here {here or 'no lock matched exactly'}"


def code_changes(loaded: list[tuple[Path, RunRecord]]) -> dict[str, tuple[str, str]]:
    """Methods whose source files changed since their records: name -> (recorded hash, current hash)."""
    changed = {}
    for _, record in loaded:
        name = record.method.name
        then = record.method.code_hash or "none recorded"
        now = runner.code_of(name).hash
        if then != now:
            changed[name] = (then, now)
    return changed


def groups(loaded: list[tuple[Path, RunRecord]]) -> dict[tuple[str, str, str], list[tuple[Path, RunRecord]]]:
    """Records by (dataset id, protocol id, split hash): each group is one plan, one data preparation."""
    grouped: dict[tuple[str, str, str], list[tuple[Path, RunRecord]]] = {}
    for path, record in loaded:
        key = (record.dataset.id, record.protocol.id, record.split.hash)
        grouped.setdefault(key, []).append((path, record))
    return grouped


def open_data(record: RunRecord, data: Path | None, progress: Progress | None = None) -> Dataset:
    """The data a record was made on, or a refusal saying what to give."""
    wanted = record.dataset
    if data is None and wanted.synthetic:
        if wanted.id != synthetic.DEFAULT_DATASET_ID:
            raise UserError(
                f"the record was made on synthetic data {wanted.id}, but this version's synthetic default "
                f"is {synthetic.DEFAULT_DATASET_ID}; give --data with the tree the record was made on"
            )
        return synthetic_default(progress)
    if data is None and not os.environ.get("BHBENCH_DATA"):
        raise UserError(
            f"the record was made on real BreaKHis ({wanted.images} images, dataset {wanted.id}), "
            "which is not available here: give --data PATH (and --folds PATH for the official split)"
        )
    return open_dataset(data, progress)


def plan_for(
    record: RunRecord, dataset: Dataset, folds: Path | None, options: runner.Options, progress: Progress | None = None
) -> runner.Plan:
    """The runner's plan for a record's dataset, protocol and split; refuses when they differ."""
    protocol = record.protocol
    options.skip_bad = bool(record.dataset.skipped)  # the record's dataset is the tree minus those
    if protocol.split == "official" and folds is None:
        folds = folds_beside(dataset)
        if folds is None:
            raise UserError("the record uses the official split: give --folds PATH (dsfold1..5.txt or Folds.csv)")
    plan = runner.make_plan(dataset, protocol, folds, options, progress)
    if plan.dataset.id != record.dataset.id:
        raise UserError(
            f"the data at {dataset.root} are dataset {plan.dataset.id} ({len(plan.dataset.table)} images); the "
            f"record was made on {record.dataset.id} ({record.dataset.images} images)"
        )
    if plan.split.hash != record.split.hash:
        raise UserError(
            f"the {protocol.split} split built here (hash {plan.split.hash[:12]}) is not the record's "
            f"({record.split.hash[:12]}, file {record.split.file})"
        )
    return plan


def jobs_for(plan: runner.Plan, loaded: list[tuple[Path, RunRecord]], options: runner.Options) -> list[runner.Job]:
    """One job per record: its method, parameters and fold, written under `options.results`."""
    folds = {f.index: f for f in plan.split.folds}
    jobs = []
    for path, record in loaded:
        spec = runner.MethodSpec(record.method.name, record.method.params, record.method.tuned)
        fold = record.split.fold
        phash = path.parent.name  # the record's folder: tuned rows are named by their tuning file
        where = results.RecordPath(options.results, plan.dataset.id, plan.protocol.id, spec.name, phash, fold)
        jobs.append(runner.Job(spec, folds[fold], where, threads=record.environment.threads))
    return jobs


@dataclass
class FoldComparison:
    record: Path
    fold: int
    images: int
    max_diff: float  # largest |committed - rerun| over every probability column and image
    worst: str  # "image column" of the largest difference
    metrics_differ: list[str] = field(default_factory=list)  # "path: committed -> rerun"
    notes: list[str] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return self.max_diff <= PROBA_TOLERANCE and not self.metrics_differ and not self.notes


def compare(path: Path, record: RunRecord, rerun: RunRecord, rerun_predictions: pd.DataFrame) -> FoldComparison:
    """Committed record (and the predictions beside it) against a successful rerun of it."""
    assert record.predictions and record.metrics and rerun.metrics, "both are successful records"
    notes = []
    blob = (path.parent / record.predictions.file).read_bytes()
    if hashlib.sha256(blob).hexdigest() != record.predictions.sha256:
        notes.append("the stored predictions do not match the hash in their record (edited after the run)")
    stored = pd.read_csv(io.BytesIO(blob)).set_index("filename")
    fresh = rerun_predictions.set_index("filename")
    fold = record.split.fold
    if set(stored.index) != set(fresh.index) or list(stored.columns) != list(fresh.columns):
        notes.append("the rerun predicted other images or columns than the record")
        return FoldComparison(path, fold, len(stored), float("inf"), "", [], notes)
    diff = (stored - fresh.loc[stored.index]).abs()
    image, column = diff.stack().idxmax() if diff.size else ("", "")
    differ = [
        f"{where}: {100 * a:.2f} -> {100 * b:.2f}"
        for where, a, b in _leaves(record.metrics.to_json(), rerun.metrics.to_json())
        if not (abs(a - b) <= METRIC_TOLERANCE or (np.isnan(a) and np.isnan(b)))
    ]
    largest = float(diff.to_numpy().max()) if diff.size else 0.0
    return FoldComparison(path, fold, len(stored), largest, f"{image} {column}", differ, notes)


def _leaves(a: Any, b: Any, where: str = "") -> list[tuple[str, float, float]]:
    """(path, a, b) for every numeric leaf the record `a` stores, with the rerun's `b` (NaN where the
    rerun lacks it). A metric declared after the record was made is not in it: the predictions, of
    which every metric is a function, are compared instead."""
    if isinstance(a, dict) or isinstance(b, dict):
        a, b = a if isinstance(a, dict) else {}, b if isinstance(b, dict) else {}
        return [leaf for k in sorted(a) for leaf in _leaves(a.get(k), b.get(k), f"{where}{k}.")]
    if isinstance(a, (int, float)) or isinstance(b, (int, float)):
        fa = float(a) if isinstance(a, (int, float)) else float("nan")
        fb = float(b) if isinstance(b, (int, float)) else float("nan")
        return [(where.rstrip("."), fa, fb)]
    return []
