"""The command line: user errors are one line and a non-zero exit; list is fast and torch-free."""

import subprocess
import sys
import time

import pytest

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


def test_list_is_fast_and_never_imports_torch():
    code = (
        "import sys, time; t = time.perf_counter(); from bhbench.cli import main; main(['list']); "
        "assert 'torch' not in sys.modules, 'torch imported'; print(time.perf_counter() - t)"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "lbp_svm" in out.stdout and "fast_bcnn" in out.stdout
    assert time.perf_counter() - start < 30  # generous: the point is no torch, timed by perf scripts


@pytest.mark.parametrize("command", [[], ["run"], ["list"], ["leaderboard"], ["data", "check"], ["data", "synth"]])
def test_help_works_everywhere(command):
    out = subprocess.run([sys.executable, "-m", "bhbench", *command, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: bhbench" in out.stdout
