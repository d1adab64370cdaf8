"""Where (method x fold) jobs run: `local` (one worker process), `process` (several worker
processes on this machine) or `slurm` (a submitit job array, one array task per job); and where
`tune` runs its trials: here, or in Slurm array tasks that share the studies (`tune_array`).

Every executor ends in the same place: `runner.run_job` writes the job's record, so results do
not depend on where they were computed, and a rerun skips what is finished. On Slurm the cache
folder (BHBENCH_CACHE: decoded images, features) and the results folder must be on a filesystem
the compute nodes share, as the job array runs the same Python with the same environment.
"""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bhbench import registry, results
from bhbench.errors import UserError
from bhbench.runner import Job, JobResult, Options, Plan, finished_record, fold_lock, run, run_job, unfinished
from bhbench.util import cpu_count
from bhbench.worker import Worker

if TYPE_CHECKING:
    from bhbench.tuning import Tuner

T = TypeVar("T")

EXECUTORS = ("local", "process", "slurm")
POLL_SECONDS = 2.0  # submitit throttles its own queries to Slurm
# Slurm states of a task it ended before the task could finish: cancelled, out of time or memory...
KILLED = ("CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "DEADLINE", "BOOT_FAIL")


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    gpus: int = 0  # per job
    cpus: int = 2  # per job: the driver side of the job plus the method's worker process
    mem_gb: float | None = None
    time_min: int = 120  # per job
    logs: Path | None = None  # submitit's logs; None: beside the records (<results>/slurm-logs)
    parallelism: int = 64  # array tasks running at once
    cluster: str = "slurm"  # "local": the same job array through submitit's local executor, for tests


@dataclass(frozen=True)
class Failure:
    """A job that ended without writing its record (crashed, killed, out of time or memory)."""

    job: Job
    reason: str
    log: Path | None


@dataclass
class Ran:
    results: list[JobResult] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


def execute(
    plan: Plan,
    jobs: list[Job],
    options: Options,
    executor: str | None = None,
    slurm: SlurmOptions | None = None,
    on_done: Callable[[JobResult], None] | None = None,
    on_busy: Callable[[Job, int | None], None] | None = None,
) -> Ran:
    """Run the jobs where `executor` says; `on_busy` hears of a fold another run is computing."""
    chosen = choose(executor, options.workers, slurm)
    if chosen == "local":
        return Ran(run(plan, jobs, options, on_done, on_busy))
    if chosen == "process":
        workers = options.workers if options.workers > 1 else cpu_count()
        return Ran(run(plan, jobs, replace(options, workers=workers), on_done, on_busy))
    return run_array(plan, jobs, options, slurm or SlurmOptions(), on_done)


def choose(executor: str | None, workers: int, slurm: SlurmOptions | None = None) -> str:
    """The executor to use: as given, else `process` for several workers, else `local`. Refuses
    what cannot work before any image is staged."""
    if executor is None:
        return "process" if workers > 1 else "local"
    if executor not in EXECUTORS:
        raise UserError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if executor == "local" and workers > 1:
        raise UserError(f"--workers {workers} needs --executor process (local runs one worker)")
    if executor == "slurm" and (slurm or SlurmOptions()).cluster == "slurm" and shutil.which("sbatch") is None:
        raise UserError("--executor slurm: no `sbatch` on PATH; run on a Slurm login node")
    return executor


def choose_tuning(executor: str | None, workers: int, slurm: SlurmOptions | None = None) -> str:
    """Where `tune` runs its trials: here, one at a time (`local`), or in `workers` Slurm jobs that
    share the studies (`slurm`)."""
    if executor not in (None, "local", "slurm"):
        raise UserError(f"tune --executor {executor}: tune runs its trials here (local) or as Slurm jobs (slurm)")
    if executor != "slurm" and workers > 1:
        raise UserError(f"tune --workers {workers} needs --executor slurm (here, trials run one at a time)")
    return choose(executor or "local", 1, slurm)


class EndedBySlurm(Exception):
    """Slurm signalled an array task to end (scancel, its time limit, preemption) while its job ran."""


def _array_task(plan: Plan, job: Job, options: Options) -> str:
    """What one array task runs: the job in a fresh worker process, record written by run_job;
    nothing when another run computed the fold while this task waited for its lock."""
    registry.discover(options.submissions)  # a fresh interpreter: run_job looks the method up
    ending = _on_sigterm()
    with fold_lock(job, lambda _pid: None) as waited:
        done = finished_record(job) if waited and not options.force else None
        if done is not None:
            return done.status
        worker = Worker(options.submissions, options.sandbox, memory_gb=options.memory_gb)
        try:
            record = run_job(plan, job, worker, options)
        finally:
            worker.stop(kill=True)
        if ending.is_set() and not record.ok:
            # Slurm's signal killed the worker too: not the method's failure, and a rerun redoes it.
            job.where.record.unlink(missing_ok=True)
            raise EndedBySlurm(f"{job.spec.name} fold {job.fold.index}: Slurm ended the job while it ran")
        return record.status


def _on_sigterm() -> threading.Event:
    """Set when SIGTERM comes: Slurm ending the task signals every process of it, the worker's too."""
    ending = threading.Event()
    signal.signal(signal.SIGTERM, lambda _sig, _frame: ending.set())
    return ending


def _executor(slurm: SlurmOptions):  # -> submitit.AutoExecutor (imported lazily: optional at runtime)
    import submitit

    # One flat folder: submitit names each file by job id already, and a "%j" folder level was
    # created literally by the local cluster.
    ex = submitit.AutoExecutor(folder=slurm.logs, cluster=slurm.cluster)
    ex.update_parameters(
        name="bhbench",
        timeout_min=slurm.time_min,
        gpus_per_node=slurm.gpus,
        cpus_per_task=slurm.cpus,
        mem_gb=slurm.mem_gb,
        slurm_partition=slurm.partition,
        slurm_array_parallelism=slurm.parallelism,
    )
    return ex


def run_array(
    plan: Plan,
    jobs: list[Job],
    options: Options,
    slurm: SlurmOptions,
    on_done: Callable[[JobResult], None] | None = None,
) -> Ran:
    """Submit the unfinished jobs as one array, wait for them, and collect the records they wrote.
    Ctrl-C cancels what is still queued or running, so a rerun resubmits exactly what is missing."""
    ran = Ran()

    def finish(result: JobResult) -> None:
        ran.results.append(result)
        if on_done is not None:
            on_done(result)

    def ended(handle: Any, job: Job) -> None:
        why = _failure(handle)
        record = results.read(job.where.record)
        if why is not None or record is None:
            why = why or "ended without writing its record"
            ran.failures.append(Failure(job, f"job {handle.job_id}: {why}", handle.paths.stderr))
        else:
            finish(JobResult(job, record))

    todo = unfinished(jobs, options, finish)
    if todo:
        slurm = _logs_beside(slurm, options.results)
        submitted = _executor(slurm).map_array(_array_task, [plan] * len(todo), todo, [options] * len(todo))
        _wait(dict(zip(submitted, todo, strict=True)), ended)
    return ran


def tune_array(tuner: Tuner, trials: int, folds: Sequence[int], tasks: int, slurm: SlurmOptions) -> list[str]:
    """Run `tasks` array tasks that each tune the same studies (`Tuner.tune`: together they stop at
    `trials` per fold); what went wrong in each failed task, with its log."""
    failed: list[str] = []

    def ended(handle: Any, _task: int) -> None:
        why = _failure(handle)
        if why is not None:
            failed.append(f"tuning job {handle.job_id}: {why}; log {handle.paths.stderr}")

    slurm = _logs_beside(slurm, tuner.options.results)
    submitted = _executor(slurm).map_array(_tune_task, [tuner] * tasks, [trials] * tasks, [list(folds)] * tasks)
    _wait({handle: i for i, handle in enumerate(submitted)}, ended)
    return failed


def _tune_task(tuner: Tuner, trials: int, folds: list[int]) -> None:
    registry.discover(tuner.options.submissions)  # a fresh interpreter: the trials look the method up
    # Slurm ending the task (scancel, time limit) acts as Ctrl-C: the trial it stops does not count
    # toward --trials, as one its killed worker failed would.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    tuner.tune(trials, folds=folds)


def _logs_beside(slurm: SlurmOptions, results: Path) -> SlurmOptions:
    """submitit's logs beside the records by default: never a stray folder in the working directory."""
    slurm = replace(slurm, logs=slurm.logs or results / "slurm-logs")
    slurm.logs.mkdir(parents=True, exist_ok=True)
    return slurm


def _failure(handle: Any) -> str | None:
    """Why an array task did not finish (None when it did): the Slurm state when Slurm ended it, else
    the last line of its error. A task known to be ended by Slurm has no result to wait for
    (submitit would wait 15 s for one)."""
    killed = _killed(handle.state)
    if killed:
        return killed
    error = handle.exception()
    if error is None:
        return None
    # It raised, maybe as Slurm ended it (EndedBySlurm): Slurm's state, asked afresh, says why.
    return _killed(handle.get_info().get("State", "")) or str(error).strip().splitlines()[-1]


def _killed(state: str) -> str | None:
    """How Slurm ended a task, from its state ("CANCELLED by 0", "TIMEOUT"...); None if it did not."""
    return f"ended {state} before finishing" if state.split(" ")[0] in KILLED else None


def _wait(pending: dict[Any, T], ended: Callable[[Any, T], None]) -> None:
    """Poll submitit handles until each has ended, handing each to `ended` with its item. Ctrl-C
    cancels those still queued or running."""
    try:
        while pending:
            for handle, item in list(pending.items()):
                if handle.done():
                    del pending[handle]
                    ended(handle, item)
            if pending:
                time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        for handle in pending:
            handle.cancel(check=False)
        raise
