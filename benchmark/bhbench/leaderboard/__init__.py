"""The leaderboard, in three steps: `verify` every record against its predictions, `aggregate`
the accepted ones into one DataFrame per section (intervals, tied ranks), `render` Markdown, CSV
and figures from those DataFrames. `build` runs them; `write` and `stale` use what it builds.
Method pages (`bhbench report`) that exist in the output folder are rebuilt and verified with it."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pandas as pd
from threadpoolctl import threadpool_limits

from bhbench.errors import UserError
from bhbench.leaderboard import render, report
from bhbench.leaderboard.aggregate import Section, aggregate, frame, pct, sections
from bhbench.leaderboard.verify import Checked, check_all, verify
from bhbench.util import atomic_write

__all__ = ["Board", "Checked", "aggregate", "build", "check_all", "load", "pct", "stale", "verify", "write"]


DRAWN_WITH = f"{render.FIGURES}/drawn-with.txt"


def load(root: Path) -> list[Section]:
    """The sections of the accepted records under `root` (for report, compare and export)."""
    return sections(check_all(root))


@dataclass
class Board:
    files: dict[str, bytes]  # path relative to the output folder -> content
    tables: dict[str, pd.DataFrame]  # section slug -> rows
    sections: list[Section]
    checked: list[Checked]


def _section_output(section: Section) -> tuple[pd.DataFrame, dict[str, bytes]]:
    """A section's table (bootstrap, ranks) and figures: the bulk of the work, independent of the others."""
    table = frame(section)
    return table, render.section_figures(section, table)


@contextmanager
def _workers() -> Iterator[ProcessPoolExecutor | None]:
    """Worker processes, one per core (forked: what they get and give back goes pickled, the same
    bytes), with one BLAS thread each: the matrices are small and many, the cores go to records and
    sections in parallel. None on one core."""
    cores = os.cpu_count() or 1
    with threadpool_limits(1):
        if cores == 1:
            yield None
            return
        with ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context("fork")) as pool:
            yield pool


def build(root: Path, output: Path) -> Board:
    """Everything `bhbench leaderboard` writes under `output`, from the records under `root`."""
    with _workers() as pool:
        checked = check_all(root, pool)
        found = sections(checked)
        futures = [pool.submit(_section_output, s) for s in found] if pool else []
        files: dict[str, bytes] = {}
        pages = render.existing_reports(output)
        for name in sorted(pages):
            try:
                files.update(report.page(found, name, pool))
            except UserError:  # no record of that method any more: the page is an orphan
                pages.discard(name)
        outputs = [f.result() for f in futures] if pool else [_section_output(s) for s in found]
    tables = {s.slug: table for s, (table, _) in zip(found, outputs, strict=True)}
    figs: dict[str, list[str]] = {}
    for s, (_, drawn) in zip(found, outputs, strict=True):
        figs[s.slug] = list(drawn)
        files.update({f"{render.FIGURES}/{name}": blob for name, blob in drawn.items()})
    # SVG bytes are exact for one matplotlib release only; this file says which drew them.
    files[DRAWN_WITH] = f"matplotlib {version('matplotlib')}\n".encode()
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


def stale(root: Path, output: Path, notes: list[str] | None = None) -> list[str]:
    """Reasons the committed leaderboard is not what the records produce (empty when current).
    Figures drawn by another matplotlib release are not compared byte for byte (a note says so):
    their numbers are the tables', which are compared whatever the versions."""
    board = build(root, output)
    reasons = [f"{c.path}: {p}" for c in board.checked for p in c.problems]
    committed = output / DRAWN_WITH
    other_drawer = committed.exists() and committed.read_bytes() != board.files[DRAWN_WITH]
    if other_drawer and notes is not None:
        notes.append(
            f"figures were drawn with {committed.read_text().strip()}, this is "
            f"{board.files[DRAWN_WITH].decode().strip()}: figures not compared byte for byte"
        )
    for name, expected in board.files.items():
        path = output / name
        if other_drawer and name.endswith((".svg", DRAWN_WITH)) and path.exists():
            continue
        if not path.exists() or path.read_bytes() != expected:
            reasons.append(f"{path} is not what the records produce; run `bhbench leaderboard`")
    for orphan in sorted(_generated(output) - set(board.files)):
        reasons.append(f"{output / orphan} is produced by no record; run `bhbench leaderboard`")
    return reasons
