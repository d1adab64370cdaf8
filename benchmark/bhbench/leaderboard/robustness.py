"""Robustness to stain: the headline of a fitted method as its test images are shifted in HED space
(`bhbench robustness`, `bhbench.perturb`), and the stain-shift penalty of the cross-stain split
(`bhbench.stain_shift`), for the board's Robustness section and the command's table.

A robustness record holds each test image's predictions at every strength, made by one fit. The
strengths of a row are scored as rows of one leaderboard block: the patient bootstrap draws the same
patients for all of them, so the drop from strength 0 is a paired difference with its own interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bhbench.leaderboard.verify import Checked, Scored, check_all
from bhbench.metric import FoldOutcomes
from bhbench.protocol import MAGNIFICATIONS
from bhbench.scoring import HEADLINE, bootstrap, percentile_interval


@dataclass(frozen=True)
class Curve:
    """One row's headline at each strength, with 95% intervals, and its drop from strength 0."""

    dataset: str
    protocol: str  # the protocol's id (its stain normalisation included)
    method: str
    params_hash: str
    strengths: tuple[float, ...]
    folds: int
    headline: np.ndarray  # per strength
    low: np.ndarray
    high: np.ndarray
    drop: np.ndarray  # headline at 0 minus headline at each strength: positive is what the shift costs
    drop_low: np.ndarray
    drop_high: np.ndarray


def files(folders: Sequence[Path]) -> list[tuple[Path, Path]]:
    """(results folder, robustness record file) for every robustness record of the folders."""
    return [(folder, path) for folder in folders for path in sorted(folder.rglob("robustness-fold*.json"))]


def checked(folders: Sequence[Path]) -> list[Checked]:
    """Every robustness record of the folders, verified against its predictions, split and manifest."""
    found = []
    for folder in folders:
        found += check_all(folder, paths=[p for f, p in files([folder]) if f == folder])
    return found


def _fold(by_strength: dict[float, Scored], strengths: tuple[float, ...]) -> FoldOutcomes:
    """One fold's test images with, as the block's rows, the predictions at each strength."""
    base = by_strength[0.0]
    order = np.argsort(base.filenames)
    proba = []
    for s in strengths:
        scored = by_strength[s]
        proba.append(scored.proba[np.argsort(scored.filenames)])
    patients = np.unique(base.patients[order], return_inverse=True)[1]
    mags = np.array([MAGNIFICATIONS.index(int(m)) for m in base.magnifications[order]])
    return FoldOutcomes(patients, mags, base.y[order], np.stack(proba), np.ones(len(strengths), dtype=bool))


def curve(records: list[Checked], seed: int = 0) -> Curve:
    """The curve of one row's accepted robustness records (one per fold, the same strengths)."""
    first = records[0].record
    assert first is not None and first.perturbation is not None
    strengths = tuple(sorted(first.perturbation.strengths))
    folds = [_fold(c.shifted, strengths) for c in records if c.shifted is not None]
    boot = bootstrap(folds, seed=seed)
    draws = boot.draws[HEADLINE.name]  # (draws, strengths)
    low, high = percentile_interval(draws, axis=0)
    drop_low, drop_high = percentile_interval(draws[:, :1] - draws, axis=0)
    headline = boot.mean(HEADLINE.name)
    return Curve(
        first.dataset.id,
        first.protocol.id,
        first.method.name,
        first.method.params_hash,
        strengths,
        len(folds),
        headline,
        low,
        high,
        headline[0] - headline,
        drop_low,
        drop_high,
    )


def curves(found: list[Checked]) -> list[Curve]:
    """A curve per row (dataset, protocol, method, parameters) of the accepted records."""
    rows: dict[tuple[str, str, str, str], list[Checked]] = {}
    for c in found:
        if c.accepted and c.record is not None and c.record.ok:
            r = c.record
            rows.setdefault((r.dataset.id, r.protocol.id, r.method.name, r.method.params_hash), []).append(c)
    return [curve(sorted(rs, key=lambda c: c.path)) for _, rs in sorted(rows.items())]
