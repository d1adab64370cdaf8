"""Where (method x fold) jobs run: `local` (one worker process), `process` (several worker
processes on this machine) or `slurm` (a submitit job array, one array task per job).

Every executor ends in the same place: `runner.run_job` writes the job's record, so results do
not depend on where they were computed, and a rerun skips what is finished. On Slurm the cache
folder (BHBENCH_CACHE: decoded images, features) and the results folder must be on a filesystem
the compute nodes share, as the job array runs the same Python with the same environment.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from bhbench import registry, results
from bhbench.errors import UserError
from bhbench.runner import Job, JobResult, Options, Plan, finished_record, fold_lock, run, run_job, unfinished
from bhbench.util import cpu_count
from bhbench.worker import Worker

EXECUTORS = ("local", "process", "slurm")
POLL_SECONDS = 2.0  # submitit throttles its own queries to Slurm


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


def _array_task(plan: Plan, job: Job, options: Options) -> str:
    """What one array task runs: the job in a fresh worker process, record written by run_job;
    nothing when another run computed the fold while this task waited for its lock."""
    registry.discover(options.submissions)  # a fresh interpreter: run_job looks the method up
    with fold_lock(job, lambda _pid: None) as waited:
        done = finished_record(job) if waited and not options.force else None
        if done is not None:
            return done.status
        worker = Worker(options.submissions, options.sandbox, memory_gb=options.memory_gb)
        try:
            return run_job(plan, job, worker, options).status
        finally:
            worker.stop(kill=True)


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

    todo = unfinished(jobs, options, finish)
    if not todo:
        return ran
    # Beside the records by default: never a stray folder in the working directory (or the repository).
    slurm = replace(slurm, logs=slurm.logs or options.results / "slurm-logs")
    slurm.logs.mkdir(parents=True, exist_ok=True)
    submitted = _executor(slurm).map_array(_array_task, [plan] * len(todo), todo, [options] * len(todo))
    pending = dict(zip(submitted, todo, strict=True))
    try:
        while pending:
            for handle, job in list(pending.items()):
                if not handle.done():
                    continue
                del pending[handle]
                error = handle.exception()
                record = results.read(job.where.record)
                if error is not None or record is None:
                    reason = str(error).strip().splitlines()[-1] if error else "ended without writing its record"
                    ran.failures.append(Failure(job, f"job {handle.job_id}: {reason}", handle.paths.stderr))
                else:
                    finish(JobResult(job, record))
            if pending:
                time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        for handle in pending:
            handle.cancel(check=False)
        raise
    return ran
