"""Submissions: one file dropped into the folder is listed, checked, run and ranked with no other
edit; the example submission is found and scores sensibly; the CI workflow calls real commands."""

import shlex
from pathlib import Path

import pytest
import yaml
from conftest import toy_source

from bhbench import results
from bhbench.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "leaderboard.yml"


def _card(name: str) -> str:
    """A toy carrying a full submission card."""
    return toy_source(name).replace(
        'family="test", reference="bhbench tests"',
        'family="submission", reference="bhbench tests", authors="A. Tester", licence="MIT"',
    )


def test_the_example_submission_is_listed(clean_registry, capsys):
    assert main(["--submissions", str(REPO / "submissions"), "list", "submission"]) == 0
    listed = capsys.readouterr().out
    assert "hed_nuclei_rf" in listed and "licence=MIT" in listed


def test_a_dropped_in_file_is_listed_checked_run_and_ranked(submissions: Path, tiny_tree: Path, tmp_path, capsys):
    (submissions / "dropin.py").write_text(_card("dropin"))
    common = ["--submissions", str(submissions)]
    assert main([*common, "list"]) == 0
    assert "dropin" in capsys.readouterr().out
    assert main([*common, "check"]) == 0  # no argument: every submission in the folder
    checked = [line for line in capsys.readouterr().out.splitlines() if "dropin" in line]
    assert checked and all(line.startswith("PASS") for line in checked)
    out = tmp_path / "results"
    assert main([*common, "run", "--method", "dropin", "--data", str(tiny_tree), "--results", str(out)]) == 0
    assert len(results.all_records(out)) == 5
    assert main(["leaderboard", "--results", str(out), "--output", str(tmp_path)]) == 0
    ranked = [line for line in (tmp_path / "README.md").read_text().splitlines() if "dropin" in line]
    assert ranked and ranked[0].replace(" ", "").startswith("|1|dropin")


def test_a_broken_file_does_not_hide_the_others(submissions: Path, capsys):
    (submissions / "good.py").write_text(_card("good_one"))
    (submissions / "bad.py").write_text("raise ImportError('needs a package CI lacks')\n")
    assert main(["--submissions", str(submissions), "check", "good_one"]) == 0
    text = capsys.readouterr()
    assert "bad.py" in text.err and "needs a package CI lacks" in text.err
    # The harness reads cards without running the file: one that registers nothing is refused as such.
    assert main(["--submissions", str(submissions), "check", str(submissions / "bad.py")]) == 2
    assert "registers no method" in capsys.readouterr().err


def test_ci_workflow_runs_checks_on_pull_requests_and_regenerates_on_main():
    flow = yaml.safe_load(WORKFLOW.read_text())
    triggers = flow[True]  # YAML 1.1 reads the key `on` as a boolean
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]
    steps = {name: [s.get("run", "") for s in job["steps"]] for name, job in flow["jobs"].items()}
    pr, main_push = "\n".join(steps["check"]), "\n".join(steps["regenerate"])
    assert "pytest" in pr and "bhbench check" in pr and "bhbench leaderboard --check" in pr
    assert "bhbench leaderboard" in main_push and "git push" in main_push
    assert flow["jobs"]["regenerate"]["permissions"]["contents"] == "write"
    # Every bhbench command the workflow runs parses under the current CLI.
    commands = [
        line.strip() for run in (pr, main_push) for line in run.splitlines() if line.strip().startswith("bhbench")
    ]
    assert len(commands) >= 3  # check, leaderboard --check, leaderboard (and the audit of changed submissions)
    for command in commands:
        argv = ["x" if "$" in a else a for a in shlex.split(command.partition("||")[0])[1:]]  # a shell variable
        build_parser().parse_args(argv)


@pytest.mark.slow
def test_the_example_submission_scores_well_above_chance(tiny_tree: Path, tmp_path: Path, clean_registry):
    out = tmp_path / "results"
    argv = ["--submissions", str(REPO / "submissions"), "run", "--method", "hed_nuclei_rf", "--data", str(tiny_tree),
            "--results", str(out)]  # fmt: skip
    assert main(argv) == 0
    prr = [r.metrics.overall.patient_rr for _, r in results.all_records(out)]
    assert len(prr) == 5 and sum(prr) / 5 > 0.8


def test_leaderboard_labels_come_from_records_not_the_installed_plugins(run_toy, tmp_path, monkeypatch):
    """A row's non-default parameters are named from the defaults its records keep: the board is the
    same where the submission is not installed (CI's leaderboard job discovers nothing)."""
    from bhbench import registry

    out = tmp_path / "results"
    records = run_toy("dropin", source=_card("dropin"), params={"size": 8}, results=out).records
    assert len(records) == 5
    assert all(r.method.defaults == {"size": 16, "seed": 0} for r in records)
    monkeypatch.setattr(registry, "DEFAULT", registry.Registry())  # nothing registered at all
    assert main(["leaderboard", "--results", str(out), "--output", str(tmp_path / "board")]) == 0
    assert "dropin [size=8]" in (tmp_path / "board" / "leaderboard.csv").read_text()
    assert "dropin" not in {e.name for e in registry.entries()}


def test_the_example_submission_declares_its_ranges_and_guards_predict(clean_registry):
    import numpy as np

    from bhbench import NotFittedError, TestSet, params
    from bhbench.errors import UserError

    example = REPO / "submissions" / "hed_nuclei.py"
    clean_registry.load_submission(example)  # its card, read from source
    with pytest.raises(
        UserError, match="^hed_nuclei_rf: max_features=0 is not allowed: expected a number > 0 and <= 1$"
    ):
        params.resolve(["hed_nuclei_rf"], {"max_features": 0})
    clean_registry.load_submission(example, run_code=True)  # what its worker does
    method = clean_registry.create("hed_nuclei_rf")
    with pytest.raises(NotFittedError):
        method.predict_proba(TestSet.build("binary", images=[np.zeros((8, 8, 3), np.uint8)]))


def test_the_readmes_example_declares_what_it_says(submissions: Path, clean_registry):
    from bhbench import params
    from bhbench.errors import UserError

    readme = (REPO / "submissions" / "README.md").read_text()
    (submissions / "my_method.py").write_text(readme.split("```python\n", 1)[1].split("```", 1)[0])
    clean_registry.discover(submissions)
    assert params.defaults("my_method") == {"c": 1.0, "kernel": "rbf", "seed": 0}
    with pytest.raises(UserError, match="^my_method: c=-1 is not allowed: expected a number > 0$"):
        params.resolve(["my_method"], {"c": -1})
