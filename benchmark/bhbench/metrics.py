"""Scores computed by the harness from per-image predictions (DESIGN.md section 4)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from bhbench.protocol import MAGNIFICATIONS
from bhbench.record import Metrics, Scores


def patient_scores(correct: np.ndarray, patients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Patient tokens (sorted) and each one's fraction of images classified correctly."""
    tokens, inverse = np.unique(patients, return_inverse=True)
    return tokens, np.bincount(inverse, weights=correct.astype(float)) / np.bincount(inverse)


def patient_recognition_rate(correct: np.ndarray, patients: np.ndarray) -> float:
    """Mean over patients of the fraction of their images classified correctly."""
    return float(patient_scores(correct, patients)[1].mean())


def auc(y: np.ndarray, proba: np.ndarray) -> float:
    """ROC AUC of P(malignant) for two classes; macro one-vs-rest over the classes present
    (with both positives and negatives) otherwise. NaN when it is undefined."""
    if proba.shape[1] == 2:
        return float(roc_auc_score(y, proba[:, 1])) if len(np.unique(y)) == 2 else math.nan
    scores = [roc_auc_score(y == c, proba[:, c]) for c in range(proba.shape[1]) if 0 < (y == c).sum() < len(y)]
    return float(np.mean(scores)) if scores else math.nan


def score(y: np.ndarray, proba: np.ndarray, patients: np.ndarray) -> Scores:
    pred = proba.argmax(axis=1)
    correct = pred == y
    labels = np.arange(proba.shape[1])
    present = np.unique(y)
    with warnings.catch_warnings():  # a test fold lacking a class the method predicts is expected here
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true", UserWarning)
        balanced = float(balanced_accuracy_score(y, pred)) if len(present) > 1 else float(correct.mean())
    return Scores(
        patient_rr=patient_recognition_rate(correct, patients),
        accuracy=float(correct.mean()),
        balanced_accuracy=balanced,
        auc=auc(y, proba),
        f1_macro=float(f1_score(y, pred, labels=labels[np.isin(labels, present)], average="macro", zero_division=0)),
        n_images=int(len(y)),
        n_patients=int(len(np.unique(patients))),
    )


def score_all(
    y: np.ndarray,
    proba: np.ndarray,
    patients: np.ndarray,
    magnifications: np.ndarray,
    aux: dict[str, np.ndarray] | None = None,
    mag_classes: tuple[int, ...] = MAGNIFICATIONS,
) -> Metrics:
    """Overall and per-magnification scores; magnification accuracy and magnification patient
    recognition rate (Bayramoglu et al.'s 80.10 is one) when a method predicts magnification."""
    overall = score(y, proba, patients)
    by_magnification = {}
    for mag in sorted(np.unique(magnifications)):
        sel = magnifications == mag
        by_magnification[str(int(mag))] = score(y[sel], proba[sel], patients[sel])
    if aux and "magnification" in aux:
        mag_pred = np.asarray(mag_classes)[np.asarray(aux["magnification"]).argmax(axis=1)]
        right = mag_pred == magnifications
        overall = replace(
            overall,
            magnification_accuracy=float(right.mean()),
            magnification_patient_rr=patient_recognition_rate(right, patients),
        )
    return Metrics(overall, by_magnification)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation over folds, ignoring NaN."""
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std())


# Uncertainty (DESIGN.md section 4): a patient-level bootstrap that respects the design. Within each
# fold the test patients are drawn with replacement (the same draws for every row, so comparisons
# are paired), each statistic is computed on the drawn patients, and the fold values are averaged,
# as the point estimate is. A draw is a (resamples x patients) matrix of multiplicities, so every
# statistic of every row is a handful of matrix products: no Python loop over resamples or images.

BOOTSTRAP_RESAMPLES = 20_000  # the smallest p-value is 1/(B+1): Holm over ~45 rows' pairs still works
ALPHA = 0.05
STATISTICS = (
    "headline", "patient_rr", "accuracy", "balanced_accuracy", "auc", "f1_macro", *(f"{m}X" for m in MAGNIFICATIONS)
)  # fmt: skip


@dataclass(frozen=True)
class FoldOutcomes:
    """One fold's test images (the same for every row) and every row's probabilities for them.

    `patients`, `magnifications` and `y` are small integer codes per image; `proba` is
    (rows, images, classes), and `present` says which rows have a record for this fold."""

    patients: np.ndarray
    magnifications: np.ndarray
    y: np.ndarray
    proba: np.ndarray
    present: np.ndarray

    @property
    def n_patients(self) -> int:
        return int(self.patients.max()) + 1

    @property
    def pred(self) -> np.ndarray:
        """(rows, images) predicted classes, as `score` takes them."""
        return self.proba.argmax(axis=2)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():  # an all-NaN slice (a magnification no drawn patient has) is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def fold_statistics(fold: FoldOutcomes, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every statistic of every row for each row of patient multiplicities `weights` (draws x
    patients): {name: (draws, rows)}. A row of ones gives the fold's own values."""
    pred = fold.pred
    right = pred == fold.y

    def drawn(counts: np.ndarray) -> np.ndarray:
        """(rows, patients, k) per-patient counts -> (draws, rows, k) counts of each draw."""
        return np.einsum("bp,rpk->brk", weights, counts)

    out: dict[str, np.ndarray] = {}
    k_mag = len(MAGNIFICATIONS)
    mag_n = _tally(fold, fold.magnifications, k_mag)
    mag_c = np.stack([_tally(fold, fold.magnifications, k_mag, r) for r in right])
    has = (mag_n > 0).astype(float)
    score = np.nan_to_num(_ratio(mag_c, mag_n))  # (rows, patients, mags): patient score per magnification
    per_mag = _ratio(drawn(score), (weights @ has)[:, None, :])
    for j, m in enumerate(MAGNIFICATIONS):
        out[f"{m}X"] = per_mag[:, :, j]
    out["headline"] = _nanmean(per_mag, axis=2)
    n_p, c_p = mag_n.sum(1), mag_c.sum(2)
    out["patient_rr"] = _ratio(weights @ (c_p / n_p).T, weights.sum(1, keepdims=True))
    out["accuracy"] = _ratio(weights @ c_p.T, (weights @ n_p)[:, None])
    k = fold.proba.shape[2]
    per_class = weights @ _tally(fold, fold.y, k)  # (draws, classes): images of each class in each draw
    images = per_class[:, None, :]
    tp = drawn(np.stack([_tally(fold, fold.y, k, r) for r in right]))
    fp = drawn(np.stack([_tally(fold, p, k, ~r) for p, r in zip(pred, right, strict=True)]))
    out["balanced_accuracy"] = _nanmean(_ratio(tp, images), axis=2)  # classes absent from the draw are NaN
    # Macro F1 over the classes present in the draw; zero for one never predicted right (zero_division=0).
    f1 = np.nan_to_num(_ratio(2 * tp, tp + fp + images))
    out["f1_macro"] = _ratio((f1 * (images > 0)).sum(2), (images > 0).sum(2))
    out["auc"] = np.stack([_auc(fold, r, weights, per_class) for r in range(len(pred))], axis=1)
    return out


def _tally(fold: FoldOutcomes, codes: np.ndarray, k: int, hits: np.ndarray | None = None) -> np.ndarray:
    """(patients, k): each patient's images under each code (only those with `hits`, when given)."""
    n_pat = fold.n_patients
    counts = np.bincount(fold.patients * k + codes, None if hits is None else hits.astype(float), n_pat * k)
    return counts.reshape(n_pat, k).astype(float)


def _auc(fold: FoldOutcomes, row: int, weights: np.ndarray, per_class: np.ndarray) -> np.ndarray:
    """(draws,) ROC AUC of one row under each draw of patient multiplicities: of P(malignant) with two
    classes, else macro one-vs-rest over the classes with both positives and negatives in the draw.

    A draw weights every pair of images by the multiplicities of their two patients, so the AUC of a
    draw is w' W w / ((w . positives) (w . negatives)), where W[p, q] counts the pairs (positive image
    of p, negative image of q) ranked right (ties half): one small matrix per class, whatever the draws.
    `per_class` is (draws, classes): the images of each class in each draw."""
    n_pat = fold.n_patients
    k = fold.proba.shape[2]
    aucs = []
    for c in [1] if k == 2 else range(k):
        positive = fold.y == c
        s = fold.proba[row, :, c]
        sp, sn = s[positive], s[~positive]
        wins = (sp[:, None] > sn[None, :]) + 0.5 * (sp[:, None] == sn[None, :])
        cell = fold.patients[positive][:, None] * n_pat + fold.patients[~positive][None, :]
        pairs = np.bincount(cell.ravel(), weights=wins.ravel(), minlength=n_pat * n_pat).reshape(n_pat, n_pat)
        n_pos = per_class[:, c]
        n_neg = per_class.sum(axis=1) - n_pos
        defined = (n_pos > 0) & (n_neg > 0)
        aucs.append(np.where(defined, _ratio(np.einsum("bp,pq,bq->b", weights, pairs, weights), n_pos * n_neg), np.nan))
    return _nanmean(np.stack(aucs), axis=0)


@dataclass(frozen=True)
class Bootstrap:
    """Per-fold point values {stat: (rows, folds)}, fold-averaged resamples {stat: (draws, rows)},
    and the headline's resamples per fold (draws, rows, folds) for paired comparisons."""

    folds: dict[str, np.ndarray]
    draws: dict[str, np.ndarray]
    headline_by_fold: np.ndarray

    def mean(self, stat: str) -> np.ndarray:
        return _nanmean(self.folds[stat], axis=1)

    def interval(self, stat: str) -> tuple[np.ndarray, np.ndarray]:
        """95% percentile interval of each row's fold-averaged statistic."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = np.nanpercentile(self.draws[stat], [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)], axis=0)
        return lo, hi


def bootstrap(folds: list[FoldOutcomes], resamples: int | None = None, seed: int = 0) -> Bootstrap:
    """Patient-level bootstrap within folds, averaged over the folds each row has (BOOTSTRAP_RESAMPLES
    resamples unless told)."""
    resamples = resamples or BOOTSTRAP_RESAMPLES
    per_fold_points, per_fold_draws = [], []
    for i, fold in enumerate(folds):
        n_pat = fold.n_patients
        rng = np.random.default_rng([seed, i])
        weights = rng.multinomial(n_pat, np.full(n_pat, 1 / n_pat), size=resamples).astype(float)
        stats = fold_statistics(fold, np.vstack([np.ones(n_pat), weights]))
        mask = np.where(fold.present, 1.0, np.nan)
        per_fold_points.append({k: v[0] * mask for k, v in stats.items()})
        per_fold_draws.append({k: v[1:] * mask for k, v in stats.items()})
    points = {k: np.stack([p[k] for p in per_fold_points], axis=1) for k in STATISTICS}
    draws = {k: _nanmean(np.stack([d[k] for d in per_fold_draws], axis=2), axis=2) for k in STATISTICS}
    by_fold = np.stack([d["headline"] for d in per_fold_draws], axis=2)
    return Bootstrap(points, draws, by_fold)


def paired_difference(boot: Bootstrap, a: int, b: int) -> tuple[float, float, float, float]:
    """Headline of row a minus row b over the folds both have: (difference, 95% interval low,
    high, two-sided bootstrap p-value)."""
    common = ~np.isnan(boot.folds["headline"][a]) & ~np.isnan(boot.folds["headline"][b])
    if not common.any():
        return math.nan, math.nan, math.nan, math.nan
    point = float(np.mean(boot.folds["headline"][a, common] - boot.folds["headline"][b, common]))
    d = _nanmean(boot.headline_by_fold[:, a, common] - boot.headline_by_fold[:, b, common], axis=1)
    lo, hi = np.nanpercentile(d, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return point, float(lo), float(hi), _two_sided(d[None, :])[0]


def _two_sided(d: np.ndarray) -> np.ndarray:
    """Bootstrap p-value of "no difference" per row of draws d (.., draws), with the +1 correction."""
    n = d.shape[-1]
    below = (1 + (d <= 0).sum(-1)) / (n + 1)
    above = (1 + (d >= 0).sum(-1)) / (n + 1)
    return np.minimum(1.0, 2 * np.minimum(below, above))


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (family-wise error control, any dependence); NaN stays NaN."""
    adjusted = np.full_like(pvalues, np.nan, dtype=float)
    ok = ~np.isnan(pvalues)
    p = pvalues[ok]
    order = np.argsort(p, kind="stable")
    scaled = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(1.0, scaled)
    adjusted[ok] = out
    return adjusted


def tied_ranks(boot: Bootstrap) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each row = 1 + rows significantly better on the headline: paired bootstrap over the
    folds both rows have, Holm over all pairs of the section at family-wise level ALPHA. Returns
    the ranks and the matrix better[i, j] (row i significantly better than row j)."""
    rows = boot.headline_by_fold.shape[1]
    points = boot.folds["headline"]
    p = np.full((rows, rows), np.nan)
    diff = np.full((rows, rows), np.nan)
    for i in range(rows - 1):
        j = np.arange(i + 1, rows)
        common = ~np.isnan(points[i][None, :]) & ~np.isnan(points[j])  # (pairs, folds)
        delta = boot.headline_by_fold[:, i : i + 1, :] - boot.headline_by_fold[:, j, :]  # (draws, pairs, folds)
        d = _nanmean(np.where(common[None], delta, np.nan), axis=2)
        diff[i, j] = _nanmean(np.where(common, points[i][None, :] - points[j], np.nan), axis=1)
        p[i, j] = np.where(common.any(1), _two_sided(d.T), np.nan)
    upper = np.triu_indices(rows, 1)
    adjusted = np.full((rows, rows), np.nan)
    adjusted[upper] = holm(p[upper])
    significant = adjusted < ALPHA
    better = (significant & (diff > 0)) | (significant & (diff < 0)).T
    return 1 + better.sum(axis=0), better
