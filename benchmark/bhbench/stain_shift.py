"""The stain-shift penalty: how much a method's headline drops when its test patients were stained
unlike its training patients (the `cross-stain` split) rather than drawn at random in the same
numbers (the `stain-random` split), with a 95% patient-bootstrap interval."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bhbench.errors import UserError
from bhbench.leaderboard.aggregate import Row, Section, uncertainty
from bhbench.scoring import HEADLINE, percentile_interval


@dataclass(frozen=True)
class Penalty:
    """One method's headline under both splits and the gap (random minus cross-stain): a positive
    gap is what a change of stain costs it."""

    label: str
    random: float
    cross_stain: float
    gap: float
    low: float  # 95% interval of the gap
    high: float


def _twin_check(random: Section, cross: Section) -> None:
    """The two sections must be the same dataset, task, regime, magnification and seed."""
    kinds = (random.protocol.split, cross.protocol.split)
    if kinds != ("stain-random", "cross-stain"):
        raise UserError(f"the stain-shift penalty compares a stain-random and a cross-stain section, not {kinds}")
    mine, theirs = random.protocol.to_json(), cross.protocol.to_json()
    differ = sorted(k for k in mine if k not in ("split", "id") and mine[k] != theirs[k])
    if random.dataset.id != cross.dataset.id:
        differ.insert(0, "dataset")
    if differ:
        raise UserError(f"sections {random.slug} and {cross.slug} differ in {', '.join(differ)}")


def _variant(row: Row) -> tuple[str, str, str | None]:
    return row.name, row.params_hash, row.code


def _headline(rows: list[Row], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's fold-averaged headline and its bootstrap draws (draws, rows)."""
    boot = uncertainty(rows, seed)
    assert boot is not None  # rows is never empty here
    return boot.mean(HEADLINE.name), boot.draws[HEADLINE.name]


def penalties(random: Section, cross: Section, seed: int = 0) -> list[Penalty]:
    """The penalty of every method variant (same name, parameters and code) in both sections.

    The two splits test different images, so the gap's draws are unpaired: each section is
    resampled on its own, under different bootstrap seeds (a shared seed would draw the same patient
    positions in folds of equal size, pairing unrelated patients), and the draws are subtracted."""
    _twin_check(random, cross)
    theirs = {_variant(r): r for r in cross.rows}
    pairs = [(r, theirs[_variant(r)]) for r in random.rows if _variant(r) in theirs]
    if not pairs:
        return []
    random_point, random_draws = _headline([a for a, _ in pairs], seed)
    cross_point, cross_draws = _headline([b for _, b in pairs], seed + 1)
    low, high = percentile_interval(random_draws - cross_draws, axis=0)
    return [
        Penalty(
            a.label,
            float(random_point[i]),
            float(cross_point[i]),
            float(random_point[i] - cross_point[i]),
            float(low[i]),
            float(high[i]),
        )
        for i, (a, _) in enumerate(pairs)
    ]
