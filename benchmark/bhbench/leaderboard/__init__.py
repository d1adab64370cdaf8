"""The leaderboard, in three steps: `verify` every record against its predictions, `aggregate`
the accepted ones into one DataFrame per section (intervals, tied ranks), `render` Markdown, CSV
and figures from those DataFrames. `build` runs them; `write` and `stale` use what it builds.
Method pages (`bhbench report`) that exist in the output folder are rebuilt and verified with it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bhbench.errors import UserError
from bhbench.leaderboard import render, report
from bhbench.leaderboard.aggregate import Section, aggregate, frame, pct, sections
from bhbench.leaderboard.verify import Checked, check_all, verify
from bhbench.util import atomic_write

__all__ = ["Board", "Checked", "aggregate", "build", "check_all", "load", "pct", "stale", "verify", "write"]


def load(root: Path) -> list[Section]:
    """The sections of the accepted records under `root` (for report, compare and export)."""
    return sections(check_all(root))


@dataclass
class Board:
    files: dict[str, bytes]  # path relative to the output folder -> content
    tables: dict[str, pd.DataFrame]  # section slug -> rows
    sections: list[Section]
    checked: list[Checked]


def build(root: Path, output: Path) -> Board:
    """Everything `bhbench leaderboard` writes under `output`, from the records under `root`."""
    checked = check_all(root)
    found = sections(checked)
    tables = {s.slug: frame(s) for s in found}
    files: dict[str, bytes] = {}
    figs: dict[str, list[str]] = {}
    for s in found:
        drawn = render.section_figures(s, tables[s.slug])
        figs[s.slug] = list(drawn)
        files.update({f"{render.FIGURES}/{name}": blob for name, blob in drawn.items()})
    pages = render.existing_reports(output)
    for name in sorted(pages):
        try:
            files.update(report.page(found, name))
        except UserError:  # no record of that method any more: the page is an orphan
            pages.discard(name)
    text = render.document(found, tables, figs, pages)
    files["README.md"] = text.encode()
    files["leaderboard.csv"] = render.csv(tables).encode()
    return Board(files, tables, found, checked)


def write(root: Path, output: Path) -> list[Checked]:
    board = build(root, output)
    for name, blob in board.files.items():
        atomic_write(output / name, blob)
    for orphan in _generated(output) - set(board.files):
        (output / orphan).unlink()
    return board.checked


def _generated(output: Path) -> set[str]:
    """Figures and method pages present in the output folder."""
    found = set()
    for pattern in (f"{render.FIGURES}/*.svg", f"{render.REPORTS}/*.md", f"{render.REPORTS}/{render.FIGURES}/*.svg"):
        found |= {p.relative_to(output).as_posix() for p in output.glob(pattern)}
    return found


def stale(root: Path, output: Path) -> list[str]:
    """Reasons the committed leaderboard is not what the records produce (empty when current)."""
    board = build(root, output)
    reasons = [f"{c.path}: {p}" for c in board.checked for p in c.problems]
    for name, expected in board.files.items():
        path = output / name
        if not path.exists() or path.read_bytes() != expected:
            reasons.append(f"{path} is not what the records produce; run `bhbench leaderboard`")
    for orphan in sorted(_generated(output) - set(board.files)):
        reasons.append(f"{output / orphan} is produced by no record; run `bhbench leaderboard`")
    return reasons
