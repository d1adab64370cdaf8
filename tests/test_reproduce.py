"""Reproducibility: records name the code that made them, a run writes to a scratch folder by
default, and `bhbench reproduce` reruns records and names what does not match."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import toy_source

from bhbench import environment, results
from bhbench.cli import main


@pytest.fixture(scope="module")
def toy_run(tiny_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Five folds of a toy submission on the tiny tree: (submissions folder, results folder)."""
    base = tmp_path_factory.mktemp("toy-run")
    (base / "subs").mkdir()
    (base / "subs" / "repro_toy.py").write_text(toy_source("repro_toy"))
    out = base / "results"
    assert main(["--submissions", str(base / "subs"), "run", "-m", "repro_toy", "--data", str(tiny_tree),
                 "--results", str(out), "--fps-images", "0"]) == 0  # fmt: skip
    return base / "subs", out


def _said(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    return captured.out + captured.err


def _copy(out: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(out, tmp_path / "results"))


def _reproduce(subs: Path, tiny_tree: Path, *targets: str) -> int:
    return main(["--submissions", str(subs), "reproduce", *targets, "--data", str(tiny_tree)])


def test_records_name_their_code(toy_run: tuple[Path, Path]) -> None:
    _, out = toy_run
    for _, record in results.all_records(out):
        code = record.method.code
        assert code.files == ("repro_toy.py",) and len(code.hash) == 10 and code.harness


def test_reproduce_passes_then_names_the_fold_and_image_of_an_edited_probability(
    toy_run: tuple[Path, Path], tiny_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subs, out = toy_run
    out = _copy(out, tmp_path)
    folder = next(out.rglob("repro_toy"))
    assert _reproduce(subs, tiny_tree, str(folder)) == 0
    assert "all 5 record(s) reproduced" in _said(capsys)

    predictions = next(folder.rglob("fold3.predictions.csv"))
    frame = pd.read_csv(predictions)
    image = frame.loc[7, "filename"]
    frame.loc[7, "p_malignant"] = 1 - frame.loc[7, "p_malignant"]
    frame.loc[7, "p_benign"] = 1 - frame.loc[7, "p_benign"]
    frame.to_csv(predictions, index=False)
    assert _reproduce(subs, tiny_tree, str(predictions.with_name("fold3.json"))) == 1
    text = _said(capsys)
    assert f"fold 3: {image} p_" in text and "did not reproduce" in text
    assert "edited after the run" in text


def test_a_row_address_finds_the_records_and_a_bad_one_says_what_exists(
    toy_run: tuple[Path, Path], tiny_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subs, committed = toy_run
    out = Path(shutil.copytree(committed, tmp_path / "results"))
    (section,) = [p for p in out.glob("*/*") if p.is_dir() and p.name != "splits"]
    shutil.copytree(section, section.with_name("binary-mi-image-kfold-seed0"))  # the leaky twin: not MIBC
    common = ["--submissions", str(subs), "reproduce", "--results", str(out), "--data", str(tiny_tree)]
    assert main([*common, "synthetic/MIBC/repro_toy"]) == 0
    assert main([*common, "synthetic/MSFC/repro_toy"]) == 2
    assert "matches none" in _said(capsys)
    assert main([*common, "synthetic/MIBC/nosuch"]) == 2
    assert "methods there: repro_toy" in _said(capsys)


def test_refuses_without_the_data(
    toy_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subs, out = toy_run
    out = _copy(out, tmp_path)
    record_path = next(out.rglob("fold1.json"))
    record = json.loads(record_path.read_text())
    record["dataset"]["synthetic"] = False
    record_path.write_text(json.dumps(record))
    assert main(["--submissions", str(subs), "reproduce", str(record_path)]) == 2
    text = _said(capsys)
    assert "real BreaKHis" in text and "give --data PATH" in text


def _made_elsewhere(record_path: Path, **versions: str) -> None:
    """Pretend a record was made under other package versions and another lock."""
    record = json.loads(record_path.read_text())
    record["environment"]["versions"].update(versions)
    record["environment"]["lock"] = "0123456789abcdef"
    record_path.write_text(json.dumps(record))


def test_other_versions_are_compared_first_and_named_beside_the_verdict(
    toy_run: tuple[Path, Path], tiny_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subs, out = toy_run
    out = _copy(out, tmp_path)
    record_path = next(out.rglob("fold2.json"))
    _made_elsewhere(record_path, **{"opencv-python-headless": "4.0.0.1"})
    here = environment.versions()["opencv-python-headless"]

    assert _reproduce(subs, tiny_tree, str(record_path)) == 0  # numbers equal: passes, with the note
    text = " ".join(_said(capsys).split())
    assert "all 1 record(s) reproduced" in text and "the numbers did not move" in text
    assert f"opencv-python-headless 4.0.0.1 in the record, {here} here" in text

    assert _reproduce(subs, tiny_tree, "--strict-versions", str(record_path)) == 2  # the maintainers' refusal
    assert "opencv-python-headless 4.0.0.1 in the record" in _said(capsys)

    predictions = record_path.with_name("fold2.predictions.csv")
    frame = pd.read_csv(predictions)
    image = frame.loc[3, "filename"]
    frame.loc[3, "p_malignant"] += 0.25
    frame.to_csv(predictions, index=False)
    assert _reproduce(subs, tiny_tree, str(record_path)) == 1  # one probability moved: fails, naming both
    text = " ".join(_said(capsys).split())
    assert f"fold 2: {image} p_malignant differs by 0.25" in text
    assert "1 of 1 record(s) did not reproduce" in text and "opencv-python-headless 4.0.0.1 in the record" in text


def test_same_versions_name_the_lock(
    toy_run: tuple[Path, Path], tiny_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subs, out = toy_run
    record_path = next(_copy(out, tmp_path).rglob("fold4.json"))
    assert _reproduce(subs, tiny_tree, str(record_path)) == 0
    text = " ".join(_said(capsys).split())
    assert "same versions as the records" in text and "the numbers did not move" not in text
    recorded = results.load(record_path).environment.lock
    assert recorded == environment.lock_here()
    if recorded is not None:  # an environment installed from the lock (CI's, the README's)
        assert f"lock {recorded}" in text


def test_editing_a_submission_retrains_its_folds_and_says_why(
    tiny_tree: Path, submissions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = submissions / "edited_toy.py"
    source.write_text(toy_source("edited_toy"))
    args = ["--submissions", str(submissions), "run", "-m", "edited_toy", "--data", str(tiny_tree),
            "--results", str(tmp_path / "r"), "--fps-images", "0"]  # fmt: skip
    assert main(args) == 0
    before = {p.name: r.method.code.hash for p, r in results.all_records(tmp_path / "r")}
    capsys.readouterr()
    assert main(args) == 0
    assert _said(capsys).count("finished earlier") == 5  # same code: nothing reruns

    source.write_text(toy_source("edited_toy", body="e = e + 0.01"))
    assert main(args) == 0
    text = _said(capsys)
    assert "finished earlier" not in text and text.count("code changed since the record") == 5
    after = {p.name: r.method.code.hash for p, r in results.all_records(tmp_path / "r")}
    assert set(after) == set(before) and not set(after.values()) & set(before.values())


def test_run_writes_to_a_scratch_folder_unless_told_and_says_where_it_would_rank(
    toy_run: tuple[Path, Path],
    tiny_tree: Path,
    submissions: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    committed = Path(shutil.copytree(toy_run[1], tmp_path / "leaderboard" / "results"))  # a one-row leaderboard
    before = sorted(committed.rglob("*"))
    (submissions / "scratch_toy.py").write_text(toy_source("scratch_toy", body="e = e ** 0.5"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BHBENCH_RESULTS", raising=False)
    args = ["--submissions", str(submissions), "run", "-m", "scratch_toy", "--data", str(tiny_tree),
            "--fps-images", "0"]  # fmt: skip
    assert main(args) == 0
    assert len(results.all_records(tmp_path / "bhbench-results")) == 5
    assert sorted(committed.rglob("*")) == before
    assert "scratch_toy (PRR" in (said := _said(capsys)) and " of 2 by mean PRR on the committed leaderboard" in said
    monkeypatch.setenv("BHBENCH_RESULTS", str(tmp_path / "mine"))
    assert main(args) == 0
    assert len(results.all_records(tmp_path / "mine")) == 5
