"""`--executor slurm` against a real single-node Slurm cluster (`.ci/slurm start`): job arrays
submitted through submitit, a cancelled array reported and resumed, a failing method kept to its
own jobs, and `bhbench tune` trials spread over Slurm jobs sharing one study."""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import toy_source

from bhbench import results, tuning
from bhbench.cli import main

pytestmark = [pytest.mark.slurm, pytest.mark.slow]  # a real cluster started, ~1.5 min

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "slurm"
# Each array task gets one of the node's cores, so two run side by side on a two-core machine.
SLURM = ["--executor", "slurm", "--slurm-cpus", "1", "--slurm-time", "10"]


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """A Slurm cluster answering here: one already running, else one `.ci/slurm` starts (and stops)."""
    if subprocess.run([SCRIPT, "status"], capture_output=True).returncode == 0:
        yield
        return
    started = subprocess.run([SCRIPT, "start"], capture_output=True, text=True, timeout=900)
    if started.returncode != 0:
        pytest.skip((started.stderr.strip().splitlines() or ["no reason given"])[-1])
    yield
    subprocess.run([SCRIPT, "stop"], check=True, capture_output=True, timeout=120)


def _tasks(logs: Path) -> set[str]:
    """The Slurm array tasks submitit submitted with its files in `logs` ("12_3", from
    12_3_submitted.pkl), or the job itself for an array of one (a plain job: 12_submitted.pkl)."""
    found = {m[1] for f in logs.iterdir() if (m := re.match(r"(\d+(?:_\d+)?)_submitted\.pkl$", f.name))}
    assert found, f"no job array's files in {logs}"
    return found


def _arrays(logs: Path) -> set[str]:
    """The Slurm jobs (arrays) of those tasks."""
    return {t.split("_")[0] for t in _tasks(logs)}


def _states(logs: Path) -> dict[str, str]:
    """Slurm's accounting of each array task whose files are in `logs`, once all have ended and
    reached the accounting database: {"12_0": "COMPLETED", ...}. A task's result is there while
    Slurm is still ending it, and slurmdbd records a task a moment after it ends."""
    tasks = _tasks(logs)
    arrays = ",".join(sorted(_arrays(logs)))
    sacct = ["sacct", "--noheader", "--parsable2", "--allocations", "--format=JobID,State", "--jobs", arrays]
    for _ in range(120):
        lines = subprocess.run(sacct, capture_output=True, text=True, check=True).stdout.split()
        states = dict(line.split("|", 1) for line in lines)
        if tasks <= set(states) and not {"PENDING", "RUNNING", "COMPLETING"} & set(states.values()):
            break
        time.sleep(0.5)
    return states


def _run(submissions: Path, tree: Path, out: Path, *args: str) -> list[str]:
    """`bhbench run` arguments: the tiny tree's folds as Slurm jobs, records to `out`."""
    return ["--submissions", str(submissions), "run", *args, *SLURM, "--data", str(tree), "--results", str(out),
            "--fps-images", "0", "--sandbox", "off"]  # fmt: skip


def test_a_job_array_writes_every_record_and_a_failing_method_fails_only_its_own_jobs(
    submissions: Path, tiny_tree: Path, tmp_path: Path, capsys
):
    (submissions / "toy.py").write_text(toy_source("toy"))
    (submissions / "broken.py").write_text(toy_source("broken", body="raise RuntimeError('broken on purpose')"))
    out = tmp_path / "results"
    assert main(_run(submissions, tiny_tree, out, "-m", "toy", "-m", "broken")) == 1  # broken failed
    err = capsys.readouterr().err
    written = {r.method.name: [] for r in map(results.load, out.rglob("fold*.json"))}
    for record in map(results.load, out.rglob("fold*.json")):
        written[record.method.name].append(record.status)
    assert written == {"toy": ["ok"] * 5, "broken": [written["broken"][0]] * 5} and written["broken"][0] != "ok"
    assert "broken on purpose" in err and "job failed" not in err  # failed inside its jobs, which ended normally
    # Ten real Slurm array tasks, each one (method, fold) job, all ended normally.
    assert list(_states(out / "slurm-logs").values()) == ["COMPLETED"] * 10


def test_a_cancelled_array_is_reported_and_a_rerun_computes_only_the_missing_folds(
    submissions: Path, tiny_tree: Path, tmp_path: Path
):
    fits, hold = tmp_path / "fits", tmp_path / "hold"
    fits.mkdir()
    hold.touch()
    # Every fit leaves a mark; while `hold` exists every fit after the first sleeps (to be cancelled).
    sleeps = (f"import os, time; n = len(os.listdir({str(fits)!r})); open(os.path.join({str(fits)!r}, str(n)), 'w')"
              f".close(); time.sleep(300 if n and os.path.exists({str(hold)!r}) else 0)")  # fmt: skip
    (submissions / "sleepy.py").write_text(toy_source("sleepy", fit_body=sleeps))
    out = tmp_path / "results"
    command = [
        sys.executable,
        "-m",
        "bhbench",
        *_run(submissions, tiny_tree, out, "-m", "sleepy", "--slurm-parallelism", "1"),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while len(list(fits.iterdir())) < 2:  # one task at a time: the first has ended when the second fits
            assert proc.poll() is None and time.monotonic() < deadline, "the second array task never started"
            time.sleep(0.5)
        kept = {p: p.stat().st_mtime_ns for p in out.rglob("fold*.json")}
        assert len(kept) == 1
        subprocess.run(["scancel", *_arrays(out / "slurm-logs")], check=True)
        output, _ = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 1, output
    cancelled = re.findall(r"sleepy fold (\d): job \d+_\d: ended CANCELLED", output)
    assert len(cancelled) == 4 and len(list(out.rglob("fold*.json"))) == 1, output
    hold.unlink()
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert len(list(out.rglob("fold*.json"))) == 5
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # the finished fold was not recomputed
    assert len(list(fits.iterdir())) == 2 + 4  # the rerun fitted the four missing folds only


def _tunable(log: Path, hold: Path) -> str:
    """The toy with a search space; each fit appends the Slurm job it runs in to `log`, then sleeps
    while `hold` exists (to be cancelled)."""
    task = "os.environ.get('SLURM_ARRAY_JOB_ID', 'not') + '_' + os.environ.get('SLURM_ARRAY_TASK_ID', 'in Slurm')"
    fit = (f"import os, time; open({str(log)!r}, 'a').write({task} + '\\n'); "
           f"time.sleep(300 if os.path.exists({str(hold)!r}) else 0)")  # fmt: skip
    return (
        toy_source("toy_tunable", fit_body=fit)
        + """

    @classmethod
    def search_space(cls, trial):
        return {"size": trial.suggest_categorical("size", [8, 12, 16])}
"""
    )


def _tune(submissions: Path, tree: Path, tmp_path: Path, *args: str) -> list[str]:
    """`bhbench tune` arguments: fold 1 of the tiny tree in Slurm jobs, study and files under `tmp_path`."""
    return ["--submissions", str(submissions), "tune", "--method", "toy_tunable", "--fold", "1", *args, *SLURM,
            "--slurm-logs", str(tmp_path / "slurm-logs"), "--storage", f"sqlite:///{tmp_path / 'study.db'}",
            "--out", str(tmp_path / "tuned.json"), "--data", str(tree), "--sandbox", "off"]  # fmt: skip


def test_tune_runs_its_trials_in_slurm_jobs_sharing_one_study(submissions: Path, tiny_tree: Path, tmp_path: Path):
    log, logs, tuned = tmp_path / "trials.log", tmp_path / "slurm-logs", tmp_path / "tuned.json"
    (submissions / "toy.py").write_text(_tunable(log, tmp_path / "no-hold"))
    assert main(_tune(submissions, tiny_tree, tmp_path, "--trials", "4", "--workers", "2")) == 0
    assert tuning.read_params(tuned)["folds"]["1"]["trials"] == 4  # the two jobs together stopped at the total
    # Two array tasks ran, and every trial ran inside one of them.
    states = _states(logs)
    assert list(states.values()) == ["COMPLETED"] * 2
    trials = log.read_text().splitlines()
    assert len(trials) == 4 and set(trials) <= set(states), (trials, states)


def test_a_cancelled_tuning_job_is_reported_its_trial_not_counted_and_a_rerun_continues(
    submissions: Path, tiny_tree: Path, tmp_path: Path
):
    log, hold = tmp_path / "trials.log", tmp_path / "hold"
    hold.touch()
    (submissions / "toy.py").write_text(_tunable(log, hold))
    command = [sys.executable, "-m", "bhbench", *_tune(submissions, tiny_tree, tmp_path, "--trials", "2")]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while not log.exists():  # the first trial is fitting (and holding)
            assert proc.poll() is None and time.monotonic() < deadline, "no trial started"
            time.sleep(0.5)
        subprocess.run(["scancel", *_arrays(tmp_path / "slurm-logs")], check=True)
        output, _ = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 2 and re.search(r"job failed: tuning job \d+: ended CANCELLED", output), output
    assert "no trial of study" in output  # nothing to export: said in one line
    hold.unlink()
    assert subprocess.run(command, capture_output=True, timeout=300).returncode == 0
    # The cancelled trial did not count: the rerun ran both trials of the study's two.
    assert len(log.read_text().splitlines()) == 1 + 2
    assert tuning.read_params(tmp_path / "tuned.json")["folds"]["1"]["trials"] == 2
