"""Scores computed by the harness from per-image predictions (DESIGN.md section 4): a record's
`Metrics` from one fold, and the leaderboard's patient-level bootstrap over a block of rows. What
each metric is, and how it is computed, is declared once in `bhbench.metric`."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

from bhbench.metric import (
    BOOTSTRAPPED,
    METRICS,
    PATIENT_RR,
    Draws,
    FoldOutcomes,
    Metric,
    Sample,
    codes,
    nanmean,
    ratio,
    tally,
)
from bhbench.protocol import MAGNIFICATIONS
from bhbench.record import Metrics, Scores


def score(
    y: np.ndarray, proba: np.ndarray, patients: np.ndarray, magnification_right: np.ndarray | None = None
) -> Scores:
    """Every declared metric that applies to these test images (`patients`: one token per image)."""
    if not np.isfinite(proba).all():
        raise ValueError("probabilities must be finite")
    sample = Sample(y, proba, codes(patients), magnification_right)
    values = {m.name: m.score(sample) for m in METRICS}
    return Scores(**values, n_images=int(len(y)), n_patients=int(sample.patients.max()) + 1)


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
    right = None
    if aux and "magnification" in aux:
        right = np.asarray(mag_classes)[np.asarray(aux["magnification"]).argmax(axis=1)] == magnifications
    by_magnification = {}
    for mag in sorted(np.unique(magnifications)):
        sel = magnifications == mag
        by_magnification[str(int(mag))] = score(y[sel], proba[sel], patients[sel])
    return Metrics(score(y, proba, patients, right), by_magnification)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation over folds, ignoring NaN and None."""
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
DRAWS_AT_ONCE = 2_500  # a block of rows' counts per class for this many draws stays in the cache
ALPHA = 0.05


@dataclass(frozen=True)
class Statistic:
    """What the bootstrap estimates for each row: a declared metric, or the patient recognition rate
    at one magnification, or their mean over magnifications (the headline, the ranking key)."""

    name: str  # CSV column prefix
    label: str
    metric: Metric  # its unit, direction and description


HEADLINE = Statistic("headline", "PRR", PATIENT_RR)
BY_MAGNIFICATION = tuple(Statistic(f"{m}X", f"PRR {m}X", PATIENT_RR) for m in MAGNIFICATIONS)
STATISTICS = (HEADLINE, *(Statistic(m.name, m.label, m) for m in BOOTSTRAPPED), *BY_MAGNIFICATION)


def _chunks(fold: FoldOutcomes, weights: np.ndarray) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Every statistic of every row for the rows of patient multiplicities `weights` (draws x
    patients) a few thousand at a time: (first draw, {name: (draws, rows)}), NaN for a metric of the
    other task."""
    whole = Draws(fold, weights)
    k_mag = len(MAGNIFICATIONS)
    mag_n = tally(fold.patients, fold.magnifications, k_mag)
    mag_c = np.stack([tally(fold.patients, fold.magnifications, k_mag, r) for r in whole.right])
    has = (mag_n > 0).astype(float)
    score = np.nan_to_num(ratio(mag_c, mag_n))  # (rows, patients, mags): patient score per magnification
    metrics = [m for m in BOOTSTRAPPED if fold.task in m.tasks and m.draws is not None]
    for start, draws in whole.chunks(DRAWS_AT_ONCE):
        per_mag = ratio(draws.drawn(score), (draws.weights @ has)[:, :, None])
        out = {s.name: per_mag[:, j] for j, s in enumerate(BY_MAGNIFICATION)}
        out[HEADLINE.name] = nanmean(per_mag, axis=1)
        out.update({m.name: m.draws(draws) for m in metrics})
        missing = np.full((len(draws.weights), len(fold.proba)), np.nan)  # a metric of the other task
        yield start, {s.name: out.get(s.name, missing) for s in STATISTICS}


def fold_statistics(fold: FoldOutcomes, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every statistic of every row for each row of patient multiplicities `weights` (draws x
    patients): {name: (draws, rows)}. A row of ones gives the fold's own values."""
    parts = [stats for _, stats in _chunks(fold, weights)]
    return {s.name: np.concatenate([p[s.name] for p in parts]) for s in STATISTICS}


@dataclass(frozen=True)
class Bootstrap:
    """Per-fold point values {stat: (rows, folds)}, fold-averaged resamples {stat: (draws, rows)},
    and the headline's resamples per fold (folds, draws, rows) for paired comparisons."""

    folds: dict[str, np.ndarray]
    draws: dict[str, np.ndarray]
    headline_by_fold: np.ndarray

    def mean(self, stat: str) -> np.ndarray:
        return nanmean(self.folds[stat], axis=1)

    def interval(self, stat: str) -> tuple[np.ndarray, np.ndarray]:
        """95% percentile interval of each row's fold-averaged statistic."""
        return percentile_interval(self.draws[stat], axis=0)


def percentile_interval(draws: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The 95% percentile interval along `axis`, ignoring NaN (np.percentile when there is none: the
    same numbers, faster)."""
    q = [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)]
    if not np.isnan(draws).any():
        return tuple(np.percentile(draws, q, axis=axis))
    with warnings.catch_warnings():  # a row with no value in any draw: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return tuple(np.nanpercentile(draws, q, axis=axis))


def strata(fold: FoldOutcomes) -> tuple[int, ...]:
    """Each test patient's stratum: the magnifications it has images at in this fold, as a bit mask.
    Patients are drawn within their stratum, so every draw holds every magnification the fold tests
    and its headline averages the same magnifications as the fold's own value. Drawn freely, a draw
    that missed the one 40X patient of a small fold averaged the others only: the draws then centred
    away from the point they should surround (the 283-image sample's image-level folds)."""
    has = tally(fold.patients, fold.magnifications, len(MAGNIFICATIONS)) > 0  # (patients, magnifications)
    return tuple(int(code) for code in has @ (1 << np.arange(len(MAGNIFICATIONS))))


@functools.lru_cache(maxsize=32)
def _weights(seed: int, fold: int, strata: tuple[int, ...], resamples: int) -> np.ndarray:
    """A row of ones (the fold's own values), then each draw's patient multiplicities, drawn within
    strata; the same for every block of rows and section with the same strata in that fold (drawn
    once). One stratum (every patient at every magnification, as in BreaKHis) is a plain draw."""
    rng = np.random.default_rng([seed, fold])
    codes = np.asarray(strata)
    weights = np.zeros((resamples, len(codes)))
    for code in np.unique(codes):
        members = np.flatnonzero(codes == code)
        n = len(members)
        weights[:, members] = rng.multinomial(n, np.full(n, 1 / n), size=resamples)
    out = np.vstack([np.ones(len(codes)), weights])
    out.flags.writeable = False
    return out


def bootstrap(folds: list[FoldOutcomes], resamples: int | None = None, seed: int = 0) -> Bootstrap:
    """Patient-level bootstrap within folds, averaged over the folds each row has (BOOTSTRAP_RESAMPLES
    resamples unless told). The mean over folds adds each fold's draws to a running sum, fold after
    fold, as np.nanmean over a folds axis would."""
    resamples = resamples or BOOTSTRAP_RESAMPLES
    rows = len(folds[0].proba)
    names = [s.name for s in STATISTICS]
    points = {k: np.full((rows, len(folds)), np.nan) for k in names}
    total = {k: np.zeros((resamples, rows)) for k in names}
    count = {k: np.zeros((resamples, rows), dtype=int) for k in names}
    by_fold = np.empty((len(folds), resamples, rows))
    for i, fold in enumerate(folds):
        absent = None if fold.present.all() else np.where(fold.present, 1.0, np.nan)  # a row without this fold
        for start, stats in _chunks(fold, _weights(seed, i, strata(fold), resamples)):
            first = 1 if start == 0 else 0  # the row of ones: the fold's own values
            at = slice(start + first - 1, start + len(stats[names[0]]) - 1)
            for k, v in stats.items():
                v = v if absent is None else v * absent
                if first:
                    points[k][:, i] = v[0]
                drawn = v[first:]
                missing = np.isnan(drawn)
                total[k][at] += np.where(missing, 0.0, drawn)
                count[k][at] += ~missing
                if k == HEADLINE.name:
                    by_fold[i, at] = drawn
    return Bootstrap(points, {k: ratio(total[k], count[k]) for k in names}, by_fold)


def paired_difference(boot: Bootstrap, a: int, b: int) -> tuple[float, float, float, float]:
    """Headline of row a minus row b over the folds both have: (difference, 95% interval low,
    high, two-sided bootstrap p-value)."""
    common = ~np.isnan(boot.folds["headline"][a]) & ~np.isnan(boot.folds["headline"][b])
    if not common.any():
        return math.nan, math.nan, math.nan, math.nan
    point = float(np.mean(boot.folds["headline"][a, common] - boot.folds["headline"][b, common]))
    d = nanmean(boot.headline_by_fold[common, :, a] - boot.headline_by_fold[common, :, b], axis=0)
    lo, hi = percentile_interval(d, axis=0)
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


def corrected_t_pvalues(d: np.ndarray, test_to_train: float) -> np.ndarray:
    """Two-sided p-values of the corrected resampled t-test for repeated hold-out (Nadeau & Bengio
    2003) on per-fold paired differences d (pairs, folds), NaN where a pair lacks a fold: over the J
    folds a pair has, t = mean(d) / sqrt((1/J + n_test/n_train) var(d)), J - 1 degrees of freedom.
    The n_test/n_train term counts how much the differences vary with the overlapping training sets;
    the plain t-test (1/J alone) would be far too confident. NaN with fewer than two folds (no
    variance to estimate); differences equal in every fold give p = 0, or 1 when they are all zero."""
    j = (~np.isnan(d)).sum(axis=-1)
    p = np.full(j.shape, np.nan)
    ok = j >= 2
    if not ok.any():
        return p
    mean = nanmean(d[ok], axis=-1)
    var = np.nanvar(d[ok], axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):  # var = 0: t is infinite, or NaN when mean = 0
        t = mean / np.sqrt((1 / j[ok] + test_to_train) * var)
    p[ok] = np.where(np.isnan(t), 1.0, 2 * student_t.sf(np.abs(t), j[ok] - 1))
    return p


def tied_ranks(boot: Bootstrap, test_to_train: float) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each row = 1 + rows significantly better on the headline (higher or lower, as its metric
    declares). A pair differs significantly when both tests over the folds both rows have say so,
    each with Holm over all pairs of the section at family-wise level ALPHA: the paired patient
    bootstrap (each fold's trained model held fixed) and the corrected resampled t-test on the
    per-fold differences (training variability; `test_to_train` = n_test/n_train of the splits).
    A tie needs only one of them. A pair with a single common fold has no training variability to
    measure: the bootstrap alone decides it (else every one-fold section would be one tie). Returns
    the ranks and the matrix better[i, j] (row i significantly better than row j)."""
    by_fold = boot.headline_by_fold
    rows = by_fold.shape[2]
    points = boot.folds["headline"]
    p = np.full((rows, rows), np.nan)
    p_t = np.full((rows, rows), np.nan)
    diff = np.full((rows, rows), np.nan)
    for i in range(rows - 1):
        j = np.arange(i + 1, rows)
        common = ~np.isnan(points[i][None, :]) & ~np.isnan(points[j])  # (pairs, folds)
        delta = by_fold[:, :, i : i + 1] - by_fold[:, :, j]  # (folds, draws, pairs)
        d = nanmean(delta if common.all() else np.where(common.T[:, None, :], delta, np.nan), axis=0)
        per_fold = np.where(common, points[i][None, :] - points[j], np.nan)
        diff[i, j] = nanmean(per_fold, axis=1)
        p[i, j] = np.where(common.any(1), _two_sided(d.T), np.nan)
        p_t[i, j] = corrected_t_pvalues(per_fold, test_to_train)
    significant = _holm_significant(p) & (_holm_significant(p_t) | np.isnan(p_t))
    ahead = diff if HEADLINE.metric.higher_is_better else -diff
    better = (significant & (ahead > 0)) | (significant & (ahead < 0)).T
    return 1 + better.sum(axis=0), better


def _holm_significant(p: np.ndarray) -> np.ndarray:
    """Which pairs of the upper triangle of p (rows x rows) differ at family-wise level ALPHA."""
    upper = np.triu_indices(len(p), 1)
    adjusted = np.full(p.shape, np.nan)
    adjusted[upper] = holm(p[upper])
    return adjusted < ALPHA
