"""1-nearest neighbour with a graded score (imported only when a 1-NN model is built: importing
scikit-learn costs over a second and `bhbench list` must stay fast)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.neighbors import NearestNeighbors


class NearestPerClass(ClassifierMixin, BaseEstimator):
    """The distance d_c to the nearest training image of each class c gives P(c) proportional to
    1/d_c. The most probable class is the nearest neighbour's, so the decisions are plain 1-NN's,
    but the scores rank images (for two classes P(malignant) = d_benign / (d_benign +
    d_malignant)), so AUC is no longer balanced accuracy. An exact match takes all the probability."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> NearestPerClass:
        self.classes_ = np.unique(y)
        self.index_ = [NearestNeighbors(n_neighbors=1).fit(X[y == c]) for c in self.classes_]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        d = np.column_stack([nn.kneighbors(X)[0][:, 0] for nn in self.index_])
        exact = d <= 1e-12
        inverse = np.where(exact.any(1, keepdims=True), exact.astype(float), 1 / np.where(exact, 1.0, d))
        return inverse / inverse.sum(1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(1)]
