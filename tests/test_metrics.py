"""Metrics against hand-computed examples, and their invariants (property-based)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score, roc_auc_score

from bhbench.metric import BOOTSTRAPPED, PERCENT, PLAIN, Draws, Sample, codes, patient_rate
from bhbench.scoring import (
    FoldOutcomes,
    bootstrap,
    fold_statistics,
    holm,
    mean_std,
    paired_difference,
    score,
    score_all,
)


def onehot(pred, k=2):
    p = np.full((len(pred), k), 0.1 / (k - 1))
    p[np.arange(len(pred)), pred] = 0.9
    return p


def test_patient_rate_and_accuracy_differ_when_patients_have_different_sizes():
    # patient a: 4 images, 3 right; patient b: 1 image, wrong
    y = np.array([1, 1, 1, 1, 0])
    pred = np.array([1, 1, 1, 0, 1])
    patients = np.array(["a", "a", "a", "a", "b"])
    s = score(y, onehot(pred), patients)
    assert s.accuracy == pytest.approx(3 / 5)
    assert s.patient_rr == pytest.approx((3 / 4 + 0 / 1) / 2)
    assert s.balanced_accuracy == pytest.approx((3 / 4 + 0) / 2)
    assert s.n_patients == 2 and s.n_images == 5


def test_auc_uses_malignant_probability():
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]])
    assert score(y, proba, np.arange(4)).auc == pytest.approx(0.75)


def test_subtype_auc_is_macro_over_present_classes_and_nan_when_undefined():
    y = np.array([0, 1, 2, 2])
    proba = np.eye(8)[[0, 1, 2, 2]] * 0.9 + 0.1 / 8
    assert score(y, proba, np.arange(4)).auc == pytest.approx(1.0)
    assert math.isnan(score(np.array([1, 1]), onehot(np.array([1, 0])), np.arange(2)).auc)


def test_per_magnification_scores_and_magnification_accuracy():
    y = np.array([0, 1, 0, 1])
    mags = np.array([40, 40, 400, 400])
    aux = {"magnification": np.eye(4)[[0, 0, 3, 2]]}
    out = score_all(y, onehot(np.array([0, 1, 1, 1])), np.array(["a", "b", "a", "b"]), mags, aux)
    assert out.by_magnification["40"].accuracy == 1.0
    assert out.by_magnification["400"].accuracy == 0.5
    assert out.overall.magnification_accuracy == 0.75
    # patient a: both magnifications right; patient b: 40X right, 400X called 200X
    assert out.overall.magnification_patient_rr == pytest.approx((1 + 0.5) / 2)


def test_mean_std_ignores_nan():
    assert mean_std([0.5, math.nan, 0.7]) == pytest.approx((0.6, 0.1))


cases = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
        st.lists(st.integers(0, 5), min_size=n, max_size=n),
        st.randoms(use_true_random=False),
    )
)


@given(cases)
@settings(max_examples=60, deadline=None)
def test_perfect_predictions_score_one(case):
    y, _, patients, _ = case
    y = np.array(y)
    assert patient_rate(np.ones(len(y), bool), codes(np.array(patients))) == 1.0
    s = score(y, onehot(y), np.array(patients))
    assert s.patient_rr == 1.0 and s.accuracy == 1.0


@given(cases)
@settings(max_examples=60, deadline=None)
def test_permuting_images_changes_no_metric(case):
    y, pred, patients, rnd = case
    y, pred, patients = np.array(y), np.array(pred), np.array(patients)
    order = list(range(len(y)))
    rnd.shuffle(order)
    a = score(y, onehot(pred), patients).to_json()
    b = score(y[order], onehot(pred)[order], patients[order]).to_json()
    for key in a:
        assert (math.isnan(a[key]) and math.isnan(b[key])) or a[key] == pytest.approx(b[key])


@given(cases)
@settings(max_examples=60, deadline=None)
def test_patient_rate_equals_accuracy_with_one_image_per_patient(case):
    y, pred, _, _ = case
    s = score(np.array(y), onehot(np.array(pred)), np.arange(len(y)))
    assert s.patient_rr == pytest.approx(s.accuracy)


def test_holm_adjusts_in_order_and_keeps_nan():
    adjusted = holm(np.array([0.01, 0.04, np.nan, 0.03]))
    assert adjusted[0] == pytest.approx(0.03)  # 3 x 0.01
    assert adjusted[3] == pytest.approx(0.06)  # 2 x 0.03
    assert adjusted[1] == pytest.approx(0.06)  # max(1 x 0.04, the previous)
    assert math.isnan(adjusted[2])


def _scores(y: np.ndarray, rnd, k: int) -> np.ndarray:
    """Probabilities that mostly favour the true class, on a coarse grid so that ties occur."""
    raw = np.array([[rnd.randint(0, 4) + 3 * (c == t) for c in range(k)] for t in y], dtype=float)
    return raw / raw.sum(1, keepdims=True)


@given(cases, st.sampled_from([2, 8]))
@settings(max_examples=40, deadline=None)
def test_bootstrap_point_values_are_the_harness_metrics(case, k):
    y, _, patients, rnd = case
    y = np.array(y if k == 2 else [rnd.randint(0, k - 1) for _ in y])
    patients = np.array(patients)
    proba = _scores(y, rnd, k)
    mags = np.array([40, 100, 200, 400])[patients % 4]
    fold = FoldOutcomes(np.unique(patients, return_inverse=True)[1], patients % 4, y, proba[None], np.ones(1, bool))
    stats = fold_statistics(fold, np.ones((1, len(np.unique(patients)))))
    expected = score_all(y, proba, patients, mags)
    for name in (m.name for m in BOOTSTRAPPED if fold.task in m.tasks):
        want = getattr(expected.overall, name)
        assert (math.isnan(want) and math.isnan(stats[name][0, 0])) or stats[name][0, 0] == pytest.approx(want)
    per_mag = [v.patient_rr for v in expected.by_magnification.values()]
    assert stats["headline"][0, 0] == pytest.approx(np.mean(per_mag))


@pytest.mark.parametrize("k", [2, 8])
def test_a_bootstrap_draw_weighs_each_image_by_its_patients_multiplicity(k):
    """A draw's AUC and macro F1 are scikit-learn's with every image weighted by how often its patient
    was drawn (the bootstrap computes them from per-patient tallies instead of resampled images)."""
    import random

    rng = np.random.default_rng(k)
    patients = rng.integers(0, 12, 300)
    y = (patients + rng.integers(0, 2, 300)) % k  # classes spread over patients, several per patient
    proba = _scores(y, random.Random(k), k)
    fold = FoldOutcomes(patients, patients % 4, y, proba[None], np.ones(1, bool))
    weights = rng.multinomial(12, np.full(12, 1 / 12), size=50).astype(float)
    stats = fold_statistics(fold, weights)
    checked = 0
    for b, w in enumerate(weights):
        image_w = w[patients]
        keep = image_w > 0
        yk, pk, wk = y[keep], proba[keep], image_w[keep]
        present = np.unique(yk)
        f1 = f1_score(yk, pk.argmax(1), labels=present, average="macro", sample_weight=wk, zero_division=0)
        assert stats["f1_macro"][b, 0] == pytest.approx(f1)
        if k == 2 and len(present) == 2:
            assert stats["auc"][b, 0] == pytest.approx(roc_auc_score(yk, pk[:, 1], sample_weight=wk))
            checked += 1
        elif k > 2:
            per_class = [roc_auc_score(yk == c, pk[:, c], sample_weight=wk) for c in present if (yk != c).any()]
            assert stats["auc"][b, 0] == pytest.approx(np.mean(per_class))
            checked += 1
    assert checked > 40


def _fold(correct: np.ndarray, patients: int = 10) -> FoldOutcomes:
    n = correct.shape[1]
    pat = np.arange(n) % patients
    y = np.arange(n) % 2
    proba = np.eye(2)[np.where(correct, y, 1 - y)]  # (rows, images, 2): right where `correct`
    return FoldOutcomes(pat, pat % 4, y, proba, np.ones(len(correct), bool))


def test_bootstrap_is_seeded_and_a_paired_difference_has_the_right_sign():
    rng = np.random.default_rng(0)
    better = rng.random(200) < 0.9
    worse = better & (rng.random(200) < 0.5)
    folds = [_fold(np.stack([better, worse])) for _ in range(3)]
    a, b = bootstrap(folds, resamples=500, seed=1), bootstrap(folds, resamples=500, seed=1)
    assert np.array_equal(a.draws["headline"], b.draws["headline"])
    diff, lo, hi, p = paired_difference(a, 0, 1)
    assert 0 < lo < diff < hi and p < 0.01
    assert paired_difference(a, 0, 0)[0] == 0 and paired_difference(a, 0, 0)[3] == 1.0


def _sparse_magnification_fold() -> FoldOutcomes:
    """Like a fold of the 283-image sample's image-level split: ten patients with five 100X images
    each, one patient with a single 40X image. Row 0 is right on the 40X image, row 1 wrong."""
    patients = np.array([p for p in range(10) for _ in range(5)] + [10])
    mags = np.array([1] * 50 + [0])
    y = patients % 2
    right = np.ones((2, 51), bool)
    right[1, -1] = False
    right[:, ::7] = False  # a few 100X mistakes, the same for both rows
    proba = np.eye(2)[np.where(right, y, 1 - y)]
    return FoldOutcomes(patients, mags, y, proba, np.ones(2, bool))


def test_every_draw_keeps_every_magnification_of_the_fold(monkeypatch):
    fold = _sparse_magnification_fold()
    boot = bootstrap([fold], resamples=2000, seed=3)
    assert not np.isnan(boot.draws["40X"]).any()  # the 40X patient is in every draw
    diff, lo, hi, _ = paired_difference(boot, 0, 1)
    assert diff == pytest.approx(0.5) and lo <= diff <= hi  # 40X: 1 vs 0, 100X alike: half of that
    centre = np.mean(boot.draws["headline"][:, 0] - boot.draws["headline"][:, 1])
    assert centre == pytest.approx(diff, abs=0.01)
    # Drawn freely (one stratum), about a third of the draws lose the 40X patient and average 100X only.
    monkeypatch.setattr("bhbench.scoring.strata", lambda f: (0,) * f.n_patients)
    free = bootstrap([fold], resamples=2000, seed=3)
    assert 0.25 < np.isnan(free.draws["40X"]).mean() < 0.45
    assert np.mean(free.draws["headline"][:, 0] - free.draws["headline"][:, 1]) < diff - 0.1


def test_sensitivity_specificity_brier_and_calibration_by_hand():
    # a and b malignant, c and d benign; b's two images split one each way, and so do c's
    patients = np.array(["a", "a", "a", "b", "b", "c", "c", "d"])
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0])
    p = np.array([0.95, 0.85, 0.25, 0.65, 0.45, 0.75, 0.15, 0.05])
    s = score(y, np.column_stack([1 - p, p]), patients)
    assert s.sensitivity == pytest.approx(3 / 5) and s.specificity == pytest.approx(2 / 3)
    assert s.patient_sensitivity == 1.0  # a by majority, b by a tie (referred)
    assert s.patient_specificity == 0.5  # c's tie is not cleared, d is
    assert s.brier == pytest.approx(1.6 / 8)
    # top-class probability and whether it is right, by bin: 0.95 0.95 | 0.85 0.85 | 0.75 0.75 wrong |
    # 0.65 | 0.55 wrong: |2 - 1.9| + |2 - 1.7| + |0 - 1.5| + |1 - 0.65| + |0 - 0.55| over 8 images
    assert s.ece == pytest.approx(2.8 / 8)
    three = score(np.array([0, 2]), np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]), np.array(["a", "b"]))
    assert three.brier == pytest.approx((0.25 + 0.09 + 0.04 + 0.01 + 0.01 + 0.04) / 2)  # summed over classes
    assert three.sensitivity is None and three.patient_specificity is None  # binary metrics only


@pytest.mark.parametrize("k", [2, 3, 8])
def test_numpy_auc_is_scikit_learns_with_ties(k):
    rng = np.random.default_rng(k)
    for _ in range(40):
        n = int(rng.integers(2, 300))
        y = rng.integers(0, k, n)
        raw = rng.integers(1, 5, (n, k)).astype(float)  # a coarse grid: many ties
        proba = raw / raw.sum(1, keepdims=True)
        got = score(y, proba, np.arange(n)).auc
        if k == 2:
            want = roc_auc_score(y, proba[:, 1]) if len(np.unique(y)) == 2 else math.nan
        else:
            per_class = [roc_auc_score(y == c, proba[:, c]) for c in range(k) if 0 < (y == c).sum() < n]
            want = np.mean(per_class) if per_class else math.nan
        assert (math.isnan(got) and math.isnan(want)) or abs(got - want) < 1e-12


@pytest.mark.parametrize("k", [2, 8])
def test_every_bootstrap_form_is_its_metric_on_the_drawn_patients(k):
    """Each declared metric's vectorised form, under a draw, equals its per-fold function on the images
    of the drawn patients, a patient drawn twice counting as two patients."""
    import random

    rng = np.random.default_rng(10 + k)
    patients = rng.integers(0, 9, 150)
    y = (patients + rng.integers(0, 2, 150) * (k > 2)) % k  # binary: one class per patient
    proba = np.stack([_scores(y, random.Random(seed), k) for seed in (1, 2)])  # two rows
    fold = FoldOutcomes(patients, patients % 4, y, proba, np.ones(2, bool))
    weights = rng.multinomial(9, np.full(9, 1 / 9), size=25).astype(float)
    draws = Draws(fold, weights)
    metrics = [m for m in BOOTSTRAPPED if fold.task in m.tasks]
    got = {m.name: m.draws(draws) for m in metrics}
    for b, w in enumerate(weights):
        copies = [(p, c) for p in range(9) for c in range(int(w[p]))]
        idx = np.concatenate([np.flatnonzero(patients == p) for p, _ in copies])
        who = np.concatenate([np.full((patients == p).sum(), i) for i, (p, _) in enumerate(copies)])
        for r in range(2):
            sample = Sample(y[idx], proba[r][idx], codes(who))
            for m in metrics:
                want = m.value(sample)
                assert (math.isnan(want) and math.isnan(got[m.name][b, r])) or got[m.name][b, r] == pytest.approx(want)


def test_one_format_for_every_number():
    assert PERCENT.pm(0.5, 0.1, folds=3) == "50.0 ± 10.0" and PERCENT.pm(0.5, 0.0, folds=1) == "50.0"
    assert PLAIN.pm(0.25, 0.01, folds=5) == "0.250 ± 0.010" and PERCENT.pm(math.nan, math.nan, folds=5) == "–"
    assert PERCENT.interval(0.1, 0.25) == "[10.0, 25.0]" and PERCENT.interval(math.nan, 0.2) == "–"
