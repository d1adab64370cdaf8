"""A method through the whole path: run, records, resume, leaderboard and its check."""

import json
from pathlib import Path

import pytest

from bhbench import api, leaderboard, results


def test_run_writes_one_verified_record_per_fold(run_toy, tmp_path):
    result = run_toy(fps_images=16)
    assert result.ok and len(result.records) == 5 and not result.warnings
    assert sorted(r.split.fold for r in result.records) == [1, 2, 3, 4, 5]
    assert sorted(results.record_files(tmp_path / "results")) == sorted(j.job.where.record for j in result.jobs)
    r = min(result.records, key=lambda r: r.split.fold)
    assert r.status == "ok" and r.dataset.name == "synthetic" and r.dataset.synthetic
    assert r.protocol.id == "binary-mi-patient-seed0" and result.plan.protocol == r.protocol
    assert r.split.hash and not r.split.leaky
    assert r.method.params == {"size": 16, "seed": 0}
    assert set(r.metrics.by_magnification) == {"40", "100", "200", "400"}
    assert r.timing.fps_model > 0
    assert r.environment.versions["bhbench"]
    assert all(c.accepted for c in leaderboard.check_all(tmp_path / "results"))
    (row,) = result.rows
    assert row.label == "toy" and len(row.records) == 5 and not row.failed
    assert row.mean_headline == sum(r.metrics.headline for r in result.records) / 5
    assert 0.5 < row.mean_headline <= 1  # the toy learns the tiny set's colours


def test_several_methods_report_each_step_and_job_and_make_one_row_per_variant(run_toy):
    from bhbench import events

    seen: list = []
    result = run_toy(["toy", "majority"], params={"size": 8}, progress=seen.append)
    started = [e.label for e in seen if isinstance(e, events.StepStarted)]
    assert started[-1] == "running (method x fold)" and "decoding images into the cache" in started
    finished = [e for e in seen if isinstance(e, events.JobFinished)]
    assert [e.label for e in finished] == ["toy [size=8]"] * 5 + ["majority"] * 5
    assert not any(e.result.skipped for e in finished)
    said = [e.text for e in seen if isinstance(e, events.Message)]
    assert any(t.startswith("dataset: synthetic") for t in said)
    assert any(t.startswith("protocol: MIBC") for t in said)
    assert [row.label for row in result.rows] == ["toy [size=8]", "majority"]
    assert all(len(row.records) == 5 for row in result.rows)
    assert result.rows[1].mean_headline == pytest.approx(0.72)  # the tiny set's share of malignant patients


def test_rerun_skips_finished_folds_and_force_redoes_them(run_toy, tmp_path):
    first = run_toy()
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("fold*.json")}
    again = run_toy()
    assert all(j.skipped for j in again.jobs) and again.records == first.records
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("fold*.json")} == stamps
    forced = run_toy(force=True)
    assert not any(j.skipped for j in forced.jobs)
    assert all(p.stat().st_mtime_ns != t for p, t in stamps.items())


def test_interrupted_run_resumes_only_missing_folds(run_toy, tmp_path):
    out = tmp_path / "results"
    run_toy()
    victim = sorted(out.rglob("fold3.json"))[0]
    victim.unlink()
    half = sorted(out.rglob("fold4.json"))[0]
    half.write_text(half.read_text()[:50])  # a damaged record is never trusted
    others = {p: p.stat().st_mtime_ns for p in out.rglob("fold*.json") if p not in (victim, half)}
    resumed = run_toy()
    assert sorted(j.job.fold.index for j in resumed.jobs if not j.skipped) == [3, 4]
    assert victim.exists() and results.read(half) is not None
    assert {p: p.stat().st_mtime_ns for p in others} == others


def test_leaderboard_generates_and_check_catches_an_edited_number(run_toy, tmp_path):
    out, board = tmp_path / "results", tmp_path / "board"
    result = run_toy()
    written = api.leaderboard(out, board)
    assert written.ok and written.output == board and len(written.checked) == 5
    text = (board / "README.md").read_text()
    assert "Synthetic BreaKHis-like data" in text and "Published reference numbers" in text
    (row,) = result.rows
    mean = f"{100 * row.mean_headline:.1f}"
    assert any(line.startswith("| 1 ") and "toy" in line and mean in line for line in text.splitlines())
    assert api.leaderboard(out, board, check=True).ok

    record_path = sorted(out.rglob("fold2.json"))[0]
    record = json.loads(record_path.read_text())
    record["metrics"]["overall"]["patient_rr"] = 0.999
    record_path.write_text(json.dumps(record))
    checked = api.leaderboard(out, board, check=True)
    assert not checked.ok and any("fold2.json" in reason for reason in checked.stale)


def test_leaderboard_check_fails_when_the_committed_file_is_stale(run_toy, tmp_path):
    out, board = tmp_path / "results", tmp_path / "board"
    run_toy()
    api.leaderboard(out, board)
    readme = board / "README.md"
    readme.write_text(readme.read_text().replace("| toy", "| toy (edited)"))
    assert api.leaderboard(out, board, check=True).stale == [
        f"{readme} is not what the records produce; run `bhbench leaderboard`"
    ]


def test_own_records_never_overwrite_the_committed_leaderboard(tmp_path):
    assert api.leaderboard(tmp_path, check=True).output == tmp_path


def test_magnification_specific_regime_and_filter(run_toy):
    specific = run_toy(regime="ms", task="subtype")
    filtered = run_toy(mag=200)
    assert {r.protocol.id for r in specific.records} == {"subtype-ms-patient-seed0"}
    assert {r.protocol.id for r in filtered.records} == {"binary-mi-patient-seed0-200x"}
    assert all(set(r.metrics.by_magnification) == {"200"} for r in filtered.records)
    assert all(len(r.metrics.by_magnification) == 4 for r in specific.records)


def test_image_kfold_is_reported_and_recorded_as_leaky(run_toy):
    seen: list = []
    result = run_toy(split="image-kfold", progress=seen.append)
    assert all(r.split.leaky for r in result.records)
    assert any(getattr(e, "label", None) == "leaky protocol" for e in seen)


def _readme_example() -> str:
    """The first Python block of the README's "## Python" section, as the README shows it."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_python_example_runs(tiny_tree, tmp_path, monkeypatch, capsys):
    code = _readme_example()
    assert "data = None  #" in code
    monkeypatch.chdir(tmp_path)  # its results folder lands here; on the tiny set instead of the default
    exec(code.replace("data = None  #", f"data = Path({str(tiny_tree)!r})  #", 1), {})
    said = capsys.readouterr().out.splitlines()
    assert said[0].startswith("majority: PRR ") and said[0].endswith(" over 5 folds")
    assert sum(line.startswith("rank 1 ") for line in said) >= 1 and said[-1] == "reproduced"
    assert len(results.record_files(tmp_path / "my-results")) == 10
