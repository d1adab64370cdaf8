"""Reference rows measured by the harness, so every leaderboard row can be read against chance.

`majority` always predicts the training set's most frequent class, with the training class
frequencies as its probabilities. `stratified` guesses each image's class at random with those
frequencies; the guess is seeded by the image's pixels and `seed`, so it does not depend on the
order or the company of the test images, and a rerun gives the same guesses."""

from __future__ import annotations

import hashlib
from typing import Annotated

import numpy as np

from bhbench import Interval, Method, TestSet, TrainSet, check_is_fitted, register

REFERENCE = "bhbench reference row (scikit-learn's DummyClassifier strategies)"


class _Prior(Method):
    prior_: np.ndarray

    def fit(self, train: TrainSet) -> _Prior:
        counts = np.bincount(np.asarray(train.y, dtype=int), minlength=train.n_classes).astype(float)
        self.prior_ = counts / counts.sum()
        return self

    def fit_info(self) -> dict:
        return {"training_prior": [round(float(p), 6) for p in self.prior_]}


@register("majority", family="reference", reference=REFERENCE)
class Majority(_Prior):
    """Training majority class for every image; the training prior as probability."""

    def __init__(self) -> None:
        pass

    def predict_proba(self, test: TestSet) -> np.ndarray:
        check_is_fitted(self)
        return np.tile(self.prior_, (len(test), 1))


@register("stratified", family="reference", reference=REFERENCE)
class Stratified(_Prior):
    """A random class per image at the training prior (seeded by the image and `seed`)."""

    def __init__(self, seed: Annotated[int, Interval(0, None)] = 0) -> None:
        self.seed = seed

    def predict_proba(self, test: TestSet) -> np.ndarray:
        check_is_fitted(self)
        cumulative = np.cumsum(self.prior_)
        out = np.zeros((len(test), test.n_classes))
        for i in range(len(test)):
            digest = hashlib.sha256(f"{self.seed}:".encode() + test.image(i).tobytes()).digest()
            u = int.from_bytes(digest[:8], "big") / 2**64
            out[i, min(int(np.searchsorted(cumulative, u, side="right")), test.n_classes - 1)] = 1.0
        return out
