"""Ranks that count training variability: the corrected resampled t-test (Nadeau & Bengio 2003) on
per-fold paired differences beside the patient bootstrap, a tie when either test cannot separate
two rows, and the split's n_test/n_train counted in the unit the split draws."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats
from test_leaderboard import _checked

from bhbench import scoring
from bhbench.leaderboard.aggregate import holdout_ratio, sections
from bhbench.metric import FoldOutcomes
from bhbench.scoring import ALPHA, bootstrap, corrected_t_pvalues, paired_difference, tied_ranks

# Five repeated 70/30 hold-outs; one pair's headline differences, fold by fold.
D = np.array([0.04, 0.01, 0.06, -0.02, 0.03])
RATIO = 30 / 70


def _two_sided_p_four_df(t: float) -> float:
    """P(|T| > t) for Student's t with 4 degrees of freedom, in closed form:
    1 - (3/4) u (1 - t^2 / (12 (1 + t^2/4))) with u = t / sqrt(1 + t^2/4)."""
    s = 1 + t * t / 4
    return 1 - 0.75 * (t / math.sqrt(s)) * (1 - t * t / (12 * s))


def test_the_worked_example_matches_the_statistic_computed_by_hand():
    # mean = 0.12 / 5 = 0.024; squared deviations 0.016^2 + 0.014^2 + 0.036^2 + 0.044^2 + 0.006^2
    # = 0.00372, so var = 0.00372 / 4 = 0.00093; factor 1/5 + 30/70 = 22/35.
    t = 0.024 / math.sqrt(22 / 35 * 0.00093)
    assert t == pytest.approx(0.992642, abs=1e-6)
    # The same t from the plain one-sample t-test, its variance rescaled by (1/J + ratio) / (1/J).
    plain = stats.ttest_1samp(D, 0.0)
    assert plain.statistic * math.sqrt((1 / 5) / (1 / 5 + RATIO)) == pytest.approx(t)
    p = corrected_t_pvalues(D[None, :], RATIO)[0]
    assert p == pytest.approx(_two_sided_p_four_df(t), abs=1e-9)
    assert p == pytest.approx(0.377072, abs=1e-6)
    assert plain.pvalue == pytest.approx(0.153259, abs=1e-6)  # uncorrected: more than twice as confident


def test_a_missing_fold_one_fold_and_constant_differences():
    with_gap = np.array([0.04, np.nan, 0.06, -0.02, 0.03])  # the pair shares four folds
    t = np.mean([0.04, 0.06, -0.02, 0.03]) / math.sqrt((1 / 4 + RATIO) * np.var([0.04, 0.06, -0.02, 0.03], ddof=1))
    p = corrected_t_pvalues(np.array([with_gap, [0.1, np.nan, np.nan, np.nan, np.nan], [0.02] * 5, [0.0] * 5]), RATIO)
    assert p[0] == pytest.approx(2 * stats.t.sf(t, 3))
    assert math.isnan(p[1])  # one fold: no training variability to measure
    assert p[2] == 0.0  # the same difference whatever the training set
    assert p[3] == 1.0  # no difference at all


PATIENTS = 40


def _fold(better_by: int) -> FoldOutcomes:
    """One image per patient at 100X; row 1 is right on half the patients, row 0 on `better_by` more
    (or, when negative, that many fewer): a per-fold difference the same in every patient draw's
    direction, set by the fold."""
    y = np.arange(PATIENTS) % 2
    right = [np.arange(PATIENTS) < PATIENTS // 2 + better_by, np.arange(PATIENTS) < PATIENTS // 2]
    pred = np.stack([np.where(r, y, 1 - y) for r in right])
    proba = np.stack([1.0 - pred, pred], axis=-1) * 0.8 + 0.1
    return FoldOutcomes(np.arange(PATIENTS), np.ones(PATIENTS, dtype=int), y, proba, np.ones(2, dtype=bool))


@pytest.fixture
def few_resamples(monkeypatch: pytest.MonkeyPatch):
    """2,000 resamples (p >= 1/2001) clear Holm's bar for one pair."""
    monkeypatch.setattr(scoring, "BOOTSTRAP_RESAMPLES", 2000)


def test_a_difference_that_changes_with_the_training_set_is_a_tie_though_the_bootstrap_separates_it(few_resamples):
    # Row 0 ahead by 12, 2 behind, 12, 2 behind, 12 patients of 40: +0.16 on average, and no patient
    # draw within a fold changes that much; but a new training set moves it by a third.
    boot = bootstrap([_fold(b) for b in (12, -2, 12, -2, 12)], seed=3)
    diff, lo, _, p_bootstrap = paired_difference(boot, 0, 1)
    assert diff == pytest.approx(0.16) and lo > 0 and p_bootstrap < ALPHA
    per_fold = boot.folds["headline"][0] - boot.folds["headline"][1]
    assert corrected_t_pvalues(per_fold[None, :], RATIO)[0] > ALPHA
    ranks, better = tied_ranks(boot, RATIO)
    assert list(ranks) == [1, 1] and not better.any()


def test_a_difference_steady_across_training_sets_is_ranked(few_resamples):
    boot = bootstrap([_fold(b) for b in (6, 7, 6, 8, 6)], seed=3)
    ranks, better = tied_ranks(boot, RATIO)
    assert list(ranks) == [1, 2] and better[0, 1]


def test_with_one_fold_the_bootstrap_alone_decides(few_resamples):
    ranks, _ = tied_ranks(bootstrap([_fold(12)], seed=3), RATIO)
    assert list(ranks) == [1, 2]


def _ratio(split: str, patients: int, images: int, n_train: int) -> float:
    """holdout_ratio of a one-row section: 12 test patients and 96 test images in each of 3 folds."""
    checked = [
        replace(
            c,
            record=replace(
                c.record,
                dataset=replace(c.record.dataset, patients=patients, images=images),
                split=replace(c.record.split, n_train=n_train, n_test=96),
            ),
        )
        for c in _checked("a", 0.7, split=split)
    ]
    section = sections(checked)[0]
    return holdout_ratio(section, section.rows)


def test_the_holdout_ratio_counts_the_unit_the_split_draws():
    assert _ratio("patient", patients=40, images=300, n_train=204) == pytest.approx(12 / 28)  # patients
    assert _ratio("patient", patients=40, images=300, n_train=102) == pytest.approx(12 / 14)  # half trained on
    assert _ratio("image-kfold", patients=40, images=300, n_train=204) == pytest.approx(96 / 204)  # images
    assert _ratio("patient", patients=12, images=96, n_train=192) == pytest.approx(96 / 192)  # hand-built
