"""The reference rows (majority, stratified) and the graded 1-NN score."""

from __future__ import annotations

import numpy as np
import pytest
from builders import train_set

from bhbench import TestSet, TrainSet, checks, registry


@pytest.mark.parametrize("name", ["majority", "stratified"])
def test_reference_methods_pass_the_check_battery(name):
    results = checks.Battery(registry.get(name)).run_all()
    assert all(r.passed for r in results), [r.line() for r in results if not r.passed]


def _sets(n_train: int = 40, n_test: int = 200) -> tuple[TrainSet, TestSet]:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (4, 4, 3), dtype=np.uint8) for _ in range(n_train + n_test)]
    y = np.array([1] * 30 + [0] * 10)
    return train_set(y, images[:n_train]), TestSet.build("binary", images=images[n_train:])


def test_majority_predicts_the_training_prior_for_every_image():
    train, test = _sets()
    proba = registry.create("majority").fit(train).predict_proba(test)
    assert np.allclose(proba, [0.25, 0.75])


def test_stratified_guesses_at_the_training_prior_independently_of_order():
    train, test = _sets()
    method = registry.create("stratified", seed=3).fit(train)
    proba = method.predict_proba(test)
    assert set(np.unique(proba)) == {0.0, 1.0}
    assert 0.6 < proba[:, 1].mean() < 0.9  # prior 0.75, 200 guesses
    reversed_test = TestSet.build("binary", images=[test.image(i) for i in reversed(range(len(test)))])
    assert np.array_equal(method.predict_proba(reversed_test), proba[::-1])
    other = registry.create("stratified", seed=4).fit(train).predict_proba(test)
    assert not np.array_equal(other, proba)


def test_graded_1nn_keeps_plain_1nn_decisions_but_ranks_images():
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from bhbench_baselines.handcrafted.classifiers import CLASSIFIERS

    rng = np.random.default_rng(0)
    X, Xt = rng.normal(size=(300, 10)), rng.normal(size=(200, 10))
    y, yt = (X[:, 0] + rng.normal(size=300) > 0).astype(int), (Xt[:, 0] + rng.normal(size=200) > 0).astype(int)
    graded = CLASSIFIERS["1nn"].build({}, 0, True).fit(X, y).predict_proba(Xt)
    plain = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=1)).fit(X, y).predict(Xt)
    assert np.array_equal(graded.argmax(1), plain)
    assert np.allclose(graded.sum(1), 1) and len(np.unique(graded[:, 1])) > 100
    assert roc_auc_score(yt, graded[:, 1]) != pytest.approx(balanced_accuracy_score(yt, plain), abs=1e-3)
