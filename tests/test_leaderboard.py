"""Aggregation of verified records: intervals, tied ranks, blocks that are never ranked together,
headlines as the papers define them. Records are built in memory with known predictions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bhbench import scoring
from bhbench.leaderboard import render
from bhbench.leaderboard.aggregate import frame, sections
from bhbench.leaderboard.verify import Checked, Scored
from bhbench.metric import BOOTSTRAPPED
from bhbench.protocol import Protocol
from bhbench.record import (
    CodeInfo,
    DatasetInfo,
    Environment,
    MethodInfo,
    Metrics,
    PredictionsFile,
    RunRecord,
    SplitInfo,
    Timing,
)
from bhbench.scoring import HEADLINE, score_all

MAGS = (40, 100, 200, 400)


@pytest.fixture(autouse=True)
def _fewer_resamples(monkeypatch: pytest.MonkeyPatch):
    """2,000 resamples (p >= 1/2001) still clear Holm's bar for the few pairs of these tests."""
    monkeypatch.setattr(scoring, "BOOTSTRAP_RESAMPLES", 2000)


def _images(fold: int, patients: int = 12) -> tuple[list[str], np.ndarray]:
    """Test images of one fold: patients alternate benign/malignant, 2 images per magnification."""
    names, y = [], []
    for p in range(patients):
        malignant = p % 2
        prefix = "SOB_M_DC" if malignant else "SOB_B_A"
        for mag in MAGS:
            for i in range(2):
                names.append(f"{prefix}-14-{fold}P{p:02d}-{mag}-{i + 1:03d}.png")
                y.append(malignant)
    return names, np.array(y)


def _record(name: str, fold: int, metrics: Metrics, split: str = "patient", **method: object) -> RunRecord:
    """A successful record of a toy method; `method` overrides MethodInfo's fields."""
    return RunRecord(
        status="ok",
        error=None,
        created="2026-01-01T00:00:00+00:00",
        dataset=DatasetInfo("synthetic-test", "synthetic", "0" * 64, 96, 12, True, None, ()),
        protocol=Protocol(split=split),
        split=SplitInfo(split, "test", "0" * 64, "split.json", fold, split == "image-kfold", (), 192, 96, 0, {}),
        method=replace(MethodInfo(name, "test", "", {}, "abc1234567", None, None, None, False), **method),
        seed=0,
        contract=None,
        metrics=metrics,
        timing=Timing(fit_seconds=1.0, predict_seconds=1.0),
        environment=Environment({}, None, "test", "none"),
        warnings=(),
        predictions=PredictionsFile(f"fold{fold}.predictions.csv", "0" * 64),
    )


def _checked(
    name: str, accuracy: float, seed: int = 0, folds: int = 3, split: str = "patient", **method: object
) -> list[Checked]:
    """A row whose predictions are right on a known fraction of images (same draw for a seed)."""
    out = []
    for fold in range(1, folds + 1):
        names, y = _images(fold)
        right = np.random.default_rng([seed, fold]).random(len(y)) < accuracy
        pred = np.where(right, y, 1 - y)
        proba = np.column_stack([1 - pred, pred]).astype(float) * 0.8 + 0.1
        patients = np.array([n.split("-")[2] for n in names])
        mags = np.array([int(n.split("-")[3]) for n in names])
        metrics = score_all(y, proba, patients, mags)
        scored = Scored(names, y, proba, patients, mags, {}, metrics)
        out.append(Checked(Path(f"{name}/fold{fold}.json"), _record(name, fold, metrics, split, **method), [], scored))
    return out


def _failed(name: str, fold: int, error: str) -> RunRecord:
    """A fold whose method raised: no metrics, timing or predictions, only the error."""
    record = _record(name, fold, None)
    return replace(record, status="failed", error=error, timing=None, warnings=None, predictions=None)


def _table(*rows: list[Checked]):
    found = sections([c for row in rows for c in row])
    assert len(found) == 1
    return found[0], frame(found[0]).set_index("method")


def test_clearly_different_rows_get_different_ranks_and_identical_rows_share_one():
    _, table = _table(
        _checked("strong", 0.95, seed=1),
        _checked("strong_twin", 0.95, seed=1),  # identical predictions
        _checked("weak", 0.3, seed=2),
        _checked("weak_twin", 0.3, seed=2),
    )
    assert table.loc["strong", "rank"] == table.loc["strong_twin", "rank"] == 1
    assert table.loc["weak", "rank"] == table.loc["weak_twin", "rank"] == 3


def test_rows_that_cannot_be_told_apart_share_a_rank():
    _, table = _table(_checked("a", 0.6, seed=3), _checked("b", 0.605, seed=3))  # one or two images apart
    assert set(table["rank"]) == {1}


def test_interval_brackets_the_mean_and_is_reproducible():
    rows = (_checked("a", 0.7, seed=5), _checked("b", 0.5, seed=6))
    _, first = _table(*rows)
    _, again = _table(*rows)
    assert first.equals(again)
    for name in ("a", "b"):
        r = first.loc[name]
        assert r["headline_lo"] < r["headline_mean"] < r["headline_hi"]
        assert r["accuracy_lo"] < r["accuracy_mean"] < r["accuracy_hi"]


def test_headline_is_the_mean_of_per_magnification_rates_not_the_pooled_rate():
    names, y = _images(1, patients=2)
    # patient 0 (benign) is right at 40X only; patient 1 (malignant) everywhere
    pred = y.copy()
    wrong = np.array([n.split("-")[2].endswith("P00") and n.split("-")[3] != "40" for n in names])
    pred[wrong] = 1 - pred[wrong]
    proba = np.column_stack([1 - pred, pred]).astype(float)
    patients = np.array([n.split("-")[2] for n in names])
    mags = np.array([int(n.split("-")[3]) for n in names])
    metrics = score_all(y, proba, patients, mags)
    scored = Scored(names, y, proba, patients, mags, {}, metrics)
    _, table = _table([Checked(Path("x"), _record("m", 1, metrics), [], scored)])
    r = table.loc["m"]
    assert r["patient_rr_mean"] == pytest.approx((2 / 8 + 1) / 2)
    assert r["40X_mean"] == 1.0 and r["100X_mean"] == 0.5
    assert r["headline_mean"] == pytest.approx((1 + 0.5 + 0.5 + 0.5) / 4)


def test_smoke_and_transductive_rows_are_set_apart_and_failures_get_one_line():
    error = "Traceback (most recent call last):\n  ...\nValueError: C must be > 0"
    failed = _failed("broken", 1, error)
    section, table = _table(
        _checked("good", 0.9, seed=7),
        _checked("quick_cnn", 0.99, seed=8, fit_info={"recipe": "quick"}),
        _checked("peeker", 0.99, seed=9, transductive=True),
        [Checked(Path("broken/fold1.json"), failed)],
    )
    assert table.loc["good", "block"] == "ranked" and table.loc["good", "rank"] == 1
    assert table.loc["quick_cnn", "block"] == "smoke" and table.loc["peeker", "block"] == "transductive"
    assert table.loc[["quick_cnn", "peeker"], "rank"].isna().all()
    text = "\n".join(render.section_markdown(section, table.reset_index(), [], set()))
    assert "- broken: 1 of 1 fold(s) failed: ValueError: C must be > 0" in text
    assert "Traceback" not in text
    assert text.index("Smoke results") < text.index("quick_cnn") and text.index("Transductive") < text.index("peeker")


def test_a_row_stopped_part_way_is_shown_apart_and_never_ranked_even_when_its_folds_score_best():
    # A run stopped after two folds (the same command resumes it): ranking its two best folds against
    # rows measured on all three would compare different test patients.
    section, table = _table(_checked("full", 0.7, seed=11), _checked("partial", 0.99, seed=12, folds=2))
    assert table.loc["full", "block"] == "ranked" and table.loc["full", "rank"] == 1
    assert table.loc["partial", "block"] == "incomplete" and table.loc[["partial"], "rank"].isna().all()
    text = "\n".join(render.section_markdown(section, table.reset_index(), [], set()))
    assert text.index("full") < text.index("Incomplete rows") < text.index("partial")


def test_a_row_whose_last_fold_failed_is_incomplete_and_its_failure_is_listed():
    # A method that cannot train on one fold's data (no rerun helps) is not ranked on the others.
    failed = _failed("fragile", 3, "ValueError: too few images")
    section, table = _table(
        _checked("full", 0.7, seed=11),
        [*_checked("fragile", 0.99, seed=12, folds=2), Checked(Path("fragile/fold3.json"), failed)],
    )
    assert table.loc["fragile", "block"] == "incomplete" and table.loc[["fragile"], "rank"].isna().all()
    text = "\n".join(render.section_markdown(section, table.reset_index(), [], set()))
    assert "folds that failed, listed below" in text
    assert "- fragile: 1 of 3 fold(s) failed: ValueError: too few images" in text


def test_records_of_different_code_are_never_one_row():
    old = _checked("m", 0.8, seed=10, folds=2, code=CodeInfo("aaaaaaaaaa", ("m.py",), "0.1.0"))
    new = _checked("m", 0.8, seed=10, folds=2, code=CodeInfo("bbbbbbbbbb", ("m.py",), "0.1.0"))
    _, table = _table(old, new)
    assert sorted(table.index) == ["m (code aaaaaaaa)", "m (code bbbbbbbb)"]
    assert (table["folds"] == 2).all()


def test_reference_rows_are_ranked_and_marked():
    _, table = _table(_checked("good", 0.95, seed=11), _checked("majority", 0.5, seed=12, family="reference"))
    assert table.loc["majority", "reference_row"] and table.loc["majority", "rank"] == 2
    assert table.loc["good", "rank"] == 1


def test_protocol_matters_puts_the_leaky_split_beside_the_patient_split():
    rows = [
        *_checked("m", 0.7, seed=13),
        *_checked("m", 0.9, seed=13, split="image-kfold"),
        *_checked("only_leaky", 0.9, seed=14, split="image-kfold"),
    ]
    found = sections(rows)
    assert [s.split.kind for s in found] == ["patient", "image-kfold"]  # the leak-free split first
    tables = {s.slug: frame(s) for s in found}
    text = "\n".join(render.protocol_matters(found, tables))
    assert "## Protocol matters" in text and "only_leaky" not in text
    line = next(x for x in text.splitlines() if x.startswith("| m "))
    honest, leaky, inflation = (float(c) for c in line.split("|")[2:5])
    assert leaky > honest and inflation == pytest.approx(leaky - honest, abs=0.11)


def _made_under(rows: list[Checked], lock: str | None, **versions: str) -> list[Checked]:
    env = Environment(versions, None, "test", "none", lock)
    return [replace(c, record=replace(c.record, environment=env)) for c in rows]


def test_each_section_names_the_lock_its_records_were_made_under():
    locked = _made_under(_checked("new", 0.8, seed=15), "c1ea1fbb6561af5b", numpy="2.4.6")
    older = _made_under(_checked("old", 0.8, seed=16), None, numpy="2.4.5", bhbench="0.1.0")
    section, table = _table(locked)
    text = "\n".join(render.section_markdown(section, table.reset_index(), [], set()))
    assert "Environment: made under requirements.lock `c1ea1fbb6561af5b` (3 records)." in text
    section, table = _table(locked, older)
    text = "\n".join(render.section_markdown(section, table.reset_index(), [], set()))
    assert (
        "Environment: requirements.lock `c1ea1fbb6561af5b` (3 records); 3 records name no lock "
        "(made before records carried one); versions: numpy 2.4.5." in text
    )


def test_a_pretrained_row_says_what_its_weights_were_trained_on():
    pretrained = _checked("probe", 0.8, seed=17, fit_info={"init": "imagenet"}, weights_data="ImageNet-1k")
    scratch = _checked("cnn", 0.8, seed=18, fit_info={"init": "random"}, weights_data="ImageNet-1k")
    section, table = _table(pretrained, scratch)
    assert table.loc["probe", "weights_data"] == "ImageNet-1k"
    text = "\n".join(render.section_markdown(section, table.reset_index(), [], set()))
    assert "probe † (init imagenet, trained on ImageNet-1k)" in text
    (line,) = [x for x in text.splitlines() if "| cnn" in x]
    assert line.split("|")[2].strip() == "cnn †"  # random init: nothing to declare


def test_the_later_metrics_have_their_values_and_intervals_from_the_predictions():
    rows = _checked("a", 0.7, seed=5)
    _, table = _table(rows)
    r = table.loc["a"]
    sensitivity = [c.scored.correct[c.scored.y == 1].mean() for c in rows]  # malignant images called malignant
    assert r["sensitivity_mean"] == pytest.approx(np.mean(sensitivity))
    brier = [np.mean((c.scored.proba[:, 1] - c.scored.y) ** 2) for c in rows]
    assert r["brier_mean"] == pytest.approx(np.mean(brier))
    for m in BOOTSTRAPPED:
        lo, mean, hi = r[f"{m.name}_lo"], r[f"{m.name}_mean"], r[f"{m.name}_hi"]
        assert 0 <= lo <= mean <= hi <= 1, m.name


def test_rows_are_ordered_by_rank_then_headline_in_the_direction_it_is_better():
    _, table = _table(_checked("a", 0.6, seed=3), _checked("b", 0.605, seed=3), _checked("c", 0.62, seed=4))
    assert set(table["rank"]) == {1}
    assert HEADLINE.metric.higher_is_better
    assert list(table["headline_mean"]) == sorted(table["headline_mean"], reverse=True)


def _paired(mag_of_last: int) -> tuple[float, float, float, float]:
    """Row 0 right on every image; row 1 wrong on patient 0 and on the last patient's one image. Twelve
    patients with four 100X images each; the last patient's image is at magnification `mag_of_last`."""
    from bhbench.metric import FoldOutcomes

    patients = np.repeat(np.arange(12), 4)
    mags = np.ones(len(patients), dtype=int)  # 100X
    mags[-1] = mag_of_last
    y = np.zeros(len(patients), dtype=int)
    proba = np.zeros((2, len(patients), 2))
    proba[0, :, 0] = 1.0
    proba[1, :, 0] = 1.0
    proba[1, (patients == 0) | (np.arange(len(patients)) == len(patients) - 1)] = [0.0, 1.0]
    folds = [FoldOutcomes(patients, mags, y, proba, np.ones(2, dtype=bool))]
    return scoring.paired_difference(scoring.bootstrap(folds, seed=1), 0, 1)


def test_the_observed_difference_lies_in_its_interval():
    """Every magnification held by several patients: the draws are of the observed statistic."""
    diff, lo, hi, p = _paired(mag_of_last=1)
    assert diff == pytest.approx(1 / 12 + (1 / 4) / 12) and lo < diff < hi and p < 1
