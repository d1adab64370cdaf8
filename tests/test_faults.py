"""Faults injected one by one: bad data, faulty methods, interrupted runs, label isolation."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import toy_source

from bhbench import api, results
from bhbench.cli import main
from bhbench.errors import DataError

# --- bad data ----------------------------------------------------------------------------------


def _pngs(tree: Path) -> list[Path]:
    return sorted(tree.rglob("*.png"))


def damage(tree: Path) -> dict[str, Path]:
    """One file per kind of damage; returns kind -> damaged path."""
    files = _pngs(tree)
    done = {}
    done["corrupt"] = files[0]
    blob = files[0].read_bytes()
    files[0].write_bytes(blob[:60] + bytes(len(blob) - 60))  # valid header, garbage data
    done["truncated"] = files[1]
    files[1].write_bytes(files[1].read_bytes()[: len(files[1].read_bytes()) // 2])
    done["empty"] = files[2]
    files[2].write_bytes(b"")
    done["not an image"] = files[3]
    files[3].write_text("this is a text file with a .png name\n")
    bad_name = files[4].with_name("scan_0004.png")
    files[4].rename(bad_name)
    done["unparseable name"] = bad_name
    # a malignant file moved into a benign patient's folder: class, subtype and patient disagree
    benign_dir = next(p.parent for p in files if "/benign/" in p.as_posix() and p.parent.name == "40X")
    malignant = next(p for p in files[5:] if "/malignant/" in p.as_posix() and "-40-" in p.name)
    moved = benign_dir / malignant.name
    malignant.rename(moved)
    done["folder disagrees"] = moved
    return done


def test_data_check_reports_every_problem_in_one_pass(tree_copy: Path, capsys):
    damaged = damage(tree_copy)
    assert main(["data", "check", "--data", str(tree_copy)]) == 1
    out = capsys.readouterr().out
    for kind, path in damaged.items():
        assert path.name in out, kind
    assert "empty file" in out and "not a readable" in out and "class folder" in out
    assert "Traceback" not in out
    # the moved file disagrees on class, subtype and patient: three problems, one per field
    assert "summary:" in out and "8 error(s)" in out


def test_run_stops_before_training_on_bad_data_and_names_the_files(run_toy, tree_copy, tmp_path):
    damaged = damage(tree_copy)
    with pytest.raises(DataError) as stopped:
        run_toy(data=tree_copy)
    assert "--skip-bad" in str(stopped.value) and all(p.name in str(stopped.value) for p in damaged.values())
    assert not list((tmp_path / "results").rglob("fold*.json"))

    result = run_toy(data=tree_copy, skip_bad=True)
    assert result.ok and len(result.records) == 5
    assert len({p.path for p in result.plan.skipped}) == len(damaged)  # the moved file has three problems
    skipped = " ".join(result.records[0].dataset.skipped)
    assert all(p.name in skipped for p in damaged.values())
    assert result.records[0].dataset.images == len(_pngs(tree_copy)) - len(damaged)


def test_undersized_image_is_an_error_and_odd_size_a_warning(tree_copy, capsys):
    from PIL import Image

    files = _pngs(tree_copy)
    Image.new("RGB", (20, 12), "white").save(files[0])
    with Image.open(files[1]) as img:
        img.resize((img.width * 2, img.height)).save(files[1])
    assert main(["data", "check", "--data", str(tree_copy)]) == 1
    out = capsys.readouterr().out
    assert f"{files[0].name}: image is only 20x12" in out
    assert "warning: " in out and f"{files[1].name}: unexpected size" in out


def test_fold_lines_for_missing_files_are_named(tiny_tree, tmp_path, capsys):
    names = [p.name for p in _pngs(tiny_tree)]
    lines = [f"{n}|{n.split('-')[3]}|1|{'train' if i % 3 else 'test'}" for i, n in enumerate(names)]
    lines.append("SOB_B_A-14-99999-40-001.png|40|1|train")
    (tmp_path / "dsfold1.txt").write_text("\n".join(lines) + "\n")
    assert main(["data", "check", "--data", str(tiny_tree), "--folds", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 fold line(s) name images not in the data: SOB_B_A-14-99999-40-001.png" in out


# --- faulty methods ----------------------------------------------------------------------------

FAULTS = {
    "raises_fit": ("pass", "raise RuntimeError('boom in fit')", "fit raised RuntimeError: boom in fit"),
    "raises_predict": (
        "raise ValueError('boom in predict')",
        "",
        "predict_proba raised ValueError: boom in predict",
    ),
    "nan": ("e = e * np.nan", "", "NaN or infinite"),
    "inf": ("e[0, 0] = np.inf", "", "NaN or infinite"),
    "shape": ("e = e[:, :1]", "", "returned shape"),
    "unnormalised": ("return 0.9 * e / e.sum(1, keepdims=True)", "", "do not sum to one"),  # rows sum to 0.9
    "slow": ("import time; time.sleep(60)", "", "timed out after 8 s"),
}


def test_faulty_methods_fail_alone_and_are_listed(run_toy, submissions, tmp_path):
    for name, (body, fit_body, _) in FAULTS.items():
        (submissions / f"{name}.py").write_text(toy_source(f"bad_{name}", body, fit_body))
    out, board = tmp_path / "results", tmp_path / "board"
    # Three workers: the slow method's five folds wait out their timeouts side by side.
    result = run_toy(["toy", *(f"bad_{n}" for n in FAULTS)], timeout=8, mag=40, workers=3)
    assert not result.ok and not result.failures  # every job wrote its record, failed or not
    rows = {row.label: row for row in result.rows}
    assert len(rows["toy"].records) == 5 and not rows["toy"].failed
    for name, (_, _, reason) in FAULTS.items():
        failed = rows[f"bad_{name}"].failed
        assert len(failed) == 5 and all(reason in f.record.error for f in failed), name
    assert len(result.failed) == 5 * len(FAULTS)
    assert api.leaderboard(out, board).ok
    text = (board / "README.md").read_text()
    ranked, failed = text.split("Failed runs (not ranked):")
    assert "| 1   | toy" in ranked and "bad_" not in ranked.split("Published")[0]
    assert "bad_nan" in failed and "timed out" in failed


def test_a_user_error_inside_a_method_stops_the_run_with_one_line(submissions, tiny_tree, tmp_path, capsys):
    fit = "from bhbench.errors import UserError; raise UserError('weights file /nope.pth does not exist')"
    (submissions / "needs_weights.py").write_text(toy_source("needs_weights", fit_body=fit))
    code = main(["--submissions", str(submissions), "run", "--method", "needs_weights", "--data", str(tiny_tree),
                 "--results", str(tmp_path / "results"), "--fps-images", "0"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "error: needs_weights: weights file /nope.pth does not exist" in err and "Traceback" not in err
    assert "fold 2" not in err  # stopped at the first fold instead of failing five times


def test_test_labels_are_not_in_the_method_process(run_toy, tmp_path):
    """A nosy method searches its own process for patient tokens; test patients must be absent."""
    spy = tmp_path / "spy.json"
    body = (
        "import gc, json, re; "
        "objs = gc.get_objects(); "
        "tokens = {s for o in objs if isinstance(o, (list, tuple, set, dict)) "
        "for s in (o.values() if isinstance(o, dict) else o) "
        "if isinstance(s, str) and re.fullmatch(r'\\d\\d-\\d+', s)}; "
        # arrays are not gc-tracked: reach them through the containers that hold them
        "arrays = [r for o in objs for r in gc.get_referents(o) if isinstance(r, np.ndarray)]; "
        "tokens |= {str(v) for a in arrays if a.dtype.kind in 'UO' for v in a.ravel()}; "
        f"json.dump(sorted(tokens), open({str(spy)!r}, 'w'))"
    )
    # Unsandboxed: the spy reports through a file of ours, which the sandbox would hide from it.
    last = run_toy("spy", source=toy_source("spy", body), sandbox="off").jobs[-1]
    seen = set(json.loads(spy.read_text()))
    assert last.job.fold.index == 5 and last.record.ok
    frame = results.load_predictions(last.job.where.record, last.record)
    test_patients = {"-".join(f.split("-")[1:3]) for f in frame["filename"]}
    assert seen, "the spy found no patient tokens at all (training ones should be visible)"
    assert not seen & test_patients
    assert not any(s.startswith("SOB_") for s in seen)


# --- interrupted runs --------------------------------------------------------------------------


def _cli(submissions: Path, tree: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bhbench", "--submissions", str(submissions), "run", "--method", "toy",
            "--data", str(tree), "--results", str(out), "--fps-images", "0", *extra]  # fmt: skip


def _wait_for(predicate, timeout=120.0):  # a hang guard, not a speed claim
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_sigkill_during_training_resumes_without_recomputing(submissions, tiny_tree, tmp_path):
    # every fold sleeps in fit, so the kill lands in training
    (submissions / "toy.py").write_text(toy_source("toy", fit_body="import time; time.sleep(1.5)"))
    out = tmp_path / "results"
    proc = subprocess.Popen(_cli(submissions, tiny_tree, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert _wait_for(lambda: len(list(out.rglob("fold*.json"))) >= 2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("fold*.json")}
    assert all(results.read(p) for p in before)
    subprocess.run(_cli(submissions, tiny_tree, out), check=True, capture_output=True)
    after = {p: p.stat().st_mtime_ns for p in out.rglob("fold*.json")}
    assert len(after) == 5
    assert all(after[p] == t for p, t in before.items())  # finished folds not recomputed


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_a_killed_run_takes_its_worker_with_it(submissions, tiny_tree, tmp_path):
    """A worker deep in a long fit must not train on for hours after its harness is SIGKILLed."""
    (submissions / "toy.py").write_text(toy_source("toy", fit_body="import time; time.sleep(120)"))
    proc = subprocess.Popen(_cli(submissions, tiny_tree, tmp_path / "results"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    assert _wait_for(lambda: len(_children(proc.pid)) >= 1)
    time.sleep(3)  # the worker is now inside fit
    children = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _wait_for(lambda: not _running(children)), f"{_running(children)} outlived the killed run"  # a hang guard


def _running(pids: list[int]) -> list[int]:
    """The processes among `pids` that exist and are not zombies."""
    running = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.append(pid)
    return running


@pytest.mark.slow  # ~25 s: runs killed at random moments
def test_sigkill_at_random_moments_never_leaves_a_readable_half_record(submissions, tiny_tree, tmp_path):
    (submissions / "toy.py").write_text(toy_source())
    out = tmp_path / "results"
    rng = np.random.default_rng(0)
    for _ in range(6):
        proc = subprocess.Popen(_cli(submissions, tiny_tree, out, "--force"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(float(rng.uniform(1.5, 4.0)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        for path in out.rglob("fold*.json"):
            record = results.read(path)
            assert record is not None and record.status == "ok", path  # whole or absent, never half
    subprocess.run(_cli(submissions, tiny_tree, out), check=True, capture_output=True)
    assert not api.leaderboard(out, tmp_path / "b", check=True).ok  # no board yet
    assert api.leaderboard(out, tmp_path / "b").ok


def test_ctrl_c_stops_cleanly_with_a_summary(submissions, tiny_tree, tmp_path):
    (submissions / "toy.py").write_text(toy_source("toy", fit_body="import time; time.sleep(1.0)"))
    out = tmp_path / "results"
    proc = subprocess.Popen(
        _cli(submissions, tiny_tree, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert _wait_for(lambda: len(list(out.rglob("fold*.json"))) >= 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert "interrupted:" in err and "to resume, rerun: bhbench" in err


def test_files_are_written_with_the_users_umask(tmp_path: Path):
    from bhbench import util

    util.umask.cache_clear()
    old = os.umask(0o002)  # a group-shared results folder
    try:
        util.atomic_write(tmp_path / "record.json", b"{}")
    finally:
        os.umask(old)
        util.umask.cache_clear()
    assert (tmp_path / "record.json").stat().st_mode & 0o777 == 0o664
