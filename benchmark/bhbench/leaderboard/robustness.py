"""Robustness to stain: the headline of a fitted method as its test images are shifted in HED space
(`bhbench robustness`, `bhbench.perturb`), and the stain-shift penalty: how much a method's headline
drops when its test patients were stained unlike its training patients (the `cross-stain` split)
rather than drawn at random in the same numbers (the `stain-random` split), with a 95% interval. For
the board's Robustness section and the command's table.

A robustness record holds each test image's predictions at every strength, made by one fit. The
strengths of a row are scored as rows of one leaderboard block: the patient bootstrap draws the same
patients for all of them, so the drop from strength 0 is a paired difference with its own interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tabulate import tabulate

from bhbench import results
from bhbench.errors import UserError
from bhbench.leaderboard import figures as figs
from bhbench.leaderboard.aggregate import Row, Section, uncertainty
from bhbench.leaderboard.render import FIGURES, dataset_title
from bhbench.leaderboard.verify import Checked, Scored, check_all
from bhbench.metric import FoldOutcomes
from bhbench.protocol import MAGNIFICATIONS, Protocol
from bhbench.record import DatasetInfo
from bhbench.scoring import HEADLINE, bootstrap, percentile_interval


@dataclass(frozen=True)
class Curve:
    """One row's headline at each strength, with 95% intervals, and its drop from strength 0."""

    dataset: DatasetInfo
    protocol: Protocol  # its stain normalisation included
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


def checked(folders: Sequence[Path], pool: Executor | None = None) -> list[Checked]:
    """Every robustness record of the folders, verified against its predictions, split and manifest
    (in `pool`'s workers when given)."""
    return [c for f in folders for c in check_all(f, pool, results.record_files(f, kind=results.ROBUSTNESS))]


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
        first.dataset,
        first.protocol,
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


# --- the stain-shift penalty ----------------------------------------------------------------------


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


# --- the board's section -------------------------------------------------------------------------

NORMS = ("none", "macenko", "reinhard")


def _base(protocol: Protocol) -> Protocol:
    """The protocol without its stain normalisation: the rows a Robustness table sets side by side."""
    return replace(protocol, stain_norm="none")


def _penalties(sections: list[Section], dataset: str, base: Protocol) -> dict[tuple[str, str], Penalty]:
    """The stain-shift penalty of each (method label, normalisation) whose cross-stain and
    stain-random sections (of this dataset, task, regime and seed) are on the board."""
    found: dict[tuple[str, str], Penalty] = {}
    for norm in NORMS:
        twins = {
            s.protocol.split: s
            for s in sections
            if s.dataset.id == dataset
            and s.protocol.stain_norm == norm
            and replace(s.protocol, split=base.split, stain_norm="none") == base
        }
        if "stain-random" in twins and "cross-stain" in twins:
            found.update({(p.label, norm): p for p in penalties(twins["stain-random"], twins["cross-stain"])})
    return found


def _cell(value: float, low: float, high: float) -> str:
    return f"{100 * value:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def _table(rows: list[Curve], penalty: dict[tuple[str, str], Penalty]) -> str:
    strengths = rows[0].strengths
    raw = {c.method: c.headline[0] for c in rows if c.protocol.stain_norm == "none"}
    ordered = sorted(
        rows, key=lambda c: (-raw.get(c.method, c.headline[0]), c.method, NORMS.index(c.protocol.stain_norm))
    )
    lines = []
    for c in ordered:
        p = penalty.get((c.method, c.protocol.stain_norm))
        drops = [_cell(c.drop[i], c.drop_low[i], c.drop_high[i]) for i in range(1, len(strengths))]
        gap = _cell(p.gap, p.low, p.high) if p else "–"
        lines.append([c.method, c.protocol.stain_norm, f"{100 * c.headline[0]:.1f}", *drops, gap])
    header = ["method", "stain normalisation", "PRR, unshifted", *(f"drop at {s:g}" for s in strengths[1:]),
              "stain-shift penalty"]  # fmt: skip
    return tabulate(lines, header, tablefmt="github", disable_numparse=True)


def markdown(found: list[Curve], sections: list[Section]) -> tuple[list[str], dict[str, bytes]]:
    """The board's Robustness section and its figures (one per dataset and protocol), from the
    robustness curves and the ordinary sections holding cross-stain and stain-random rows."""
    if not found:
        return [], {}
    groups: dict[tuple[str, str], list[Curve]] = {}
    for c in found:
        groups.setdefault((c.dataset.id, _base(c.protocol).id), []).append(c)
    lines = [
        "## Robustness to stain",
        "",
        "Each row's method is fitted once per fold; its test images are then predicted again shifted in HED",
        "space at graded strengths s (each stain's concentration scaled by U(1-s, 1+s) and offset by U(-s, s)",
        "of its range, seeded per image: `bhbench robustness`). *Drop at s* = PRR unshifted minus PRR at s",
        "(percentage points, paired patient bootstrap 95% interval). *Stain-shift penalty* = PRR when test",
        "patients are a random share of the patients minus PRR when they are the stain cluster the",
        "training patients are not (`--split stain-random` vs `--split cross-stain`, both directions), with",
        "its interval. With a stain normalisation the harness normalises every image, shifted ones after",
        "their shift, to a target fitted on the fold's training images.",
        "",
        "A drop's interval resamples patients with each image's one shift draw held fixed: it does not",
        "count how another draw of the same strength would have moved the rate, so on a small test set a",
        "drop can be narrow, change sign between strengths, and still be chance. `stratified` draws its",
        "guess from each image's pixels, so a shifted image gets a fresh guess: its drops are chance alone,",
        "the yardstick for the others.",
        "",
    ]
    figures: dict[str, bytes] = {}
    for (dataset, base_id), rows in sorted(groups.items()):
        base = _base(rows[0].protocol)
        name = f"robustness-{dataset}-{base_id}.svg"
        title = f"{dataset_title(rows[0].dataset)} — {base.title}"
        figures[name] = figs.stain_shift(
            {
                n: [c for c in rows if c.protocol.stain_norm == n]
                for n in NORMS
                if any(c.protocol.stain_norm == n for c in rows)
            },
            title,
        )
        lines += [f"### {title}", "", _table(rows, _penalties(sections, dataset, base)), "",
                  f"![headline against shift strength]({FIGURES}/{name})", ""]  # fmt: skip
    return lines, figures
