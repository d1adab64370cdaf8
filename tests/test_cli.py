"""The command line: user errors are one line and a non-zero exit; list is fast and torch-free."""

import json
import shlex
import subprocess
import sys

import pytest
from conftest import toy_source

from bhbench import session
from bhbench.cli import main, parse_sets


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


def test_unknown_method_suggests_a_near_name(capsys):
    assert main(["run", "--method", "lbp_svn"]) == 2
    assert "did you mean lbp_svm" in _one_error_line(capsys)


def test_unknown_parameter_is_named(capsys, tiny_tree):
    assert main(["run", "--method", "lbp_svm", "--set", "colour=3", "--data", str(tiny_tree)]) == 2
    assert "colour" in _one_error_line(capsys)


def test_missing_data_folder_is_named(capsys, tmp_path):
    missing = tmp_path / "nowhere"
    assert main(["run", "--method", "lbp_svm", "--data", str(missing)]) == 2
    assert str(missing) in _one_error_line(capsys)


def test_official_split_without_folds_says_what_to_give(capsys, tiny_tree):
    assert main(["run", "--method", "lbp_svm", "--data", str(tiny_tree), "--split", "official"]) == 2
    assert "--folds" in _one_error_line(capsys)


def test_set_values_parse_as_json_where_they_can():
    assert parse_sets(["a=3", "b=0.5", "c=true", "d=quick", "e=[1, 2]", "f=None"]) == {
        "a": 3,
        "b": 0.5,
        "c": True,
        "d": "quick",
        "e": [1, 2],
        "f": None,
    }


def test_list_never_imports_torch():
    # How fast it is, perf/startup.py measures; a test only checks what it must not import.
    code = "import sys; from bhbench.cli import main; main(['list']); assert 'torch' not in sys.modules, 'torch'"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "lbp_svm" in out.stdout and "fast_bcnn" in out.stdout


@pytest.mark.parametrize("command", [[], ["run"], ["list"], ["leaderboard"], ["data", "check"], ["data", "synth"]])
def test_help_works_everywhere(command):
    out = subprocess.run([sys.executable, "-m", "bhbench", *command, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: bhbench" in out.stdout


def test_a_value_out_of_range_is_one_line_before_anything_is_written(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--method", "lbp_svm", "--set", "C=-1", "--results", str(tmp_path / "out")]) == 2
    assert _one_error_line(capsys) == "error: lbp_svm: C=-1 is not allowed: expected a number > 0 or null"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("method", "setting", "expected"),
    [("lbp_svm", "P=abc", "P='abc' is not allowed: expected an integer"),
     ("lbp_rf", "max_features=half", "expected 'sqrt' or 'log2' or a number > 0 and <= 1"),
     ("cnn", "epochs=2.5", "epochs=2.5 is not allowed: expected an integer >= 1 or null")],
)  # fmt: skip
def test_set_values_are_checked_against_the_parameter_type(method, setting, expected, capsys):
    assert main(["run", "--method", method, "--set", setting, "--data", "/nonexistent"]) == 2
    assert expected in _one_error_line(capsys)


def _toy_run(submissions, tiny_tree, results, *extra: str) -> int:
    argv = ["--submissions", str(submissions), "run", "--method", "toy", "--data", str(tiny_tree),
            "--results", str(results), "--fps-images", "0", *extra]  # fmt: skip
    return main(argv)


def test_run_prints_each_fold_the_summary_and_where_the_row_would_rank(
    run_toy, submissions, tiny_tree, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a committed leaderboard of one row, majority, in leaderboard/results
    run_toy("majority", results=tmp_path / "leaderboard" / "results")
    (submissions / "toy.py").write_text(toy_source("toy"))
    assert _toy_run(submissions, tiny_tree, tmp_path / "out", "--set", "size=8") == 0
    captured = capsys.readouterr()
    assert "toy [size=8] fold 1: ok PRR " in captured.err
    row = next(line for line in captured.out.splitlines() if "toy [size=8]" in line)
    assert "5 of 5" in row
    rank = next(line for line in captured.err.splitlines() if line.startswith("toy (PRR "))
    assert " of 2 by mean PRR on the committed leaderboard (synthetic-" in rank  # beside majority's row
    hint = " ".join(rank.split()).split("`")[1]  # the command the line names ranks the row beside the board's
    assert hint.startswith("bhbench report -m toy --results leaderboard/results --results ")
    assert main([*shlex.split(hint)[1:], "--output", str(tmp_path / "mine")]) == 0
    assert " of 2 |" in (tmp_path / "mine" / "reports" / "toy.md").read_text()
    assert _toy_run(submissions, tiny_tree, tmp_path / "out", "--set", "size=8") == 0
    assert capsys.readouterr().err.count(": finished earlier PRR ") == 5  # a rerun resumes: nothing left to do
    assert main(["leaderboard", "--results", str(tmp_path / "out"), "--output", str(tmp_path / "board")]) == 0
    wrote = f"wrote {tmp_path / 'board' / 'README.md'}, leaderboard.csv, figures/ and site/ (the web board) from 5"
    assert wrote in " ".join(capsys.readouterr().err.split())
    assert "| toy [size=8] " in (tmp_path / "board" / "README.md").read_text()


def test_a_long_fold_says_the_run_is_alive(submissions, tiny_tree, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(session, "HEARTBEAT_SECONDS", 0.2)
    (submissions / "toy.py").write_text(toy_source("toy", fit_body="import time; time.sleep(0.5)"))
    assert _toy_run(submissions, tiny_tree, tmp_path / "out", "--seed", "1") == 0
    assert "still working: 0 of 5 (method, fold) jobs done" in capsys.readouterr().err


def test_a_class_missing_from_training_is_said_and_recorded(submissions, tree_copy, tmp_path, capsys):
    from bhbench import results

    for image in tree_copy.rglob("SOB_M_PC-*.png"):  # no papillary carcinoma anywhere
        image.unlink()
    (submissions / "toy.py").write_text(toy_source("toy"))
    assert _toy_run(submissions, tree_copy, tmp_path / "out", "--task", "subtype") == 0
    err = capsys.readouterr().err
    assert "note: fold 1: no training image of PC; every method is fitted without them" in err
    record = results.load(next((tmp_path / "out").rglob("fold1.json")))
    assert record.split.missing_classes == {"all": ("PC",)}


def test_prune_removes_failed_records_and_keeps_results(run_toy, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_toy(results=out).ok
    broken = toy_source("toy", fit_body="raise ValueError('broken\\nsecond line')")
    assert len(run_toy(results=out, source=broken, params={"size": 8}).failed) == 5
    failed = sorted(out.rglob("fold*.json"))
    assert len(failed) == 10 and len(list(out.rglob("fold*.log"))) == 5  # the second line went to a log
    capsys.readouterr()
    assert main(["results", "prune", "--results", str(out), "--dry-run"]) == 0
    assert "would remove 10 file(s)" in capsys.readouterr().err and len(list(out.rglob("fold*.json"))) == 10
    assert main(["results", "prune", "--results", str(out)]) == 0
    left = sorted(out.rglob("fold*.*"))
    assert len(left) == 10 and all("size" not in str(p) for p in left)  # 5 records + 5 predictions of the ok run
    assert "removed 10 file(s)" in capsys.readouterr().err
    edited = next(out.rglob("fold2.predictions.csv"))  # a damaged result goes too, with its predictions
    edited.write_text(edited.read_text().replace("0.", "1.", 1))
    assert main(["results", "prune", "--results", str(out)]) == 0
    assert "fold2.json: its predictions are missing or changed" in capsys.readouterr().err
    assert len(list(out.rglob("fold*.*"))) == 8 and not edited.exists()


def test_a_library_warning_is_shown_once_per_run(submissions, tiny_tree, tmp_path, capfd):
    # capfd: the workers write to file descriptor 2 directly
    (submissions / "toy.py").write_text(
        toy_source("toy", fit_body="import warnings; warnings.warn('toy says careful')")
    )
    assert _toy_run(submissions, tiny_tree, tmp_path / "out") == 0
    err = capfd.readouterr().err
    assert err.count("toy says careful") == 1 and "warning (shown once): UserWarning: toy says careful" in err


@pytest.mark.parametrize(
    "argv",
    [["tune", "--method", "pftas_svm", "--trials", "1", "--data", "/nonexistent"], ["check", "lbp_svm"],
     ["audit", "--method", "lbp_svm", "--data", "/nonexistent"]],
    ids=["tune", "check", "audit"],
)  # fmt: skip
def test_every_command_refuses_a_parameter_no_method_has(argv, capsys):
    assert main([*argv, "--set", "colour=3"]) == 2  # before any data is looked at
    assert _one_error_line(capsys) == "error: no selected method has parameter(s) colour"


def test_audit_takes_one_method_not_a_family(capsys):
    assert main(["audit", "--method", "handcrafted"]) == 2
    assert _one_error_line(capsys) == "error: --method 'handcrafted': audit takes one method name"


def test_audit_prints_its_table_verdict_and_where_it_wrote(tiny_tree, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["audit", "--method", "majority", "--fold", "2", "--data", str(tiny_tree), "--results", str(out)])
    captured = capsys.readouterr()
    (written,) = out.rglob("majority/*/audit.json")
    verdict = json.loads(written.read_text())["verdict"]
    assert code == (0 if verdict in ("pass", "inconclusive") else 1)
    assert "label-permutation audit of majority — synthetic data" in captured.out
    assert f"audit {verdict}:" in captured.err and f"written to {written}" in " ".join(captured.err.split())
