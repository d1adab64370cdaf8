"""The typed record: every committed record round-trips byte for byte through RunRecord, and a
record edited by hand is refused with the file and the key that is wrong."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bhbench import results
from bhbench.leaderboard import check_all, standing, verify
from bhbench.record import RunRecord

COMMITTED = sorted((Path(__file__).resolve().parents[1] / "leaderboard" / "results").rglob("fold*.json"))
# A committed record of a successful run, to edit.
SAMPLE = COMMITTED[0] if COMMITTED else None


def test_every_committed_record_round_trips_byte_for_byte():
    assert len(COMMITTED) > 100  # the committed leaderboard, not an empty glob
    differ = [p for p in COMMITTED if results.encode(results.load(p)).encode() != p.read_bytes()]
    assert differ == []


def _doc() -> dict:
    assert SAMPLE is not None
    doc = json.loads(SAMPLE.read_text())
    assert doc["status"] == "ok"
    return doc


def _refusal(tmp_path: Path, doc: dict) -> str:
    path = tmp_path / "fold1.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(results.RecordError) as caught:
        results.load(path)
    assert str(caught.value).startswith(f"{path}: ")  # one line naming the file
    assert "\n" not in str(caught.value)
    return caught.value.problem


def test_a_misspelt_key_is_refused_naming_it(tmp_path):
    doc = _doc()
    doc["method"]["parms"] = doc["method"].pop("params")
    assert _refusal(tmp_path, doc) == "unknown key method.parms"
    doc = _doc()
    doc["metrics"]["overall"]["patient_rrr"] = 0.5
    assert _refusal(tmp_path, doc) == "unknown key metrics.overall.patient_rrr"


def test_a_missing_key_is_refused_naming_it(tmp_path):
    doc = _doc()
    del doc["dataset"]["fingerprint"]
    assert _refusal(tmp_path, doc) == "missing key dataset.fingerprint"
    doc = _doc()
    del doc["metrics"]["by_magnification"]["40"]["patient_rr"]
    assert _refusal(tmp_path, doc) == "missing key metrics.by_magnification.40.patient_rr"


def test_a_value_of_the_wrong_type_or_meaning_is_refused(tmp_path):
    doc = _doc()
    doc["split"]["fold"] = "3"
    assert _refusal(tmp_path, doc) == "split.fold: expected an integer, found '3'"
    doc = _doc()
    doc["split"]["leaky"] = 0
    assert _refusal(tmp_path, doc) == "split.leaky: expected true or false, found 0"
    doc = _doc()
    doc["protocol"]["task"] = "ternary"
    assert "protocol: unknown task 'ternary'" in _refusal(tmp_path, doc)
    doc = _doc()
    doc["protocol"]["id"] = "binary-ms-patient-seed0"
    assert _refusal(tmp_path, doc).startswith("protocol.id: 'binary-ms-patient-seed0' does not match")
    doc = _doc()
    doc["schema"] = 2
    assert _refusal(tmp_path, doc) == "schema 2; this bhbench reads schema 1"
    doc = _doc()
    doc["metrics"] = None
    assert _refusal(tmp_path, doc) == "status 'ok' without metrics"
    path = tmp_path / "fold1.json"
    path.write_text("{")
    with pytest.raises(results.RecordError, match="not JSON"):
        results.load(path)


def test_a_failed_run_is_a_record_without_metrics_predictions_or_warnings():
    doc = _doc()
    doc.update(status="failed", error="ValueError: C must be > 0", metrics=None, timing=None, contract=None)
    doc["method"]["fit_info"] = None
    del doc["warnings"], doc["predictions"]
    record = RunRecord.from_json(doc)
    assert not record.ok and record.metrics is None and record.predictions is None and record.warnings is None
    assert record.to_json() == doc
    assert results.encode(record) == json.dumps(doc, indent=1, sort_keys=True)


def test_the_leaderboard_refuses_an_edited_record_with_a_message(tmp_path):
    doc = _doc()
    doc["split"]["flod"] = doc["split"].pop("fold")
    path = tmp_path / "d" / "p" / "m" / "h" / "fold1.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc))
    (checked,) = check_all(tmp_path)
    assert checked.record is None and checked.problems == ["unknown key split.flod"]


def test_a_records_headline_is_the_leaderboards_not_the_pooled_rate():
    """`run` prints and ranks by the leaderboard's headline (mean of the per-magnification patient
    recognition rates), so its "would rank" matches the table a reader sees."""
    import pandas as pd

    root = COMMITTED[0].parents[4]
    board = pd.read_csv(root.parent / "leaderboard.csv")
    checked = 0
    for line in board[board["folds"] == 5].head(8).itertuples():
        folder = root / line.dataset / line.protocol / line.name / line.params_hash
        records = [r for _, r in results.all_records(folder) if r is not None]
        ((mean, folds),) = standing.mean_headline(records).values()
        assert folds == 5 and mean == pytest.approx(line.headline_mean, abs=1e-6)
        checked += line.headline_mean != pytest.approx(line.patient_rr_mean, abs=1e-3)
    assert checked  # at least one row where the pooled rate differs, so the test can tell them apart


def _older_record() -> Path:
    """A committed binary record made before the later metrics were declared."""
    return next(
        p
        for p in COMMITTED
        if "/binary-" in p.as_posix()
        and '"status": "ok"' in (text := p.read_text())
        and "sensitivity" not in json.loads(text)["metrics"]["overall"]
    )


def test_an_older_record_verifies_and_gets_the_later_metrics_from_its_predictions():
    import pandas as pd

    path = _older_record()
    record = results.load(path)
    assert record.metrics.overall.sensitivity is None  # not stored
    checked = verify(path, record, path.parents[4])
    assert checked.accepted
    frame = pd.read_csv(path.parent / record.predictions.file)
    malignant = frame["filename"].str.startswith("SOB_M")
    called = frame["p_malignant"] > frame["p_benign"]
    recomputed = checked.scored.metrics.overall
    assert recomputed.sensitivity == pytest.approx((called & malignant).sum() / malignant.sum())
    assert recomputed.specificity == pytest.approx((~called & ~malignant).sum() / (~malignant).sum())


def test_a_stored_later_metric_that_does_not_match_the_predictions_is_refused(tmp_path):
    path = _older_record()
    dataset = path.parents[3]
    (tmp_path / dataset.name).mkdir()
    for shared in ("manifest.csv", "splits"):
        (tmp_path / dataset.name / shared).symlink_to(dataset / shared)
    target = tmp_path / path.relative_to(path.parents[4])
    target.parent.mkdir(parents=True)
    doc = json.loads(path.read_text())
    shutil.copy(path.parent / doc["predictions"]["file"], target.parent)
    doc["metrics"]["overall"]["sensitivity"] = 0.123
    target.write_text(json.dumps(doc))
    (checked,) = check_all(tmp_path)
    (problem,) = checked.problems
    assert problem == "stored metric overall.sensitivity differs from the one recomputed from the predictions"
