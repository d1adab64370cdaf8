"""Plan and run (method x fold) jobs: stage images, build the split, execute each job in a
worker process, validate its outputs, score, and write a record. Finished folds are skipped."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import fcntl
import inspect
import math
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from queue import Queue
from typing import Any

import numpy as np
import pandas as pd

from bhbench import environment, fingerprint, params, perturb, registry, results, stain
from bhbench.blind import Area, partition_id, secret_rng, unshuffle
from bhbench.config import results_dir
from bhbench.data.images import ImageStore
from bhbench.data.index import Dataset, Problem, stage
from bhbench.errors import DataError, UserError
from bhbench.limits import job_limit
from bhbench.method import TestSet, TrainMeta, TrainSet
from bhbench.protocol import MAGNIFICATIONS, Protocol
from bhbench.record import (
    CodeInfo,
    ContractCheck,
    DatasetInfo,
    MethodInfo,
    Perturbation,
    RunRecord,
    SplitInfo,
    Timing,
    params_hash,
)
from bhbench.scoring import score_all
from bhbench.splits import (
    STAIN_SPLITS,
    Fold,
    Split,
    image_kfold,
    official_split,
    patient_split,
    protocol_subset,
    read_official,
)
from bhbench.util import atomic_write, cpu_count
from bhbench.worker import MethodFailure, Outcome, Task, Worker

Progress = Callable[[int], None]

# The contract check (`run_job`): a random 5% of each part's test images (at least 2) is predicted
# again, in another order and without the rest, and must agree with the full-set predictions. 5% of
# the images costs about 5% of the predict time (measured: see README, "Trust"), within the 10%
# budget. 1e-4 on probabilities is ten times the battery's margin for float noise (BLAS blocking and
# batch size change float32 results by ~1e-6), and a thousand times below what moves a ranking: a
# prediction that uses the other images moves by tenths.
CHECK_FRACTION = 0.05
CHECK_TOLERANCE = 1e-4


@dataclass(frozen=True)
class MethodSpec:
    name: str
    params: dict[str, Any]  # complete: defaults plus what the user set
    tuned: dict[str, Any] | None = None  # how the params were tuned, when they were

    @classmethod
    def create(cls, name: str, overrides: dict[str, Any], tuned: dict[str, Any] | None = None) -> MethodSpec:
        # Effective defaults from the declaration: nothing is constructed (an untrusted method cannot be).
        return cls(name, copy.deepcopy({**params.defaults(name), **overrides}), tuned)


@dataclass
class Options:
    results: Path = field(default_factory=results_dir)
    force: bool = False
    timeout: float | None = None  # seconds per job; None: its method family's default; 0: none
    skip_bad: bool = False
    fps_images: int = 16
    submissions: Path | None = None
    workers: int = 1
    sandbox: str = "none"  # the worker launcher, as bhbench.sandbox.choose picked it
    memory_gb: float | None = None  # per worker (--memory); None: a share of this machine's RAM


@dataclass
class Plan:
    dataset: Dataset
    protocol: Protocol
    split: Split
    split_file: Path
    store: ImageStore
    skipped: list[Problem] = field(default_factory=list)
    # The label-permutation audit (`bhbench.audit.Relabel`): replaces the training rows' labels and
    # gives the jobs a blind area of their own. None for every ordinary run.
    relabel: Any = None
    # With --stain-norm: each fold's normaliser by partition, its target fitted once per run.
    stains: dict[str, stain.Normaliser] = field(default_factory=dict)
    # `bhbench robustness`: every test image predicted at each strength of the shift by the part's one
    # fit; the records are robustness records beside the row's own (`RecordPath.kind`).
    shift: perturb.Shift | None = None

    @property
    def leaks(self) -> dict[int, list[str]]:
        return {f.index: f.leaked_patients for f in self.split.folds if f.leaked_patients}


@dataclass
class Job:
    spec: MethodSpec
    fold: Fold
    where: results.RecordPath
    rerun: str | None = None  # why a fold that has a record runs again (set by `unfinished`)
    damaged: str | None = None  # what was wrong with the record it replaces (set by `unfinished`)
    threads: int | None = None  # the method's thread budget (reproduce: the record's); None: the worker's

    @property
    def log(self) -> Path:
        """Where a failure's whole text goes: its message and the method's traceback."""
        return self.where.record.with_suffix(".log")


@dataclass
class JobResult:
    job: Job
    record: RunRecord  # what the job wrote, or the finished record it skipped
    skipped: bool = False
    note: str | None = None  # why it was skipped, when not finished before this run started


def _build_split(dataset: Dataset, protocol: Protocol, folds: Path | None, store: ImageStore) -> Split:
    if protocol.split == "official":
        if folds is None:
            raise UserError("--split official needs the fold files: give --folds PATH (dsfold1..5.txt or Folds.csv)")
        return official_split(read_official(folds), dataset.table["filename"].tolist())
    if protocol.split == "patient":
        return patient_split(dataset.table, protocol.seed)
    if protocol.split in STAIN_SPLITS:  # groups patients by the stain of their staged pixels
        return STAIN_SPLITS[protocol.split](dataset.table, protocol, store.load)
    return image_kfold(dataset.table, protocol.seed)


def make_plan(
    dataset: Dataset,
    protocol: Protocol,
    folds: Path | None,
    options: Options,
    progress: Progress | None = None,
) -> Plan:
    """Stage every image (a full decode, once), stop on data errors unless skipping, build the split."""
    store = ImageStore()
    problems = dataset.errors + stage(dataset, store, progress)
    if problems and not options.skip_bad:
        shown = "\n".join(f"  {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DataError(
            f"{len(problems)} bad file(s) in {dataset.root}; fix them or rerun with --skip-bad:\n{shown}{more}"
        )
    dataset.drop({p.path for p in problems})
    split = protocol_subset(_build_split(dataset, protocol, folds, store), dataset.table, protocol)
    empty = [f.index for f in split.folds if not f.train or not f.test]
    if empty:
        raise DataError(f"fold(s) {empty} have no training or no test images in {dataset.root}")
    folder = options.results / dataset.id
    split_file = split.save(folder / "splits")
    manifest = folder / "manifest.csv"
    if not manifest.exists():
        blob = dataset.table[["filename", "key"]].sort_values("filename").to_csv(index=False).encode()
        atomic_write(manifest, blob)
    return Plan(dataset, protocol, split, split_file, store, problems)


def make_jobs(plan: Plan, specs: list[MethodSpec], options: Options) -> list[Job]:
    jobs = []
    for spec in specs:
        entry = registry.get(spec.name)
        if plan.protocol.task not in entry.tasks:
            raise UserError(f"{spec.name} does not support the {plan.protocol.task} task (it does {entry.tasks})")
        for fold in plan.split.folds:
            where = results.RecordPath(
                options.results,
                plan.dataset.id,
                plan.protocol.id,
                spec.name,
                params_hash(spec.params),
                fold.index,
                results.ROBUSTNESS if plan.shift is not None else "",
            )
            jobs.append(Job(spec, fold, where))
    return jobs


def _rows(plan: Plan, filenames: list[str]) -> pd.DataFrame:
    table = plan.dataset.table.set_index("filename")
    return table.loc[filenames].reset_index()


def _parts(plan: Plan, fold: Fold) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    train, test = _rows(plan, sorted(fold.train)), _rows(plan, sorted(fold.test))
    if plan.protocol.regime == "mi":
        return [(train, test)]
    parts = []
    for mag in MAGNIFICATIONS:
        tr, te = train[train["magnification"] == mag], test[test["magnification"] == mag]
        if len(te):
            if not len(tr):
                raise DataError(
                    f"fold {fold.index}: no training images at {mag}X for the magnification-specific regime"
                )
            parts.append((tr.reset_index(drop=True), te.reset_index(drop=True)))
    return parts


def missing_classes(plan: Plan, fold: Fold) -> dict[str, list[str]]:
    """The task's classes absent from a fold's training part(s), by part ("all", or "40X"... in the
    magnification-specific regime). Every method meets the same gap; the run says so before fitting
    and the record keeps it, so a row is never averaged over such folds unawares."""
    gaps = {}
    for train, _ in _parts(plan, fold):
        present = set(plan.protocol.labels(train).tolist())
        lacking = [c for i, c in enumerate(plan.protocol.classes) if i not in present]
        if lacking:
            gaps["all" if plan.protocol.regime == "mi" else f"{train['magnification'].iloc[0]}X"] = lacking
    return gaps


def normaliser(plan: Plan, fold: Fold) -> stain.Normaliser | None:
    """The fold's stain normaliser (None without --stain-norm), its target fitted on a sample of the
    fold's training images drawn from the protocol's seed and the fold's index."""
    if plan.protocol.stain_norm == "none":
        return None
    partition = partition_id(fold.train, fold.test)
    if partition not in plan.stains:
        keys = list(_rows(plan, sorted(fold.train))["key"])
        target = stain.estimate(plan.protocol.stain_norm, plan.store, keys, (plan.protocol.seed, fold.index))
        plan.stains[partition] = stain.Normaliser(target)
    return plan.stains[partition]


def _area_partition(plan: Plan, fold: Fold, norm: stain.Normaliser | None) -> str:
    """The partition naming the job's blind area: the fold's, or another one for the audit's
    permuted labels and for each stain target (a method sees only the images it is handed)."""
    partition = partition_id(fold.train, fold.test)
    if plan.relabel is not None:
        partition = plan.relabel.partition(partition)
    return partition if norm is None else norm.partition(partition)


def _staged(plan: Plan, rows: pd.DataFrame, area: Area, norm: stain.Normaliser | None) -> list[str]:
    """Handles of the rows' images in the area, normalised first with --stain-norm."""
    keys = list(rows["key"])
    return area.stage(keys if norm is None else norm.stage(keys, plan.store), plan.store)


def _unnormalised_note(plan: Plan, fold: Fold, norm: stain.Normaliser | None) -> tuple[str, ...]:
    """The record's warning naming the fold's images handed over unnormalised, if any."""
    if norm is None:
        return ()
    rows = _rows(plan, sorted([*fold.train, *fold.test]))
    missed = set(norm.unnormalised(list(rows["key"]), plan.store))
    names = rows.loc[rows["key"].isin(missed), "filename"].tolist()
    if not names:
        return ()
    return (
        f"{plan.protocol.stain_norm} stain normalisation found no stain in {len(names)} image(s) of fold "
        f"{fold.index}, handed over as they are (e.g. {names[0]})",
    )


def _train_set(plan: Plan, rows: pd.DataFrame, area: Area, norm: stain.Normaliser | None) -> TrainSet:
    if plan.relabel is not None:
        rows = plan.relabel.rows(rows)
    meta = TrainMeta(
        y=plan.protocol.labels(rows),
        malignant=(rows["tumor_class"] == "M").to_numpy(),
        subtype=rows["subtype"].to_numpy(),
        magnification=rows["magnification"].to_numpy(),
        patient=rows["patient"].to_numpy(),
    )
    return TrainSet.build(plan.protocol.task, meta, keys=_staged(plan, rows, area, norm), store=area.store)


def _test_set(plan: Plan, rows: pd.DataFrame, area: Area, norm: stain.Normaliser | None) -> TestSet:
    return TestSet.build(plan.protocol.task, keys=_staged(plan, rows, area, norm), store=area.store)


def _check_sample(n: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of a random subset of n test images, in a random order."""
    return rng.choice(n, size=min(n, max(2, math.ceil(CHECK_FRACTION * n))), replace=False)


def invalid_output(name: str, values: np.ndarray, n: int, k: int) -> str | None:
    """Why a method's output breaks the contract, or None."""
    if values.shape != (n, k):
        return f"{name} returned shape {values.shape}, expected ({n}, {k})"
    if not np.isfinite(values).all():
        return f"{name} returned NaN or infinite values"
    if (values < -1e-6).any() or (values > 1 + 1e-6).any():
        return f"{name} returned values outside [0, 1]"
    worst = float(np.abs(values.sum(axis=1) - 1).max()) if n else 0.0
    if worst > 1e-3:
        return f"{name} returned rows that do not sum to one (off by up to {worst:.3g})"
    return None


def _check_outcome(outcome: Outcome, tests: list[pd.DataFrame], k: int) -> None:
    for proba, aux, rows in zip(outcome.proba, outcome.aux, tests, strict=True):
        reason = invalid_output("predict_proba", proba, len(rows), k)
        if reason is None and "magnification" in aux:
            reason = invalid_output(
                "predict_aux['magnification']", aux["magnification"], len(rows), len(MAGNIFICATIONS)
            )
        if reason:
            raise MethodFailure(reason)


def _check_contract(outcome: Outcome, samples: list[np.ndarray], k: int) -> ContractCheck:
    """Compare the check sample's second predictions with the full-set ones (both in the order the
    method was handed); MethodFailure when they disagree."""
    gap = 0.0
    for full, sample, again in zip(outcome.proba, samples, outcome.check, strict=True):
        reason = invalid_output("predict_proba on a sample of the test images", again, len(sample), k)
        if reason:
            raise MethodFailure(reason)
        gap = max(gap, float(np.abs(full[sample] - again).max()) if len(sample) else 0.0)
    checked = sum(len(s) for s in samples)
    if gap > CHECK_TOLERANCE:
        raise MethodFailure(
            f"predictions depend on the other test images: {checked} images predicted again in another "
            f"order and subset differ by up to {gap:.3g} (tolerance {CHECK_TOLERANCE:g}); predict each image "
            "on its own, or declare `transductive = True` to be ranked apart"
        )
    return ContractCheck(checked, gap, CHECK_TOLERANCE, outcome.check_seconds)


def _record(plan: Plan, job: Job, sandbox: str, threads: int) -> RunRecord:
    """The record of a job before it runs: a success with nothing measured yet."""
    entry = registry.get(job.spec.name)
    return RunRecord(
        status="ok",
        error=None,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        dataset=DatasetInfo(**plan.dataset.describe(), skipped=tuple(str(p) for p in plan.skipped)),
        protocol=plan.protocol,
        split=SplitInfo(
            kind=plan.split.kind,
            source=plan.split.source,
            hash=plan.split.hash,
            file=plan.split_file.name,
            fold=job.fold.index,
            leaky=plan.split.leaky,
            leaked_patients=tuple(job.fold.leaked_patients),
            n_train=len(job.fold.train),
            n_test=len(job.fold.test),
            fold_lines_without_image=len(plan.split.missing),
            missing_classes={part: tuple(lacking) for part, lacking in missing_classes(plan, job.fold).items()},
        ),
        method=MethodInfo(
            name=entry.name,
            family=entry.family,
            reference=entry.reference,
            params=job.spec.params,
            params_hash=job.where.params_hash,
            code=code_of(job.spec.name),
            tuned=job.spec.tuned,
            fit_info=None,
            transductive=entry.transductive,
            defaults=_json_defaults(params.defaults(entry.name)),
            weights_data=entry.card.weights_data or None,
        ),
        seed=plan.protocol.seed,
        contract=None,
        metrics=None,
        timing=None,
        environment=environment.environment(sandbox, threads),
    )


def run_job(plan: Plan, job: Job, worker: Worker, options: Options) -> RunRecord:
    """Run one (method, fold) in the worker and write its record, failed or not.

    The method gets each part's test images in a fresh secret order, by handles of the fold's blind
    area (`bhbench.blind`); their predictions are put back in file-name order before scoring."""
    parts = _parts(plan, job.fold)
    if plan.shift is not None:  # each test image once per strength, in one secret order
        parts = [(tr, plan.shift.expand(te, plan.store)) for tr, te in parts]
    tests = [te for _, te in parts]
    family = registry.get(job.spec.name).family
    limit = job_limit(family, options.timeout)
    threads = job.threads or worker.threads  # None: every core, as the worker's thread_budget() says
    record = replace(_record(plan, job, worker.sandbox, threads or cpu_count()), time_limit=limit)
    rng = secret_rng()
    orders = [rng.permutation(len(te)) for te in tests]
    samples = [] if registry.get(job.spec.name).transductive else [_check_sample(len(te), rng) for te in tests]
    blobs = []
    if job.fold.index == plan.split.folds[0].index and options.fps_images > 0:
        sample = tests[0]["relpath"].iloc[orders[0][: options.fps_images]]
        blobs = [plan.dataset.path(r).read_bytes() for r in sample]
    try:
        norm = normaliser(plan, job.fold)
    except stain.StainError as exc:  # in the target's reference: nothing can be normalised to it
        failure = f"{plan.protocol.stain_norm} stain normalisation: the fold's training reference has {exc}"
        return _failed(job, record, MethodFailure(failure))
    if norm is not None:
        record = replace(record, stain_target=norm.target)
    if plan.shift is not None:
        record = replace(record, perturbation=Perturbation("hed", plan.shift.strengths, plan.shift.seed))
    area = Area(_area_partition(plan, job.fold, norm))
    staged = [
        (_train_set(plan, tr, area, norm), _test_set(plan, te.iloc[order], area, norm))
        for (tr, te), order in zip(parts, orders, strict=True)
    ]
    task = Task(job.spec.name, job.spec.params, staged, blobs, samples, str(area.root), threads)
    contract = None
    try:
        outcome = worker.run(task, limit.seconds, limit.origin(family))
        area.harvest(plan.store)
        _check_outcome(outcome, [te.iloc[o] for te, o in zip(tests, orders, strict=True)], len(plan.protocol.classes))
        if samples:
            contract = _check_contract(outcome, samples, len(plan.protocol.classes))
    except MethodFailure as exc:
        return _failed(job, record, exc)
    job.log.unlink(missing_ok=True)  # an earlier failure's, now answered
    test = pd.concat(tests, ignore_index=True)
    proba = np.concatenate([unshuffle(p, o) for p, o in zip(outcome.proba, orders, strict=True)])
    aux = {
        k: np.concatenate([unshuffle(a[k], o) for a, o in zip(outcome.aux, orders, strict=True)])
        for k in outcome.aux[0]
    }
    plain = test["strength"].to_numpy() == 0 if plan.shift is not None else np.ones(len(test), dtype=bool)
    scores = score_all(
        plan.protocol.labels(test[plain]),
        proba[plain],
        test.loc[plain, "patient"].to_numpy(),
        test.loc[plain, "magnification"].to_numpy(),
        {k: v[plain] for k, v in aux.items()},
    )
    record = replace(
        record,
        contract=contract,
        metrics=scores,
        method=replace(record.method, fit_info=outcome.fit_info if len(outcome.fit_info) > 1 else outcome.fit_info[0]),
        # The library's, once each, and the images normalisation left as they are; `run` shows them once at the end.
        warnings=(*outcome.warnings, *_unnormalised_note(plan, job.fold, norm)),
        timing=Timing(fit_seconds=outcome.fit_seconds, predict_seconds=outcome.predict_seconds, **outcome.timing),
    )
    frame = results.predictions_frame(test["filename"].tolist(), proba, plan.protocol.classes, aux)
    if plan.shift is not None:
        frame.insert(1, "strength", test["strength"].to_numpy())
    return results.write(job.where, record, frame)


def _failed(job: Job, record: RunRecord, exc: MethodFailure) -> RunRecord:
    """The failed record, with one line of the reason (the leaderboard shows it); the whole text (a
    library's multi-line message, the method's traceback) goes to the fold's log beside it."""
    text = str(exc).strip() or "(no message)"
    atomic_write(job.log, text + (f"\n\n{exc.traceback.rstrip()}" if exc.traceback else "") + "\n")
    error = f"{text.splitlines()[0]} (log: {job.log.name})"
    return results.write(job.where, replace(record, status="failed", error=error), None)


def code_of(name: str) -> CodeInfo:
    """Fingerprint of the source files of a registered method (see `results.code_fingerprint`)."""
    # From the registration's file, read not imported (a submission's module never loads here).
    return CodeInfo.from_json(fingerprint.code_fingerprint(fingerprint.code_files(registry.get(name).origin)))


def _json_defaults(defaults: dict[str, Any]) -> dict[str, Any]:
    """Defaults a record can hold: a parameter without one (never the case for a checked method) left out."""
    return {k: v for k, v in defaults.items() if v is not inspect.Parameter.empty}


def damage(where: results.RecordPath) -> str | None:
    """What is wrong with a fold's record on disk (not a record of this schema, predictions missing
    or not those it hashed), or None: no record, or an intact one."""
    if not where.record.exists():
        return None
    try:
        record = results.load(where.record)
    except results.RecordError as exc:
        return exc.problem
    if record.ok and not results.is_finished(where):
        return f"its predictions {where.predictions.name} are missing or not those it hashed"
    return None


def finished_record(job: Job) -> RunRecord | None:
    """The fold's record when it is finished by the method's current code; else None, with why the
    job runs again in `job.rerun` (and `job.damaged`) when there is a record."""
    job.damaged = damage(job.where)
    if job.damaged:
        job.rerun = f"its record {job.where.record} was damaged ({job.damaged})"
        return None
    record = results.read(job.where.record)
    if record is None or not record.ok:
        return None
    made_by = record.method.code_hash
    if made_by == code_of(job.spec.name).hash:
        return record
    job.rerun = "code changed since the record" if made_by else "the record does not name its code"
    return None


def unfinished(jobs: list[Job], options: Options, finish: Callable[[JobResult], None]) -> list[Job]:
    """The jobs still to run; finished ones (all of them count as unfinished with --force) are
    reported to `finish` as skipped."""
    todo = []
    for job in jobs:
        record = None if options.force else finished_record(job)
        if record is not None:
            finish(JobResult(job, record, skipped=True))
        else:
            todo.append(job)
    return todo


@contextlib.contextmanager
def fold_lock(job: Job, busy: Callable[[int | None], None]) -> Iterator[bool]:
    """Hold the lock of the job's (row, fold) inside; `busy` is told the holder's pid (None if not
    known) before waiting for another process that holds it. Yields whether it waited. The lock is
    an flock on a file beside the record, removed on release: a waiter that locked a file since
    removed takes the new one."""
    path = job.where.record.with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            busy(int(holder) if holder.isdigit() else None)
            waited = True
            fcntl.flock(fd, fcntl.LOCK_EX)
        if _is_file_of(fd, path):
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield waited
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)  # closing releases the flock


def _is_file_of(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd` (not removed, nor replaced, since)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def run(
    plan: Plan,
    jobs: list[Job],
    options: Options,
    on_done: Callable[[JobResult], None] | None = None,
    on_busy: Callable[[Job, int | None], None] | None = None,
) -> list[JobResult]:
    """Run the jobs not yet finished (all with --force) over `options.workers` worker processes.
    A fold another process is computing (`fold_lock`) is waited for, `on_busy` told (with its pid),
    and not computed again once that process has finished it."""
    done: list[JobResult] = []
    lock = threading.Lock()

    def finish(result: JobResult) -> None:
        with lock:
            done.append(result)
        if on_done is not None:
            on_done(result)

    todo = unfinished(jobs, options, finish)
    pool: Queue[Worker] = Queue()
    n_workers = max(1, min(options.workers, len(todo)))
    workers = [
        Worker(options.submissions, options.sandbox, sharing=n_workers, memory_gb=options.memory_gb)
        for _ in range(n_workers)
    ]
    for w in workers:
        pool.put(w)

    stopping = threading.Event()

    def one(job: Job) -> None:
        with fold_lock(job, lambda pid: on_busy(job, pid) if on_busy else None) as waited:
            theirs = finished_record(job) if waited and not options.force else None
            if theirs is not None:
                finish(JobResult(job, theirs, skipped=True, note="computed by another run meanwhile"))
                return
            worker = pool.get()
            try:
                record = run_job(plan, job, worker, options)
            finally:
                pool.put(worker)
            if stopping.is_set() and not record.ok:
                # Its worker was killed by the interrupt, not failed by the method: a rerun redoes it.
                job.where.record.unlink(missing_ok=True)
                return
        finish(JobResult(job, record))

    try:
        if len(workers) == 1:
            for job in todo:
                one(job)
        else:
            # Not `with`: leaving the block waits for every queued job, so Ctrl-C would drain the queue.
            ex = ThreadPoolExecutor(len(workers))
            try:
                for future in [ex.submit(one, job) for job in todo]:
                    future.result()
            except BaseException:
                stopping.set()
                ex.shutdown(wait=False, cancel_futures=True)
                for w in workers:
                    w.interrupt()
                ex.shutdown()  # the running jobs end at once (their workers are gone): report them first
                raise
            ex.shutdown()
    finally:
        for w in workers:
            w.stop(kill=True)
    return done
