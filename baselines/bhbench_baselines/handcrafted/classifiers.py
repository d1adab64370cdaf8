"""The four classifiers of Spanhol et al. on standardised features, tuned by group-aware CV.

Each classifier has settings (constructor parameters of the methods). A setting left at None is
chosen by cross-validation on the training set only, over a small grid, with folds grouped by
patient (StratifiedGroupKFold): no patient is ever on both sides of an inner split. The first grid
value of each setting is the fallback when there are too few patients to cross-validate, and wins
ties. What was chosen, and how, is returned for the record.
"""

from __future__ import annotations

import itertools
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

from bhbench import Interval
from bhbench.errors import UserError

Settings = dict[str, Any]


@dataclass(frozen=True)
class Classifier:
    name: str
    title: str
    settings: Mapping[str, Any]  # defaults; None means "choose by inner CV from the grid"
    grid: Callable[[int], Mapping[str, Sequence[Any]]]  # candidates given the feature dimension
    build: Callable[[Settings, int, bool], Pipeline]  # (settings, seed, final fit?) -> pipeline
    min_class_size: int = 1  # classes with fewer training images are left out of the fit
    # What each setting allows, as the methods' signatures declare it (None: choose by inner CV).
    annotations: Mapping[str, Any] = field(default_factory=dict)
    space: Callable[[Any], Settings] | None = None  # `bhbench tune` search space (optuna trial -> settings)


# scikit-learn is imported inside the builders: importing it costs over a second, and `bhbench list`
# imports this module to register the methods.


def _one_nn(s: Settings, seed: int, final: bool) -> Pipeline:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from bhbench_baselines.handcrafted.nearest import NearestPerClass

    return make_pipeline(StandardScaler(), NearestPerClass())


def _qda(s: Settings, seed: int, final: bool) -> Pipeline:
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # Per-class covariances of 162..1352-d features from tens of images are singular. Projecting
    # on fewer principal components than the smallest class has images keeps every class's
    # estimate full-dimensional, and reg_param shrinks it towards the identity (in standardised
    # feature units; PCA is a rotation), which also covers classes of near-identical vectors.
    return make_pipeline(
        StandardScaler(),
        PCA(n_components=s["pca_components"], svd_solver="full"),
        QuadraticDiscriminantAnalysis(reg_param=s["reg_param"]),
    )


def _svm(s: Settings, seed: int, final: bool) -> Pipeline:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from bhbench_baselines.handcrafted.kernel_svm import RbfSVC

    svc = RbfSVC(C=s["C"], gamma=s["gamma"], random_state=seed)
    if not final:  # the search only needs decisions
        return make_pipeline(StandardScaler(), svc)
    # Platt scaling on 3-fold out-of-fold decision values, as libsvm's probability=True did
    # (scikit-learn 1.9 deprecates that flag for this). The folds are image-level: grouped by
    # patient, a subtype with one or two patients would vanish from some training folds.
    return make_pipeline(StandardScaler(), CalibratedClassifierCV(svc, method="sigmoid", cv=3, ensemble=False))


def _forest(s: Settings, seed: int, final: bool) -> Pipeline:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    forest = RandomForestClassifier(
        n_estimators=s["n_estimators"],
        max_features=s["max_features"],
        min_samples_leaf=s["min_samples_leaf"],
        random_state=seed,
    )
    return make_pipeline(StandardScaler(), forest)


_COUNT = Annotated[int, Interval(1, None)]
_POSITIVE = Annotated[float, Interval(0, None, closed="neither")]

CLASSIFIERS: dict[str, Classifier] = {
    c.name: c
    for c in (
        Classifier("1nn", "1-nearest neighbour", {}, lambda d: {}, _one_nn),
        Classifier(
            "qda",
            "regularised QDA",
            {"pca_components": 32, "reg_param": None},
            lambda d: {"reg_param": (0.1, 0.01, 0.5, 0.9)},
            _qda,
            min_class_size=2,
            annotations={"pca_components": _COUNT, "reg_param": Annotated[float, Interval(0, 1)] | None},
            space=lambda t: {"reg_param": t.suggest_float("reg_param", 1e-3, 0.99, log=True)},
        ),
        Classifier(
            "svm",
            "RBF SVM",
            {"C": None, "gamma": None},
            # gamma in units of 1/d, scikit-learn's "scale" for standardised features
            lambda d: {"C": (10.0, 1.0, 100.0), "gamma": tuple(g / d for g in (1.0, 0.1, 10.0))},
            _svm,
            min_class_size=3,  # the calibration folds need every class in each
            annotations={"C": _POSITIVE | None, "gamma": _POSITIVE | None},
            # gamma spans 1/d for the descriptors' d = 10..1352 standardised features, with room either side
            space=lambda t: {
                "C": t.suggest_float("C", 0.1, 1000.0, log=True),
                "gamma": t.suggest_float("gamma", 1e-5, 0.1, log=True),
            },
        ),
        Classifier(
            "rf",
            "random forest",
            {"n_estimators": 100, "max_features": "sqrt", "min_samples_leaf": None},
            lambda d: {"min_samples_leaf": (1, 5)},
            _forest,
            annotations={
                "n_estimators": _COUNT,
                "max_features": Literal["sqrt", "log2"] | Annotated[float, Interval(0, 1, closed="right")],
                "min_samples_leaf": _COUNT | None,
            },
            space=lambda t: {
                "n_estimators": t.suggest_int("n_estimators", 50, 400, log=True),
                "max_features": t.suggest_categorical("max_features", ["sqrt", "log2"]),
                "min_samples_leaf": t.suggest_int("min_samples_leaf", 1, 10),
            },
        ),
    )
}


@dataclass
class FittedClassifier:
    """A fitted pipeline, or the one class seen in training when there was only one."""

    pipeline: Pipeline | None
    constant: int | None = None

    def predict_proba(self, X: np.ndarray, n_classes: int) -> np.ndarray:
        """Probabilities for all `n_classes` of the task, zero for classes absent from training."""
        out = np.zeros((len(X), n_classes))
        if self.pipeline is None:
            out[:, self.constant] = 1.0
        else:
            out[:, self.pipeline.classes_] = self.pipeline.predict_proba(X)
        return out


def fit_classifier(
    clf: Classifier,
    settings: Settings,
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    seed: int,
    cv_folds: int,
) -> tuple[FittedClassifier, dict[str, Any]]:
    """Choose the unset settings by patient-grouped CV on (X, y), fit on all of it; returns the
    model and what the record should keep (chosen settings, searched grid, CV scores, notes)."""
    grid = clf.grid(X.shape[1])
    unsettable = [k for k, v in settings.items() if v is None and k not in grid]
    if unsettable:
        raise UserError(f"{clf.name}: {', '.join(unsettable)} must be set (no grid to choose from)")
    info: dict[str, Any] = {"classifier": clf.name}
    labels, counts = np.unique(y, return_counts=True)
    kept = labels[counts >= clf.min_class_size]
    if len(kept) < len(labels):
        info["classes_left_out"] = [int(c) for c in labels if c not in kept]
        rows = np.isin(y, kept)
        X, y, groups = X[rows], y[rows], groups[rows]
    if len(kept) < 2:
        only = int(kept[0]) if len(kept) else int(labels[np.argmax(counts)])
        info["note"] = f"only class {only} can be learned; it is predicted with probability 1"
        return FittedClassifier(None, only), info

    fixed = {k: v for k, v in settings.items() if v is not None}
    grid = {k: v for k, v in grid.items() if k not in fixed}
    splits = _inner_splits(y, groups, seed, cv_folds, info) if grid else []
    if "pca_components" in fixed:  # fewer components than any class of any fit has images
        fits = [y[train] for train, _ in splits] + [y]
        fixed["pca_components"] = max(1, min(fixed["pca_components"], X.shape[1], *map(_smallest_class, fits)) - 1)
    chosen = _search(clf, fixed, grid, X, y, splits, seed, info)
    pipeline = clf.build({**fixed, **chosen}, seed, True).fit(X, y)
    info["settings"] = _plain({**fixed, **chosen})
    return FittedClassifier(pipeline), info


def _smallest_class(y: np.ndarray) -> int:
    """Images in the smallest class that has at least two (a one-image class fails that fit anyway)."""
    counts = np.unique(y, return_counts=True)[1]
    return int(counts[counts >= 2].min()) if (counts >= 2).any() else 1


def _inner_splits(
    y: np.ndarray, groups: np.ndarray, seed: int, cv_folds: int, info: dict[str, Any]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Patient-grouped, class-stratified folds of the training set: `cv_folds` of them, or fewer when
    there are fewer patients, or when even the largest class has fewer images than folds
    (StratifiedGroupKFold refuses that: a small per-magnification training set of the official
    folds met it); none when fewer than 2 folds remain."""
    from sklearn.model_selection import StratifiedGroupKFold

    patients, largest = len(np.unique(groups)), int(np.unique(y, return_counts=True)[1].max())
    folds = min(cv_folds, patients, largest)
    if folds < 2:
        why = f"{patients} training patient(s)" if patients < 2 else f"the largest class has {largest} image(s)"
        info["search"] = f"skipped: {why}, cannot make 2 folds; first grid values used"
        return []
    if folds < min(cv_folds, patients):
        info["search_folds"] = f"{folds} instead of {cv_folds}: the largest class has {largest} images"
    with warnings.catch_warnings():  # "a class has fewer patients than folds" is expected here
        warnings.simplefilter("ignore", UserWarning)
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(len(y)), y, groups))


def _search(
    clf: Classifier,
    fixed: Settings,
    grid: Mapping[str, Sequence[Any]],
    X: np.ndarray,
    y: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    seed: int,
    info: dict[str, Any],
) -> Settings:
    """Best grid point by mean accuracy over the inner splits; fills `info` with the story."""
    from joblib import Memory
    from sklearn.model_selection import cross_val_score

    fallback = {k: v[0] for k, v in grid.items()}
    if not splits:
        return fallback
    candidates = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    scores = []
    # The candidates share their pipeline's first steps where those do not depend on the grid (the
    # scaler; QDA's PCA, which made QDA's search 3x slower): with a memory, each is fitted once per
    # inner fold and the same fitted step is handed to every candidate.
    with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="bhbench-search-") as folder:
        # A fit failing on a tiny inner fold (e.g. QDA meeting a one-image class) scores NaN;
        # the scores below show it.
        warnings.simplefilter("ignore")
        memory = Memory(folder, verbose=0)
        for candidate in candidates:
            model = clf.build({**fixed, **candidate}, seed, False).set_params(memory=memory)
            try:
                fold_scores = cross_val_score(model, X, y, cv=splits, error_score=np.nan)
            except ValueError:  # scikit-learn raises, despite error_score, when every fold's fit failed
                fold_scores = np.full(len(splits), np.nan)
            scores.append(float(np.nanmean(fold_scores)))  # NaN only if every fold failed
    info["search"] = {
        "folds": len(splits),
        "grouped_by": "patient",
        "scoring": "accuracy",
        "grid": _plain(dict(grid)),
        "scores": [round(s, 4) if s == s else None for s in scores],
    }
    if all(s != s for s in scores):
        info["search"]["note"] = "every candidate failed on every fold; first grid values used"
        return fallback
    return candidates[int(np.nanargmax(scores))]


def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy scalars to Python, tuples to lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value
