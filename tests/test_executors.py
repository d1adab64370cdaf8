"""Where jobs run does not change what they write: local, process and a submitit job array
(through submitit's local executor, the stand-in for Slurm) give the same records."""

import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from builders import train_set
from conftest import toy_source

from bhbench import api, executors, registry, results, runner
from bhbench.cli import main
from bhbench.cli import run as run_cli
from bhbench.data.sources import open_dataset
from bhbench.method import TestSet
from bhbench.protocol import Protocol
from bhbench.record import Metrics
from bhbench.util import cpu_count
from bhbench.worker import Task, Worker


@pytest.fixture
def make(submissions: Path, tiny_tree: Path):
    """(plan, two jobs of the toy, options) writing records under a given folder."""
    (submissions / "toy.py").write_text(toy_source("toy"))
    registry.discover(submissions)

    def build(out: Path) -> tuple[runner.Plan, list[runner.Job], runner.Options]:
        options = runner.Options(results=out, submissions=submissions)
        plan = runner.make_plan(open_dataset(tiny_tree), Protocol(), None, options)
        return plan, runner.make_jobs(plan, [runner.MethodSpec.create("toy", {})], options)[:2], options

    return build


def _array(tmp_path: Path) -> executors.SlurmOptions:
    return executors.SlurmOptions(cluster="local", logs=tmp_path / "logs", time_min=10)


def _written(jobs: list[runner.Job]) -> dict[int, tuple[Metrics | None, bytes]]:
    """Per fold: the metrics of the record on disk and the bytes of its predictions."""
    return {j.fold.index: (results.load(j.where.record).metrics, j.where.predictions.read_bytes()) for j in jobs}


def test_local_process_and_job_array_write_the_same_records(make, tmp_path: Path):
    written = {}
    for name, workers in (("local", 1), ("process", 2), ("slurm", 1)):
        plan, jobs, options = make(tmp_path / name)
        ran = executors.execute(plan, jobs, replace(options, workers=workers), name, _array(tmp_path))
        assert not ran.failures and sorted(r.job.fold.index for r in ran.results) == [1, 2]
        assert all(r.record.status == "ok" and not r.skipped for r in ran.results)
        written[name] = _written(jobs)
    assert written["process"] == written["local"]
    assert written["slurm"] == written["local"]


def test_job_array_rerun_resubmits_only_missing_records_and_reports_failures(make, tmp_path: Path, capsys):
    plan, jobs, options = make(tmp_path / "results")
    executors.execute(plan, jobs, options)
    jobs[1].where.record.unlink()
    kept = jobs[0].where.record.stat().st_mtime_ns
    ran = executors.run_array(plan, jobs, options, _array(tmp_path))
    assert {r.job.fold.index: r.skipped for r in ran.results} == {1: True, 2: False}
    assert jobs[1].where.record.exists() and jobs[0].where.record.stat().st_mtime_ns == kept
    # A job that dies without writing its record (here: it cannot write to /proc) is reported with its log.
    doomed = replace(jobs[0], where=replace(jobs[0].where, results=Path("/proc/bhbench-test")))
    ran = executors.run_array(plan, [doomed], options, _array(tmp_path))
    assert not ran.results and len(ran.failures) == 1
    failure = ran.failures[0]
    assert failure.log is not None and failure.log.is_file() and "/proc/bhbench-test" in failure.log.read_text()
    # The run's table counts it: its row has no record of one job, one failed (not "0 of 0").
    result = api.RunResult(plan, options.results, [], ran.failures, [], [], None)
    (row,) = result.rows
    assert row.ended == ran.failures and not result.ok
    run_cli._summary(result, verbose=False)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("│ toy"))
    assert [c.strip() for c in line.split("│")[1:4]] == ["toy", "0 of 1", "1"]


def test_local_executor_refuses_several_workers(submissions: Path, capsys):
    (submissions / "toy.py").write_text(toy_source("toy"))
    argv = [
        "--submissions",
        str(submissions),
        "run",
        "--method",
        "toy",
        "--executor",
        "local",
        "--workers",
        "3",
        "--data",
        "/nonexistent",
    ]  # fmt: skip  (refused before the data is opened)
    assert main(argv) == 2
    assert "--workers 3 needs --executor process" in capsys.readouterr().err


def test_ctrl_c_stops_a_process_run_before_the_queue_drains(submissions: Path, tiny_tree: Path, tmp_path: Path):
    """SIGINT while both workers fit: no queued job starts, nothing half-done is recorded, and the
    message says how to resume."""
    # Each fit announces itself on stderr (the worker's stderr is the run's; it may see no files of ours).
    start = "import sys, time; print('FIT STARTED', file=sys.stderr, flush=True); time.sleep(5)"
    (submissions / "slow.py").write_text(toy_source("slow", fit_body=start))
    argv = ["--submissions", str(submissions), "run", "--method", "slow", "--executor", "process", "--workers", "2",
            "--data", str(tiny_tree), "--results", str(tmp_path / "results"), "--fps-images", "0"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "bhbench", *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if sum("FIT STARTED" in seen for seen in lines) == 2:
                break
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    output = "".join(lines) + rest
    assert proc.returncode == 130, output
    assert output.count("FIT STARTED") == 2, "queued (method, fold) jobs kept starting after Ctrl-C"
    assert not list((tmp_path / "results").rglob("fold*.json")), "an interrupted fold left a record"
    assert "0 of 5 (method, fold) jobs finished" in output and "to resume, rerun: bhbench --submissions" in output


POOLS = '''
import numpy as np
from bhbench import Method, register


@register("pools", family="test", reference="bhbench tests")
class Pools(Method):
    """Reports the OpenMP/BLAS thread pools of its process, one of them loaded during fit."""

    def fit(self, train):
        import scipy.linalg  # noqa: F401  (scipy's own OpenBLAS, loaded by the method)
        from threadpoolctl import threadpool_info

        self.pools_ = {p["filepath"]: p["num_threads"] for p in threadpool_info()}
        return self

    def fit_info(self):
        return {"pools": self.pools_}

    def predict_proba(self, test):
        return np.full((len(test), test.n_classes), 1 / test.n_classes)
'''


def test_a_worker_sharing_the_cores_holds_every_thread_pool_to_its_share(submissions: Path):
    # Each side-by-side worker's BLAS starting a thread per core made the QDA baselines' PCA ~2x
    # slower; a library loaded by the method (scipy's BLAS, with scikit-learn) escaped threadpoolctl.
    if cpu_count() < 2:
        pytest.skip("one core: every pool has one thread anyway")
    (submissions / "pools.py").write_text(POOLS)
    registry.discover(submissions)
    images = [np.full((8, 8, 3), i, np.uint8) for i in range(4)]
    y = np.array([0, 1, 0, 1])
    part = (train_set(y, images, patients=["p0", "p1", "p2", "p3"]), TestSet.build("binary", images=images))
    task = Task("pools", {}, [part])
    worker = Worker(submissions, sharing=2 * cpu_count())  # a fresh interpreter, as in a run
    try:
        pools = worker.run(task, timeout=120).fit_info[0]["pools"]
    finally:
        worker.stop(kill=True)
    assert any("scipy" in path for path in pools) and set(pools.values()) == {1}, pools
    alone = Worker(submissions)  # one worker: its pools keep a thread per core
    try:
        assert max(alone.run(task, timeout=120).fit_info[0]["pools"].values()) == cpu_count()
    finally:
        alone.stop(kill=True)
