"""The RBF SVM with its Gram matrix made by one matrix product (imported only when an SVM is built:
importing scikit-learn costs over a second and `bhbench list` must stay fast).

libsvm evaluates exp(-gamma |x - z|^2) pair by pair as its solver asks, a dot product each; at
BreaKHis size (~5,500 training images of up to 1,352 features) that is ~95% of a fit, and a run
fits 31 SVMs per method and fold (inner CV, calibration folds, final fit). scikit-learn's
`rbf_kernel` makes the same matrix (|x|^2 + |z|^2 - 2 x.z, libsvm's formula, by BLAS) in a
fraction of the time, and libsvm solves the same problem on it (`kernel="precomputed"`): the same
support vectors, decision values equal up to float rounding (tests/test_handcrafted.py). The price
is memory: the n x n matrix, 245 MB at 5,536 images.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.svm import SVC


class RbfSVC(ClassifierMixin, BaseEstimator):
    """`SVC(kernel="rbf", C=C, gamma=gamma)`, decisions only (probabilities come from calibration)."""

    def __init__(self, C: float = 1.0, gamma: float = 1.0, random_state: int | None = None):
        self.C = C
        self.gamma = gamma
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> RbfSVC:
        self.X_fit_ = np.asarray(X, dtype=float)  # a precomputed kernel's columns are all training images
        svc = SVC(C=self.C, kernel="precomputed", random_state=self.random_state)
        self.svc_ = svc.fit(rbf_kernel(self.X_fit_, gamma=self.gamma), y)
        self.classes_ = self.svc_.classes_
        return self

    def _kernel(self, X: np.ndarray) -> np.ndarray:
        return rbf_kernel(np.asarray(X, dtype=float), self.X_fit_, gamma=self.gamma)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return self.svc_.decision_function(self._kernel(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.svc_.predict(self._kernel(X))
