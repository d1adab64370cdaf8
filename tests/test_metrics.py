"""Metrics against hand-computed examples, and their invariants (property-based)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score, roc_auc_score

from bhbench.metric import codes, patient_rate
from bhbench.metrics import (
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
    for name in ("patient_rr", "accuracy", "balanced_accuracy", "f1_macro", "auc"):
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
