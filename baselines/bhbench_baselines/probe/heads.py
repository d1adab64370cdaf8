"""The probe heads on frozen embeddings, in the hand-crafted baselines' classifier form, so they are
tuned the same way: a small grid, scored by patient-grouped CV on the training set only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bhbench_baselines.handcrafted.classifiers import Classifier, Settings

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

# scikit-learn is imported inside the builders, so registering the probes stays fast.


def _logistic(s: Settings, seed: int, final: bool) -> Pipeline:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=s["C"], max_iter=2000, random_state=seed))


def _knn(s: Settings, seed: int, final: bool) -> Pipeline:
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    # Euclidean distance between L2-normalised embeddings ranks neighbours as cosine similarity does,
    # the usual k-NN probe metric for self-supervised features.
    return make_pipeline(Normalizer(), KNeighborsClassifier(n_neighbors=s["k"]))


def _linear_svm(s: Settings, seed: int, final: bool) -> Pipeline:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    svm = LinearSVC(C=s["C"], max_iter=10_000, random_state=seed)  # 1,000 did not converge on 64 embeddings
    if not final:  # the search only needs decisions
        return make_pipeline(StandardScaler(), svm)
    # Platt scaling on out-of-fold decision values, as the hand-crafted SVM does.
    return make_pipeline(StandardScaler(), CalibratedClassifierCV(svm, method="sigmoid", cv=3, ensemble=False))


HEADS: dict[str, Classifier] = {
    c.name: c
    for c in (
        Classifier(
            "logreg",
            "logistic regression",
            {"C": None},
            lambda d: {"C": (1.0, 0.1, 0.01, 10.0)},
            _logistic,
        ),
        Classifier(
            "knn",
            "k-nearest neighbours (cosine)",
            {"k": None},
            lambda d: {"k": (5, 1, 11, 21)},
            _knn,
        ),
        Classifier(
            "svm",
            "linear SVM",
            {"C": None},
            lambda d: {"C": (0.1, 0.01, 1.0)},
            _linear_svm,
            min_class_size=3,  # the calibration folds need every class in each
        ),
    )
}
