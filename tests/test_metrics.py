"""Metrics against hand-computed examples, and their invariants (property-based)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bhbench.metrics import mean_std, patient_recognition_rate, score, score_all


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
    assert s["accuracy"] == pytest.approx(3 / 5)
    assert s["patient_rr"] == pytest.approx((3 / 4 + 0 / 1) / 2)
    assert s["balanced_accuracy"] == pytest.approx((3 / 4 + 0) / 2)
    assert s["n_patients"] == 2 and s["n_images"] == 5


def test_auc_uses_malignant_probability():
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]])
    assert score(y, proba, np.arange(4))["auc"] == pytest.approx(0.75)


def test_subtype_auc_is_macro_over_present_classes_and_nan_when_undefined():
    y = np.array([0, 1, 2, 2])
    proba = np.eye(8)[[0, 1, 2, 2]] * 0.9 + 0.1 / 8
    assert score(y, proba, np.arange(4))["auc"] == pytest.approx(1.0)
    assert math.isnan(score(np.array([1, 1]), onehot(np.array([1, 0])), np.arange(2))["auc"])


def test_per_magnification_scores_and_magnification_accuracy():
    y = np.array([0, 1, 0, 1])
    mags = np.array([40, 40, 400, 400])
    aux = {"magnification": np.eye(4)[[0, 0, 3, 2]]}
    out = score_all(y, onehot(np.array([0, 1, 1, 1])), np.array(["a", "b", "a", "b"]), mags, aux)
    assert out["by_magnification"]["40"]["accuracy"] == 1.0
    assert out["by_magnification"]["400"]["accuracy"] == 0.5
    assert out["overall"]["magnification_accuracy"] == 0.75


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
    assert patient_recognition_rate(np.ones(len(y), bool), np.array(patients)) == 1.0
    s = score(y, onehot(y), np.array(patients))
    assert s["patient_rr"] == 1.0 and s["accuracy"] == 1.0


@given(cases)
@settings(max_examples=60, deadline=None)
def test_permuting_images_changes_no_metric(case):
    y, pred, patients, rnd = case
    y, pred, patients = np.array(y), np.array(pred), np.array(patients)
    order = list(range(len(y)))
    rnd.shuffle(order)
    a = score(y, onehot(pred), patients)
    b = score(y[order], onehot(pred)[order], patients[order])
    for key in a:
        assert (math.isnan(a[key]) and math.isnan(b[key])) or a[key] == pytest.approx(b[key])


@given(cases)
@settings(max_examples=60, deadline=None)
def test_patient_rate_equals_accuracy_with_one_image_per_patient(case):
    y, pred, _, _ = case
    s = score(np.array(y), onehot(np.array(pred)), np.arange(len(y)))
    assert s["patient_rr"] == pytest.approx(s["accuracy"])
