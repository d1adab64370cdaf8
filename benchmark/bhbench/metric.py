"""Every metric the harness reports, declared once (DESIGN.md section 4).

A `Metric` says what a number is (name, label, level, the tasks it applies to, whether higher is
better, how it is printed, where the tables show it) and how it is computed, twice over:

- `value(sample)`: from one fold's per-image predictions, in plain numpy. What a record stores
  (`record.Scores` has one field per declaration) and what `verify` recomputes from predictions.
- `draws(draws)`: the same number for every row of a leaderboard block under every bootstrap draw
  of patient multiplicities at once, from per-patient tallies (no loop over resamples or images).
  A draw of all ones gives the fold's own value. None: not bootstrapped (mean ± std over folds only).

Records, scoring, the bootstrap, ranking, the Markdown tables, the CSV, figures and the method pages
all read METRICS: adding a metric is one declaration at the end of this module. A record made before
a metric was declared lacks it (`added_later`): the leaderboard recomputes it from the predictions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from bhbench.protocol import TASK_CLASSES, TASKS

# --- how numbers are printed ----------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """How values of a metric are printed: scaled (100 for %) with a fixed number of decimals."""

    scale: float
    digits: int
    symbol: str  # for column titles: "%" or ""

    def text(self, value: float | None) -> str:
        """One value; "–" when there is none."""
        if value is None or math.isnan(value):
            return "–"
        return f"{self.scale * value:.{self.digits}f}"

    def pm(self, mean: float | None, std: float, folds: int, sign: str = " ± ") -> str:
        """Mean ± std over folds (the mean alone for one fold): the one mean ± std format."""
        text = self.text(mean)
        return f"{text}{sign}{self.text(std)}" if folds > 1 and text != "–" else text

    def interval(self, lo: float, hi: float) -> str:
        return "–" if math.isnan(lo) or math.isnan(hi) else f"[{self.text(lo)}, {self.text(hi)}]"


PERCENT = Unit(100, 1, "%")
PLAIN = Unit(1, 3, "")
PER_SECOND = Unit(1, 1, "")  # throughput (FPS)


# --- what a metric reads ---------------------------------------------------------------------------


def codes(tokens: np.ndarray) -> np.ndarray:
    """Small integer codes (0, 1, ...) of patient tokens, in sorted token order."""
    return np.unique(tokens, return_inverse=True)[1].reshape(-1)


@dataclass(frozen=True)
class Sample:
    """One set of test images as `Metric.value` reads it: labels, probabilities (images x classes),
    patient codes, and whether each image's predicted magnification is right (only for a method that
    predicts magnification, scored over all magnifications)."""

    y: np.ndarray
    proba: np.ndarray
    patients: np.ndarray
    magnification_right: np.ndarray | None = None

    @property
    def k(self) -> int:
        return self.proba.shape[1]

    @property
    def task(self) -> str:
        return "binary" if self.k == 2 else "subtype"

    @cached_property
    def pred(self) -> np.ndarray:
        return self.proba.argmax(axis=1)

    @cached_property
    def correct(self) -> np.ndarray:
        return self.pred == self.y

    @cached_property
    def images(self) -> np.ndarray:
        """(classes,) images of each true class."""
        return np.bincount(self.y, minlength=self.k)

    @cached_property
    def hits(self) -> np.ndarray:
        """(classes,) images of each true class classified correctly."""
        return np.bincount(self.y[self.correct], minlength=self.k)

    @cached_property
    def patient_images(self) -> np.ndarray:
        """(patients, classes) images of each patient and true class."""
        return tally(self.patients, self.y, self.k)

    @cached_property
    def patient_hits(self) -> np.ndarray:
        """(patients, classes) of those, the images classified correctly."""
        return tally(self.patients, self.y, self.k, self.correct)


@dataclass(frozen=True)
class FoldOutcomes:
    """One fold's test images (the same for every row of a leaderboard block) and every row's
    probabilities for them: `patients`, `magnifications` (index into MAGNIFICATIONS) and `y` are
    small integer codes per image; `proba` is (rows, images, classes), and `present` says which
    rows have a record for this fold."""

    patients: np.ndarray
    magnifications: np.ndarray
    y: np.ndarray
    proba: np.ndarray
    present: np.ndarray

    @property
    def n_patients(self) -> int:
        return int(self.patients.max()) + 1

    @property
    def k(self) -> int:
        return self.proba.shape[2]

    @property
    def task(self) -> str:
        return "binary" if self.k == 2 else "subtype"


def tally(patients: np.ndarray, codes: np.ndarray, k: int, weights: np.ndarray | None = None) -> np.ndarray:
    """(patients, k): each patient's images under each code (summing `weights` instead, when given)."""
    n_pat = int(patients.max()) + 1
    counts = np.bincount(patients * k + codes, None if weights is None else weights.astype(float), n_pat * k)
    return counts.reshape(n_pat, k).astype(float)


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    """Mean ignoring NaN (NaN where all are), summing in numpy's own order along `axis`: the same bits
    as np.nanmean, without its copy when nothing is missing."""
    missing = np.isnan(a)
    if not missing.any():
        return a.sum(axis) / a.shape[axis]
    return ratio(np.where(missing, 0.0, a).sum(axis), (~missing).sum(axis))


class Draws:
    """One fold's outcomes for every row under each draw of patient multiplicities `weights`
    (draws x patients), with the per-patient tallies `Metric.draws` combine.

    A drawn patient's images count as often as the patient was drawn, so a count over a draw is the
    weights times the per-patient counts: one matrix product, exact for whole-number counts. Counts
    of a draw are (draws, k, rows): a sum over k then adds whole (draws x rows) slabs. The bootstrap
    takes the draws a few thousand at a time (`chunks`, so that what a metric computes stays in the
    cache); what does not depend on the draws is computed once for all of them (`once`)."""

    def __init__(self, fold: FoldOutcomes, weights: np.ndarray, shared: dict | None = None) -> None:
        self.fold = fold
        self.weights = weights
        self._shared = {} if shared is None else shared

    def chunks(self, size: int) -> Iterator[tuple[int, Draws]]:
        """(first draw, the draws from there) `size` at a time."""
        for start in range(0, len(self.weights), size):
            yield start, Draws(self.fold, self.weights[start : start + size], self._shared)

    def once(self, key: object, compute: Callable[[], Any]) -> Any:
        """A quantity that does not depend on the draws, computed for the first chunk only."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]

    def drawn(self, counts: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """(rows, patients, k) per-patient counts -> (draws, k, rows) counts of each draw (with the
        multiplicities `weights` of those patients, when not all of them)."""
        rows, n_pat, k = counts.shape
        flat = counts.transpose(1, 2, 0).reshape(n_pat, k * rows)
        return ((self.weights if weights is None else weights) @ flat).reshape(-1, k, rows)

    def per_patient(self, key: str, values: Callable[[], np.ndarray]) -> np.ndarray:
        """(draws, rows): the sum over each draw's images of `values()` (rows, images)."""
        fold = self.fold
        sums = self.once(key, lambda: np.stack([np.bincount(fold.patients, v, fold.n_patients) for v in values()]))
        return self.weights @ sums.T

    @property
    def pred(self) -> np.ndarray:
        """(rows, images) predicted classes."""
        return self.once("pred", lambda: self.fold.proba.argmax(axis=2))

    @property
    def right(self) -> np.ndarray:
        """(rows, images) classified correctly."""
        return self.once("right", lambda: self.pred == self.fold.y)

    @property
    def patient_images(self) -> np.ndarray:
        """(patients, classes) images of each patient and true class."""
        return self.once("patient_images", lambda: tally(self.fold.patients, self.fold.y, self.fold.k))

    @property
    def patient_hits(self) -> np.ndarray:
        """(rows, patients, classes) of those, the images each row classifies correctly."""
        fold = self.fold
        return self.once(
            "patient_hits", lambda: np.stack([tally(fold.patients, fold.y, fold.k, r) for r in self.right])
        )

    @cached_property
    def images(self) -> np.ndarray:
        """(draws, classes) images of each class in each draw."""
        return self.weights @ self.patient_images

    @cached_property
    def n_images(self) -> np.ndarray:
        """(draws,) images in each draw."""
        return self.images.sum(axis=1)

    @cached_property
    def hits(self) -> np.ndarray:
        """(draws, classes, rows) images of each class classified correctly in each draw."""
        return self.drawn(self.patient_hits)

    @cached_property
    def false_hits(self) -> np.ndarray:
        """(draws, classes, rows) images wrongly called each class in each draw."""
        fold = self.fold
        wrong = self.once(
            "wrong",
            lambda: np.stack([tally(fold.patients, p, fold.k, ~r) for p, r in zip(self.pred, self.right, strict=True)]),
        )
        return self.drawn(wrong)


# --- the declaration -------------------------------------------------------------------------------

BOARD_PLACES = ("", "value", "interval")


@dataclass(frozen=True)
class Metric:
    """A number the harness reports. `board`: its column in the leaderboard's tables ("value", or
    "interval" with its 95% CI beside it; "" for the CSV and method pages only); `fold_table`: a
    column of a method page's per-fold table too. `added_later`: declared after records were first
    written, so an older record lacks it (it is recomputed from the record's predictions)."""

    name: str  # record key and CSV column prefix
    label: str  # column title
    description: str  # what it is, for the leaderboard's notes
    value: Callable[[Sample], float | None]  # None: does not apply to this sample
    draws: Callable[[Draws], np.ndarray] | None
    level: str = "image"  # image | patient: what one unit of the statistic is
    tasks: tuple[str, ...] = TASKS
    higher_is_better: bool = True
    unit: Unit = PERCENT
    board: str = ""
    fold_table: bool = False
    needs_magnification: bool = False  # only for methods that predict magnification (overall only)
    added_later: bool = False

    def __post_init__(self) -> None:
        assert self.board in BOARD_PLACES and self.level in ("image", "patient"), self.name

    @property
    def in_every_record(self) -> bool:
        """Every successful record stores it (the others are optional keys of a record)."""
        return set(self.tasks) == set(TASKS) and not self.needs_magnification and not self.added_later

    def score(self, sample: Sample) -> float | None:
        """The metric of one sample, or None when it does not apply (task, no magnification predictions)."""
        return self.value(sample) if sample.task in self.tasks else None


# --- the functions the declarations use ------------------------------------------------------------


def patient_rate(hits: np.ndarray, patients: np.ndarray) -> float:
    """Mean over patients of the fraction of their images with `hits` (correct, for the PRR)."""
    return float((np.bincount(patients, weights=hits.astype(float)) / np.bincount(patients)).mean())


def rank_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic: the chance that a positive image scores above a negative
    one, ties counting half (scikit-learn's roc_auc_score). Mid-ranks make it a ratio of whole numbers
    of halves, so it is exact. NaN without both positives and negatives."""
    n_pos = int(positive.sum())
    n_neg = len(score) - n_pos
    if not n_pos or not n_neg:
        return math.nan
    order = np.argsort(score, kind="stable")
    ranked = score[order]
    start = np.flatnonzero(np.concatenate([[True], ranked[1:] != ranked[:-1]]))  # each run of ties
    end = np.append(start[1:], len(score))
    ranks = np.empty(len(score))
    ranks[order] = np.repeat((start + end + 1) / 2, end - start)  # 1-based mean rank of the run
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _auc(s: Sample) -> float:
    if s.k == 2:
        return rank_auc(s.y == 1, s.proba[:, 1])
    aucs = [rank_auc(s.y == c, s.proba[:, c]) for c in range(s.k) if 0 < s.images[c] < len(s.y)]
    return float(np.mean(aucs)) if aucs else math.nan


def _pair_wins(positive: np.ndarray, negative: np.ndarray, pos_patient: np.ndarray, neg_patient: np.ndarray,
               shape: tuple[int, int]) -> np.ndarray:  # fmt: skip
    """W[p, q]: the pairs (positive image of patient p, negative image of patient q) ranked right, ties
    half, from the scores of the positive and negative images and their patients' codes. Negatives are
    sorted once; a positive's wins over each patient's negatives are read from cumulative counts."""
    order = np.argsort(negative, kind="stable")
    ranked = negative[order]
    below = np.zeros((len(ranked) + 1, shape[1]))  # [t, q]: patient q's negatives among the t lowest
    below[1:] = np.cumsum(np.eye(shape[1])[neg_patient[order]], axis=0)
    wins = below[np.searchsorted(ranked, positive, "left")] + below[np.searchsorted(ranked, positive, "right")]
    return np.eye(shape[0])[pos_patient].T @ wins / 2


def _auc_pairs(fold: FoldOutcomes, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """For class c against the rest: W of `_pair_wins` for every row (rows, p, q), the larger side p
    (it goes through the matrix product), and the codes of the patients on each side; None when no
    draw has a pair."""
    positive = fold.y == c
    pos_ids, pos_patient = np.unique(fold.patients[positive], return_inverse=True)
    neg_ids, neg_patient = np.unique(fold.patients[~positive], return_inverse=True)
    shape = (len(pos_ids), len(neg_ids))
    if not all(shape):
        return None
    pairs = np.stack(
        [_pair_wins(s[positive], s[~positive], pos_patient, neg_patient, shape) for s in fold.proba[:, :, c]]
    )
    return (pairs, pos_ids, neg_ids) if shape[0] >= shape[1] else (pairs.transpose(0, 2, 1), neg_ids, pos_ids)


def _draws_auc(d: Draws) -> np.ndarray:
    """A draw weighs every (positive, negative) pair of images by the multiplicities of their two
    patients, so its AUC is u' W v / ((w . positives) (w . negatives)), u and v the multiplicities of
    the patients with positive and with negative images and W of `_pair_wins`: one small matrix per row
    and class, whatever the draws. Whole numbers of halves throughout, so exact. Two classes: of
    P(malignant); else macro one-vs-rest over the classes with positives and negatives in the draw."""
    fold, weights = d.fold, d.weights
    aucs = []
    for c in [1] if fold.k == 2 else range(fold.k):
        prepared = d.once(("auc", c), lambda c=c: _auc_pairs(fold, c))
        if prepared is None:  # no pair in any draw
            aucs.append(np.full((len(weights), len(fold.proba)), np.nan))
            continue
        pairs, big, small = prepared
        wins = np.einsum("bqr,bq->br", d.drawn(pairs, weights[:, big]), weights[:, small])
        n_pos = d.images[:, c]
        n_neg = d.n_images - n_pos
        defined = ((n_pos > 0) & (n_neg > 0))[:, None]
        aucs.append(np.where(defined, ratio(wins, (n_pos * n_neg)[:, None]), np.nan))
    return nanmean(np.stack(aucs), axis=0)


def _balanced_accuracy(s: Sample) -> float:
    present = s.images > 0
    return float(np.mean(s.hits[present] / s.images[present]))


def _f1_macro(s: Sample) -> float:
    """Macro F1 over the classes present, as scikit-learn (zero for a class never predicted right)."""
    present = s.images > 0
    called = np.bincount(s.pred, minlength=s.k)
    return float(np.mean(2 * s.hits[present] / (s.images[present] + called[present])))


def _draws_f1_macro(d: Draws) -> np.ndarray:
    present = d.images > 0
    f1 = ratio(2 * d.hits, d.hits + d.false_hits + d.images[:, :, None])
    # zero for a class never called and absent (0 / 0); zero anyway for one absent but called
    return np.nan_to_num(f1, copy=False).sum(1) / present.sum(1, keepdims=True)


def _recall(s: Sample, c: int) -> float:
    return float(s.hits[c] / s.images[c]) if s.images[c] else math.nan


def _draws_recall(d: Draws, c: int) -> np.ndarray:
    return ratio(d.hits[:, c], d.images[:, c, None])


MALIGNANT, BENIGN = TASK_CLASSES["binary"].index("malignant"), TASK_CLASSES["binary"].index("benign")


def _patient_calls(hits: np.ndarray, images: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """(patients with images of class c, those the majority vote gets right), per patient. A patient's
    images of class c are called c when at least half of them are called malignant (c malignant) or
    more than half benign (c benign): a split vote goes to malignant, as a screening call refers it."""
    has = images[..., c] > 0
    needed = images[..., c] / 2
    right = hits[..., c] >= needed if c == MALIGNANT else hits[..., c] > needed
    return has, right & has


def _patient_recall(s: Sample, c: int) -> float:
    has, right = _patient_calls(s.patient_hits, s.patient_images, c)
    return float(right.sum() / has.sum()) if has.any() else math.nan


def _draws_patient_recall(d: Draws, c: int) -> np.ndarray:
    has, right = _patient_calls(d.patient_hits, d.patient_images, c)
    return ratio(d.weights @ right.T.astype(float), (d.weights @ has.astype(float))[:, None])


def _brier_terms(y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """(..., images) squared error of the probabilities: (P(malignant) - y)^2 with two classes, else
    the sum over classes of (p_c - [y = c])^2 (scikit-learn's brier_score_loss either way)."""
    if proba.shape[-1] == 2:
        return (proba[..., 1] - y) ** 2
    return ((proba - np.eye(proba.shape[-1])[y]) ** 2).sum(axis=-1)


ECE_BINS = 10
ECE_EDGES = np.linspace(0, 1, ECE_BINS + 1)


def calibration_bins(confidence: np.ndarray) -> np.ndarray:
    """Bin of each top-class probability: ECE_BINS equal-width bins of [0, 1], the last one closed."""
    return np.digitize(confidence, ECE_EDGES[1:-1])


def calibration(y: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Per bin of top-class probability: images, fraction correct, mean probability (NaN for an
    empty bin); and the expected calibration error, sum over bins of (images share) x |gap|."""
    confidence = proba.max(axis=1)
    right = proba.argmax(axis=1) == y
    which = calibration_bins(confidence)
    n = np.bincount(which, minlength=ECE_BINS)
    acc = ratio(np.bincount(which, weights=right, minlength=ECE_BINS), n)
    conf = ratio(np.bincount(which, weights=confidence, minlength=ECE_BINS), n)
    return n, acc, conf, float(np.nansum(n / n.sum() * np.abs(acc - conf)))


def _ece_gaps(d: Draws) -> np.ndarray:
    """(rows, patients, bins) correct images minus summed top-class probability, per patient and bin
    (the bins no row uses left out: they add nothing)."""
    confidence = d.fold.proba.max(axis=2)
    which = calibration_bins(confidence)
    used = np.bincount(which.ravel(), minlength=ECE_BINS) > 0
    gaps = [tally(d.fold.patients, b, ECE_BINS, r - p) for b, p, r in zip(which, confidence, d.right, strict=True)]
    return np.stack(gaps)[:, :, used]


def _draws_ece(d: Draws) -> np.ndarray:
    """ECE = sum over bins of |correct images - summed top-class probability| / images, each count
    over the draw: per patient and bin, the gap between the two is all a draw needs."""
    gaps = d.once("ece", lambda: _ece_gaps(d))
    return ratio(np.abs(d.drawn(gaps)).sum(axis=1), d.n_images[:, None])


# --- the metrics -----------------------------------------------------------------------------------


def _draws_patient_rr(d: Draws) -> np.ndarray:
    n_p = d.patient_images.sum(1)
    c_p = d.patient_hits.sum(2)
    return ratio(d.weights @ (c_p / n_p).T, d.weights.sum(1, keepdims=True))


METRICS: tuple[Metric, ...] = (
    Metric(
        "patient_rr", "pooled PRR", "mean over test patients of the fraction of their images classified correctly",
        lambda s: patient_rate(s.correct, s.patients), _draws_patient_rr, level="patient", board="value",
        fold_table=True,
    ),
    Metric(
        "accuracy", "accuracy", "correct test images / all test images",
        lambda s: float(s.correct.mean()),
        lambda d: ratio(d.hits.sum(1), d.n_images[:, None]), board="interval", fold_table=True,
    ),
    Metric(
        "balanced_accuracy", "balanced acc.", "mean over the classes present of the fraction of their images "
        "classified correctly", _balanced_accuracy,
        lambda d: nanmean(ratio(d.hits, d.images[:, :, None]), axis=1), board="value", fold_table=True,
    ),
    Metric(
        "auc", "AUC", "ROC AUC of P(malignant); macro one-vs-rest over the classes present for subtypes",
        _auc, _draws_auc, board="interval", fold_table=True,
    ),
    Metric(
        "f1_macro", "macro F1", "mean over the classes present of F1",
        _f1_macro, _draws_f1_macro, board="value",
    ),
    Metric(
        "magnification_accuracy", "magnification acc.", "images whose magnification is predicted right",
        lambda s: None if s.magnification_right is None else float(s.magnification_right.mean()), None,
        board="value", needs_magnification=True,
    ),
    Metric(
        "magnification_patient_rr", "magnification PRR", "mean over patients of the fraction of their "
        "images whose magnification is predicted right",
        lambda s: None if s.magnification_right is None else patient_rate(s.magnification_right, s.patients),
        None, level="patient", board="value", needs_magnification=True, added_later=True,
    ),
    Metric(
        "sensitivity", "sensitivity", "malignant test images called malignant / malignant test images",
        lambda s: _recall(s, MALIGNANT), lambda d: _draws_recall(d, MALIGNANT), tasks=("binary",), added_later=True,
    ),
    Metric(
        "specificity", "specificity", "benign test images called benign / benign test images",
        lambda s: _recall(s, BENIGN), lambda d: _draws_recall(d, BENIGN), tasks=("binary",), added_later=True,
    ),
    Metric(
        "patient_sensitivity", "patient sensitivity", "malignant test patients called malignant / malignant "
        "test patients; a patient is called malignant when at least half of their images are (a tie is referred)",
        lambda s: _patient_recall(s, MALIGNANT), lambda d: _draws_patient_recall(d, MALIGNANT),
        level="patient", tasks=("binary",), added_later=True,
    ),
    Metric(
        "patient_specificity", "patient specificity", "benign test patients called benign / benign test patients; "
        "a patient is called benign when more than half of their images are",
        lambda s: _patient_recall(s, BENIGN), lambda d: _draws_patient_recall(d, BENIGN),
        level="patient", tasks=("binary",), added_later=True,
    ),
    Metric(
        "brier", "Brier score", "mean squared error of the probabilities: (P(malignant) - y)^2, for subtypes "
        "summed over classes",
        lambda s: float(_brier_terms(s.y, s.proba).mean()),
        lambda d: ratio(d.per_patient("brier", lambda: _brier_terms(d.fold.y, d.fold.proba)), d.n_images[:, None]),
        higher_is_better=False, unit=PLAIN, added_later=True,
    ),
    Metric(
        "ece", "ECE", f"expected calibration error of the top-class probability ({ECE_BINS} equal-width bins)",
        lambda s: calibration(s.y, s.proba)[3], _draws_ece, higher_is_better=False, added_later=True,
    ),
)  # fmt: skip

BY_NAME = {m.name: m for m in METRICS}
PATIENT_RR = BY_NAME["patient_rr"]  # per magnification, the headline and the ranking key
BOOTSTRAPPED = tuple(m for m in METRICS if m.draws is not None)
