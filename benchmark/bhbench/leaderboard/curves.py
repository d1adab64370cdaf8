"""Figures across protocols: the learning curve (headline against the share of training patients,
`--train-fraction`) and the cross-magnification transfer matrix (`--train-mags`, `--test-mags`).

Both read `points`: the leaderboard's numbers (`aggregate.frame`) of many sections at once, each
line carrying its protocol's training fraction and magnifications. They are drawn as the other
figures are (`figures.svg`), so their bytes too are a function of the records alone."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bhbench.leaderboard.aggregate import Section, frame
from bhbench.leaderboard.figures import svg
from bhbench.protocol import MAGNIFICATIONS
from bhbench.scoring import HEADLINE

MEAN, LO, HI = (f"{HEADLINE.name}_{part}" for part in ("mean", "lo", "hi"))


def points(found: list[Section], tables: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """The ranked lines of every section (`tables`, by slug, where the board computed them already),
    with the protocol's train_fraction, train_mags and test_mags."""
    tables = tables or {}
    parts = [
        (tables[s.slug] if s.slug in tables else frame(s)).assign(
            train_fraction=s.protocol.train_fraction,
            train_mags=lambda t, s=s: [s.protocol.train_mags] * len(t),  # a tuple per line, not spread
            test_mags=lambda t, s=s: [s.protocol.test_mags] * len(t),
        )
        for s in found
    ]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return table[table["block"] == "ranked"].reset_index(drop=True) if len(table) else table


def learning_curve(table: pd.DataFrame, title: str) -> bytes:
    """Headline (mean over folds, 95% bootstrap interval) against the share of training patients,
    one line per method; protocols that restrict magnifications are left out."""
    scale = HEADLINE.metric.unit.scale
    rows = table[table["train_mags"].isna() & table["test_mags"].isna()]

    def draw(fig) -> None:
        ax = fig.subplots()
        for i, (method, part) in enumerate(rows.sort_values("train_fraction").groupby("method", sort=True)):
            x = part["train_fraction"].to_numpy(dtype=float)
            mean = scale * part[MEAN].to_numpy(dtype=float)
            ax.plot(x, mean, "o-", color=f"C{i}", ms=4, label=method)
            ax.fill_between(x, scale * part[LO].to_numpy(dtype=float), scale * part[HI].to_numpy(dtype=float),
                            color=f"C{i}", alpha=0.15, lw=0)  # fmt: skip
        ax.set_xlabel("share of each fold's training patients")
        ax.set_ylabel("patient recognition rate (%), 95% interval")
        ax.legend(fontsize=8, loc="lower right")
        ax.set_title(title, fontsize=9)

    return svg(draw, 5.5, 4)


def transfer_grid(table: pd.DataFrame, method: str) -> np.ndarray:
    """The method's headline by training (rows) and test (columns) magnification, from the protocols
    that train at one magnification and test at one; NaN where none was run."""
    grid = np.full((len(MAGNIFICATIONS), len(MAGNIFICATIONS)), np.nan)
    for _, line in table[table["method"] == method].iterrows():
        train, test = line["train_mags"], line["test_mags"]
        if isinstance(train, tuple) and isinstance(test, tuple) and len(train) == len(test) == 1:
            grid[MAGNIFICATIONS.index(train[0]), MAGNIFICATIONS.index(test[0])] = line[MEAN]
    return HEADLINE.metric.unit.scale * grid


def transfer_matrix(table: pd.DataFrame, method: str, title: str) -> bytes:
    """Heatmap of `transfer_grid`: the diagonal trains and tests at one magnification, the rest transfer."""
    grid = transfer_grid(table, method)
    labels = [f"{m}X" for m in MAGNIFICATIONS]

    def draw(fig) -> None:
        ax = fig.subplots()
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0, vmax=HEADLINE.metric.unit.scale)
        for (i, j), value in np.ndenumerate(grid):
            shown = ("not run", "grey") if np.isnan(value) else (f"{value:.1f}", "white" if value < 60 else "black")
            text, colour = shown
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=colour)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("tested at")
        ax.set_ylabel("trained at")
        ax.grid(False)
        fig.colorbar(image, ax=ax, label="patient recognition rate (%)")
        ax.set_title(title, fontsize=9)

    return svg(draw, 5, 4.2)
