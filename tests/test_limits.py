"""Wall-clock limits (check and run), traceable failures, and several runs of one row at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import toy_source

from bhbench import results
from bhbench.cli import main
from bhbench.record import TimeLimit

SLEEPS = "import time; time.sleep(120)"


def _run_cli(submissions: Path, data: Path, out: Path, *extra: str) -> int:
    return main(["--submissions", str(submissions), "run", "--data", str(data), "--results", str(out),
                 "--fps-images", "0", "--mag", "40", *extra])  # fmt: skip


def test_a_sleeping_method_ends_check_with_a_timed_out_line(submissions, capsys):
    (submissions / "sleepy.py").write_text(toy_source("sleepy", fit_body=SLEEPS))
    code = main(["--submissions", str(submissions), "check", "sleepy", "--sandbox", "off", "--timeout", "15"])
    out = capsys.readouterr().out
    assert code == 1
    first = next(line for line in out.splitlines() if "timed out" in line)
    assert first.startswith("FAIL  sleepy  fit_returns_self") and "timed out after 15 s" in first
    assert "not run: timed out after 15 s" in out and "during fit_returns_self" in out  # the rest, said so
    assert out.count("PASS") == 2  # card and params: no fit


def test_a_sleeping_method_times_out_in_run_while_the_others_finish(submissions, tiny_tree, tmp_path, capsys):
    (submissions / "toy.py").write_text(toy_source("toy"))
    (submissions / "sleepy.py").write_text(toy_source("sleepy", fit_body=SLEEPS))
    out = tmp_path / "out"
    assert _run_cli(submissions, tiny_tree, out, "-m", "toy", "-m", "sleepy", "--timeout", "2", "--workers", "3") == 1
    err = capsys.readouterr().err
    assert err.count("sleepy fold") == 5 and "failed: toy" not in err
    assert "sleepy: 5 of 5 folds failed: timed out after 2 s (--timeout)" in err
    limits = {results.load(p).method.name: results.load(p).time_limit for p in out.rglob("fold1.json")}
    assert limits == {"toy": TimeLimit(2.0, "given"), "sleepy": TimeLimit(2.0, "given")}


def test_the_default_limit_is_the_family_s_and_is_recorded(run_toy):
    result = run_toy(mag=40)
    assert result.ok and {r.time_limit for r in result.records} == {TimeLimit(600.0, "family default")}
    unlimited = run_toy(mag=40, timeout=0, force=True)
    assert {r.time_limit for r in unlimited.records} == {TimeLimit(None, "given")}


HELPER_RAISES = "import json; json.loads('{')"  # the error is raised deep inside the json module


def test_a_failed_fold_keeps_the_method_s_frame_and_whole_traceback(submissions, tiny_tree, tmp_path, capsys):
    (submissions / "toy.py").write_text(toy_source("toy", fit_body=HELPER_RAISES))
    out = tmp_path / "out"
    assert _run_cli(submissions, tiny_tree, out, "-m", "toy", "--set", "size=8") == 1
    err = capsys.readouterr().err
    record = results.load(next(out.rglob("fold1.json")))
    assert "JSONDecodeError" in record.error and "(at toy.py:" in record.error and " in fit)" in record.error
    assert "decoder.py" not in record.error  # the library's internals are in the log, not the headline
    log = next(out.rglob("fold1.log"))
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "toy.py" in text and "json/decoder.py" in text
    (line,) = [x for x in err.splitlines() if x.startswith("failed: toy [size=8]:")]  # one line per variant
    assert "5 of 5 folds failed" in line and f"see {log.parent}" in line
    assert "every job failed (5 of 5); no result was saved" in err and "the others' records" not in err
    assert "Traceback" not in err
    assert _run_cli(submissions, tiny_tree, out, "-m", "toy", "--set", "size=8", "--verbose") == 1
    assert capsys.readouterr().err.count("Traceback (most recent call last)") == 5


def _concurrent_run(submissions: Path, data: Path, out: Path) -> subprocess.Popen:
    argv = ["--submissions", str(submissions), "run", "-m", "toy", "--data", str(data), "--results", str(out),
            "--fps-images", "0", "--mag", "40", "--sandbox", "off"]  # fmt: skip
    command = [sys.executable, "-c", "import sys; from bhbench.cli import main; sys.exit(main(sys.argv[1:]))", *argv]
    return subprocess.Popen(command, stderr=subprocess.PIPE, text=True)


def test_two_concurrent_runs_of_one_row_compute_each_fold_once(submissions, tiny_tree, tmp_path):
    fits = tmp_path / "fits"
    count = f"import time; open({str(fits)!r}, 'a').write('fit\\n'); time.sleep(1.0)"
    (submissions / "toy.py").write_text(toy_source("toy", fit_body=count))
    out = tmp_path / "out"
    first = _concurrent_run(submissions, tiny_tree, out)
    second = _concurrent_run(submissions, tiny_tree, out)
    said = [p.communicate(timeout=600)[1] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, said
    assert fits.read_text().count("fit") == 5  # five folds, each fitted by one of the two runs
    assert any("is being computed by another run (pid" in s for s in said), said
    assert "computed by another run meanwhile" in "".join(said)
    assert not list(out.rglob("*.lock"))  # released and removed


def test_a_damaged_record_is_named_and_redone_with_the_reason(submissions, tiny_tree, tmp_path, capsys):
    (submissions / "toy.py").write_text(toy_source("toy"))
    out = tmp_path / "out"
    assert _run_cli(submissions, tiny_tree, out, "-m", "toy") == 0
    truncated = next(out.rglob("fold3.json"))
    truncated.write_text(truncated.read_text()[:100])
    predictions = next(out.rglob("fold2.predictions.csv"))
    predictions.write_text(predictions.read_text().replace("0.", "0.9", 1))
    capsys.readouterr()
    assert _run_cli(submissions, tiny_tree, out, "-m", "toy") == 1
    err = capsys.readouterr().err
    assert f"damaged record: {truncated}: not JSON" in err
    assert f"damaged record: {predictions.with_name('fold2.json')}: its predictions fold2.predictions.csv" in err
    assert f"fold 3: ok (redone: its record {truncated} was damaged (not JSON" in err
    assert _run_cli(submissions, tiny_tree, out, "-m", "toy") == 0  # repaired
    assert capsys.readouterr().err.count("finished earlier") == 5
