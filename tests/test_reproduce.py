"""Reproducibility: records name the code that made them, a run writes to a scratch folder by
default, and `bhbench reproduce` reruns records and names what does not match."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import toy_source

from bhbench import api, environment, reproduce, results
from bhbench.cli import main
from bhbench.errors import UserError
from bhbench.util import cpu_count


@pytest.fixture(scope="module")
def repro_records(tiny_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Five folds of a toy submission on the tiny tree: (submissions folder, results folder)."""
    base = tmp_path_factory.mktemp("toy-run")
    (base / "subs").mkdir()
    (base / "subs" / "repro_toy.py").write_text(toy_source("repro_toy"))
    out = base / "results"
    assert api.run(["repro_toy"], api.Where(tiny_tree), results=out, fps_images=0, submissions=base / "subs").ok
    return base / "subs", out


def _said(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    return captured.out + captured.err


def _copy(out: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(out, tmp_path / "results"))


def _reproduce(subs: Path, tiny_tree: Path, *targets: str) -> int:
    """Through the CLI: the verdict is its last line, and its exit code."""
    return main(["--submissions", str(subs), "reproduce", *targets, "--data", str(tiny_tree)])


def test_records_name_their_code(repro_records: tuple[Path, Path]) -> None:
    _, out = repro_records
    for _, record in results.all_records(out):
        code = record.method.code
        assert code.files == ("repro_toy.py",) and len(code.hash) == 10 and code.harness


def test_reproduce_passes_then_names_the_fold_and_image_of_an_edited_probability(
    repro_records: tuple[Path, Path], tiny_tree: Path, tmp_path: Path
) -> None:
    subs, out = repro_records
    out = _copy(out, tmp_path)
    folder = next(out.rglob("repro_toy"))
    done = api.reproduce([folder], data=tiny_tree, submissions=subs)
    assert done.ok and sorted(c.fold for c in done.comparisons) == [1, 2, 3, 4, 5]
    assert all(c.max_diff <= reproduce.PROBA_TOLERANCE and c.images > 0 for c in done.comparisons)

    predictions = next(folder.rglob("fold3.predictions.csv"))
    frame = pd.read_csv(predictions)
    image = frame.loc[7, "filename"]
    frame.loc[7, "p_malignant"] = 1 - frame.loc[7, "p_malignant"]
    frame.loc[7, "p_benign"] = 1 - frame.loc[7, "p_benign"]
    frame.to_csv(predictions, index=False)
    done = api.reproduce([predictions.with_name("fold3.json")], data=tiny_tree, submissions=subs)
    (edited,) = done.mismatches
    assert not done.ok and edited.fold == 3 and edited.worst.startswith(f"{image} p_")
    assert edited.max_diff == pytest.approx(abs(1 - 2 * frame.loc[7, "p_malignant"]), abs=1e-6)
    assert edited.notes == ["the stored predictions do not match the hash in their record (edited after the run)"]


def test_a_record_older_than_a_metric_reproduces_and_a_stored_metric_is_compared(
    repro_records: tuple[Path, Path], tiny_tree: Path, tmp_path: Path
) -> None:
    """A metric declared after a record was made is not in it (the committed records lack Brier and
    the rest): the predictions stand for it. A metric the record does store is compared."""
    subs, out = repro_records
    out = _copy(out, tmp_path)
    path = next(out.rglob("repro_toy/**/fold2.json"))
    doc = json.loads(path.read_text())
    for scores in (doc["metrics"]["overall"], *doc["metrics"]["by_magnification"].values()):
        for name in ("sensitivity", "specificity", "brier", "ece"):
            del scores[name]
    path.write_text(json.dumps(doc))
    assert api.reproduce([path], data=tiny_tree, submissions=subs).ok

    doc["metrics"]["overall"]["accuracy"] -= 0.25
    path.write_text(json.dumps(doc))
    (changed,) = api.reproduce([path], data=tiny_tree, submissions=subs).mismatches
    assert changed.metrics_differ == [
        f"overall.accuracy: {100 * doc['metrics']['overall']['accuracy']:.2f} -> "
        f"{100 * (doc['metrics']['overall']['accuracy'] + 0.25):.2f}"
    ]


def test_a_row_address_finds_the_records_and_a_bad_one_says_what_exists(
    repro_records: tuple[Path, Path], tiny_tree: Path, tmp_path: Path
) -> None:
    subs, committed = repro_records
    out = Path(shutil.copytree(committed, tmp_path / "results"))
    (section,) = [p for p in out.glob("*/*") if p.is_dir() and p.name != "splits"]
    shutil.copytree(section, section.with_name("binary-mi-image-kfold-seed0"))  # the leaky twin: not MIBC
    empty = tmp_path / "empty"
    empty.mkdir()
    # looked up in each folder in turn: the empty one first holds no such row
    done = api.reproduce(["synthetic/MIBC/repro_toy"], [empty, out], tiny_tree, submissions=subs)
    assert done.ok and len(done.comparisons) == 5
    assert all(c.record.is_relative_to(section) for c in done.comparisons)
    with pytest.raises(UserError, match="matches none"):
        api.reproduce(["synthetic/MSFC/repro_toy"], [out], tiny_tree, submissions=subs)
    with pytest.raises(UserError, match="methods there: repro_toy"):
        api.reproduce(["synthetic/MIBC/nosuch"], [out], tiny_tree, submissions=subs)


def test_refuses_without_the_data(repro_records: tuple[Path, Path], tmp_path: Path) -> None:
    subs, out = repro_records
    out = _copy(out, tmp_path)
    record_path = next(out.rglob("fold1.json"))
    record = json.loads(record_path.read_text())
    record["dataset"]["synthetic"] = False
    record_path.write_text(json.dumps(record))
    with pytest.raises(UserError, match="real BreaKHis.*give --data PATH"):
        api.reproduce([record_path], submissions=subs)


def _made_elsewhere(record_path: Path, **versions: str) -> None:
    """Pretend a record was made under other package versions and another lock."""
    record = json.loads(record_path.read_text())
    record["environment"]["versions"].update(versions)
    record["environment"]["lock"] = "0123456789abcdef"
    record_path.write_text(json.dumps(record))


def test_other_versions_are_compared_first_and_named_beside_the_verdict(
    repro_records: tuple[Path, Path], tiny_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subs, out = repro_records
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


def test_same_versions_name_the_lock(repro_records: tuple[Path, Path], tiny_tree: Path, tmp_path: Path) -> None:
    subs, out = repro_records
    record_path = next(_copy(out, tmp_path).rglob("fold4.json"))
    done = api.reproduce([record_path], data=tiny_tree, submissions=subs)
    assert done.ok and done.drift == []
    recorded = results.load(record_path).environment.lock
    assert recorded == environment.lock_here()
    if recorded is not None:  # an environment installed from the lock (CI's, the README's)
        assert f"lock {recorded}" in done.lock


def test_the_rerun_takes_the_records_threads_and_names_another_cpu(
    tiny_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deep record's float sums follow the CPU's vector instructions and the thread count: a record
    names both, the rerun takes its thread count, and a CPU other than this one is named beside the
    verdict (the likely cause when a deep record does not reproduce)."""
    subs = tmp_path / "subs"
    subs.mkdir()
    uses_threads = "\n        ".join(
        ("from bhbench.util import thread_budget", "e = np.ones_like(e)", "e[:, 1] = 1 + 1e-3 * thread_budget()")
    )
    (subs / "threads_toy.py").write_text(toy_source("threads_toy", uses_threads))  # p_malignant moves with t
    out = tmp_path / "results"
    assert api.run(["threads_toy"], api.Where(tiny_tree), results=out, fps_images=0, submissions=subs).ok
    path = next(out.rglob("fold1.json"))
    made = results.load(path).environment
    assert made.cpu == environment.cpu() and made.threads == cpu_count()

    # As if made elsewhere, with one thread more than this machine has: its predictions show the count
    # (by less than the metrics' precision, so only the probabilities tell).
    threads = cpu_count() + 1
    predictions = path.with_name("fold1.predictions.csv")
    frame = pd.read_csv(predictions)
    frame["p_malignant"] = (1 + 1e-3 * threads) / (2 + 1e-3 * threads)
    frame["p_benign"] = 1 - frame["p_malignant"]
    frame.to_csv(predictions, index=False)
    doc = json.loads(path.read_text())
    doc["predictions"]["sha256"] = hashlib.sha256(predictions.read_bytes()).hexdigest()
    doc["environment"].update(cpu="Another CPU (avx2)", threads=threads)
    path.write_text(json.dumps(doc))
    assert _reproduce(subs, tiny_tree, str(path)) == 0
    text = " ".join(_said(capsys).split())
    assert "made on another CPU: CPU Another CPU (avx2) in the record" in text and "did not move" in text

    del doc["environment"]["cpu"], doc["environment"]["threads"]  # an older record: neither is named
    path.write_text(json.dumps(doc))
    assert _reproduce(subs, tiny_tree, str(path)) == 1  # rerun with this machine's threads
    text = " ".join(_said(capsys).split())
    assert "1 record(s) do not name their CPU (made before records did)" in text


def test_editing_a_submission_retrains_its_folds_and_says_why(run_toy) -> None:
    before = run_toy("edited_toy", source=toy_source("edited_toy"))
    again = run_toy("edited_toy")
    assert all(j.skipped for j in again.jobs)  # same code: nothing reruns

    after = run_toy("edited_toy", source=toy_source("edited_toy", body="e = e + 0.01"))
    assert [j.job.rerun for j in after.jobs] == ["code changed since the record"] * 5
    assert not any(j.skipped for j in after.jobs)
    assert [j.job.where.record for j in after.jobs] == [j.job.where.record for j in before.jobs]
    assert not {r.method.code.hash for r in after.records} & {r.method.code.hash for r in before.records}


def test_run_writes_to_a_scratch_folder_unless_told_and_says_where_it_would_rank(
    repro_records: tuple[Path, Path], run_toy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    committed = Path(shutil.copytree(repro_records[1], tmp_path / "leaderboard" / "results"))  # a one-row leaderboard
    before = sorted(committed.rglob("*"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BHBENCH_RESULTS", raising=False)
    result = run_toy("scratch_toy", source=toy_source("scratch_toy", body="e = e ** 0.5"), results=None)
    assert result.results == Path("bhbench-results") and len(results.all_records(tmp_path / "bhbench-results")) == 5
    assert sorted(committed.rglob("*")) == before
    (row,) = result.rows
    (standing,) = result.standings
    assert (standing.method, standing.of, standing.headline) == ("scratch_toy", 2, row.mean_headline)
    assert standing.board.resolve() == next(committed.glob("*/*-seed0")).resolve()
    others = {r.metrics.headline for _, r in results.all_records(committed)}
    assert standing.place == 1 + (sum(others) / len(others) > row.mean_headline)
    monkeypatch.setenv("BHBENCH_RESULTS", str(tmp_path / "mine"))
    assert len(run_toy("scratch_toy", results=None).records) == 5
    assert len(results.all_records(tmp_path / "mine")) == 5


@pytest.mark.parametrize(
    ("protocol", "liu"),
    [
        ("binary-mi-patient-seed0", True),
        ("binary-mi-official", True),
        ("binary-mi-image-kfold-seed0", False),
        ("binary-mi-cross-stain-seed0", False),
        ("binary-mi-stain-random-seed0", False),
        ("binary-mi-patient-seed0-macenko", False),
        ("binary-ms-patient-seed0", False),
    ],
)
def test_a_liu_name_is_the_leak_free_protocol_only(protocol: str, liu: bool) -> None:
    # CI reproduces synthetic/MIBC/...: the stain-shift sections beside it must not make it ambiguous
    assert reproduce._is_liu(protocol, "MIBC") is liu
