"""Where a run's rows would stand on a leaderboard section, before anyone regenerates it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bhbench.record import RunRecord
from bhbench.results import all_records


def mean_headline(records: list[RunRecord]) -> dict[tuple[str, str], tuple[float, int]]:
    """(method, params hash) -> (mean patient recognition rate, folds) over the successful records."""
    rows: dict[tuple[str, str], list[float]] = {}
    for r in records:
        if r.metrics is not None:
            rows.setdefault((r.method.name, r.method.params_hash), []).append(r.metrics.headline)
    return {k: (float(np.mean(v)), len(v)) for k, v in rows.items()}


def would_rank(
    row: tuple[str, str], score: float, board: dict[tuple[str, str], tuple[float, int]]
) -> tuple[int, int] | None:
    """Where a row with mean PRR `score` would rank among the other methods of a leaderboard section
    (`board`: its rows' `mean_headline`, read once for every row of a run): (rank, rows), or None
    when the section holds no other method."""
    others = [prr for (name, _), (prr, _) in board.items() if name != row[0]]
    return (1 + sum(prr > score for prr in others), len(others) + 1) if others else None


def section_headlines(board: Path) -> dict[tuple[str, str], tuple[float, int]]:
    """`mean_headline` of every record in a leaderboard section (`board` = results/<dataset>/<protocol>)."""
    return mean_headline([r for _, r in all_records(board) if r])
