"""A method through the whole path: run, records, resume, leaderboard and its check."""

import json
from pathlib import Path

import pytest
from conftest import toy_source

from bhbench import leaderboard, results
from bhbench.cli import main
from bhbench.record import RunRecord


@pytest.fixture
def toy_run(submissions: Path, tiny_tree: Path, tmp_path: Path):
    (submissions / "toy.py").write_text(toy_source("toy"))
    out = tmp_path / "results"

    def run(*extra: str) -> int:
        return main(["--submissions", str(submissions), "run", "--method", "toy", "--data", str(tiny_tree),
                     "--results", str(out), *extra])  # fmt: skip

    return run, out


def _records(out: Path) -> list[RunRecord]:
    return [r for _, r in results.all_records(out)]


def test_run_writes_one_verified_record_per_fold(toy_run, capsys):
    run, out = toy_run
    assert run() == 0
    records = _records(out)
    assert len(records) == 5
    r = records[0]
    assert r.status == "ok" and r.dataset.name == "synthetic" and r.dataset.synthetic
    assert r.protocol.id == "binary-mi-patient-seed0"
    assert r.split.hash and not r.split.leaky
    assert r.method.params == {"size": 16, "seed": 0}
    assert set(r.metrics.by_magnification) == {"40", "100", "200", "400"}
    assert r.split.fold != 1 or r.timing.fps_model > 0
    assert r.environment.versions["bhbench"]
    assert all(c.accepted for c in leaderboard.check_all(out))
    text = capsys.readouterr()
    assert "synthetic" in text.err and "toy" in text.out


def test_rerun_skips_finished_folds_and_force_redoes_them(toy_run):
    run, out = toy_run
    assert run() == 0
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("fold*.json")}
    assert run() == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("fold*.json")} == stamps
    assert run("--force") == 0
    assert all(p.stat().st_mtime_ns != t for p, t in stamps.items())


def test_interrupted_run_resumes_only_missing_folds(toy_run):
    run, out = toy_run
    assert run() == 0
    victim = sorted(out.rglob("fold3.json"))[0]
    victim.unlink()
    half = sorted(out.rglob("fold4.json"))[0]
    half.write_text(half.read_text()[:50])  # a damaged record is never trusted
    others = {p: p.stat().st_mtime_ns for p in out.rglob("fold*.json") if p not in (victim, half)}
    assert run() == 0
    assert victim.exists() and results.read(half) is not None
    assert {p: p.stat().st_mtime_ns for p in others} == others


def test_leaderboard_generates_and_check_catches_an_edited_number(toy_run, tmp_path):
    run, out = toy_run
    assert run() == 0
    board = tmp_path / "board"
    assert main(["leaderboard", "--results", str(out), "--output", str(board)]) == 0
    text = (board / "README.md").read_text()
    assert "Synthetic BreaKHis-like data" in text and "| 1 " in text and "toy" in text
    assert "Published reference numbers" in text
    assert main(["leaderboard", "--check", "--results", str(out), "--output", str(board)]) == 0

    record_path = sorted(out.rglob("fold2.json"))[0]
    record = json.loads(record_path.read_text())
    record["metrics"]["overall"]["patient_rr"] = 0.999
    record_path.write_text(json.dumps(record))
    assert main(["leaderboard", "--check", "--results", str(out), "--output", str(board)]) == 1


def test_leaderboard_check_fails_when_the_committed_file_is_stale(toy_run, tmp_path):
    run, out = toy_run
    assert run() == 0
    board = tmp_path / "board"
    main(["leaderboard", "--results", str(out), "--output", str(board)])
    readme = board / "README.md"
    readme.write_text(readme.read_text().replace("| toy", "| toy (edited)"))
    assert main(["leaderboard", "--check", "--results", str(out), "--output", str(board)]) == 1


def test_magnification_specific_regime_and_filter(toy_run):
    run, out = toy_run
    assert run("--regime", "ms", "--task", "subtype") == 0
    assert run("--mag", "200") == 0
    by_protocol = {r.protocol.id: r for r in _records(out)}
    assert set(by_protocol) == {"subtype-ms-patient-seed0", "binary-mi-patient-seed0-200x"}
    assert set(by_protocol["binary-mi-patient-seed0-200x"].metrics.by_magnification) == {"200"}
    assert len(by_protocol["subtype-ms-patient-seed0"].metrics.by_magnification) == 4


def test_image_kfold_is_reported_and_recorded_as_leaky(toy_run, capsys):
    run, out = toy_run
    assert run("--split", "image-kfold") == 0
    assert all(r.split.leaky for r in _records(out))
    assert "leaky protocol" in capsys.readouterr().err
