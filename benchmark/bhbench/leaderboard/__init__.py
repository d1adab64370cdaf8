"""The leaderboard, in three steps: `verify` every record against its predictions, `aggregate`
the accepted ones into one DataFrame per section (intervals, tied ranks), `render` Markdown, CSV
and figures from those DataFrames (and `site` the same as web pages under site/). `build` runs
them; `write` and `stale` use what it builds.
Method pages that exist in the output folder are rebuilt and verified with it, and each shipped
paper's page (`papers`) is written wherever the records hold its rows; `bhbench leaderboard
--report NAME` adds one (`bhbench report` writes its pages elsewhere: only this writes the board).
`read` is what the reading commands (compare, report, export) use: several results folders at once,
only the method folders a command needs."""

from __future__ import annotations

import fnmatch
import multiprocessing
import os
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pandas as pd
from threadpoolctl import threadpool_limits

from bhbench import results
from bhbench.errors import UserError
from bhbench.leaderboard import memo, papers, render, report, robustness, site
from bhbench.leaderboard.aggregate import Section, aggregate, frame, pct, sections
from bhbench.leaderboard.verify import Checked, check_all, verify
from bhbench.results import is_committed
from bhbench.util import atomic_write

__all__ = [
    "Board", "Checked", "Read", "aggregate", "build", "check_all", "named", "pct", "read", "stale", "verify", "write",
]  # fmt: skip


DRAWN_WITH = f"{render.FIGURES}/drawn-with.txt"


@dataclass
class Read:
    """What a reading command took from its results folders, and the sections the accepted records form."""

    counts: dict[Path, int]  # records read from each folder, in the order read
    shadowed: dict[Path, int]  # records of a folder at the same place as an earlier folder's: not read
    checked: list[Checked]
    sections: list[Section]

    def summary(self) -> str:
        """One line naming every folder read, e.g. "read 1,370 records from leaderboard/results
        (committed, read-only) and 15 from bhbench-results"."""
        parts = [
            f"{n:,} {'records ' if i == 0 else ''}from {f}" + (" (committed, read-only)" if is_committed(f) else "")
            for i, (f, n) in enumerate(self.counts.items())
        ]
        line = "read " + " and ".join(parts)
        first = next(iter(self.counts), None)
        for folder, n in self.shadowed.items():
            line += f"; {n:,} record(s) of {folder} are also in {first}: the first folder's are read"
        return line

    @property
    def folders(self) -> str:
        return ", ".join(str(f) for f in self.counts)


def named(patterns: Sequence[str]) -> Callable[[str, str, str], bool]:
    """A selection of the method folders that can hold rows named by `patterns` (method names,
    labels like `lbp_svm [C=10]`, wildcards): a label starts with its method's name."""
    wanted = [re.split(r" [\[(]", p, maxsplit=1)[0] for p in patterns]
    return lambda _dataset, _protocol, method: any(fnmatch.fnmatchcase(method, w) for w in wanted)


def read(
    folders: Sequence[Path], select: Callable[[str, str, str], bool] | None = None, pool: Executor | None = None
) -> Read:
    """The records of `folders` (those `select` accepts), each verified against its own folder's
    splits and manifests, grouped into sections across folders. A record at the same place
    (dataset/protocol/method/params/fold) in two folders is read from the first."""
    counts: dict[Path, int] = {}
    shadowed: dict[Path, int] = {}
    seen: set[Path] = set()
    checked: list[Checked] = []
    for folder in folders:
        paths = results.record_files(folder, select)
        fresh = [p for p in paths if p.relative_to(folder) not in seen]
        seen |= {p.relative_to(folder) for p in fresh}
        counts[folder] = len(fresh)
        if len(fresh) < len(paths):
            shadowed[folder] = len(paths) - len(fresh)
        checked += check_all(folder, pool, fresh)
    return Read(counts, shadowed, checked, sections(checked))


@dataclass
class Board:
    files: dict[str, bytes]  # path relative to the output folder -> content
    tables: dict[str, pd.DataFrame]  # section slug -> rows
    sections: list[Section]
    checked: list[Checked]


def tables(found: list[Section], pool: Executor | None = None) -> dict[str, pd.DataFrame]:
    """Each section's leaderboard lines (`frame`: bootstrap and ranks), in `pool`'s workers when given."""
    framed = pool.map(frame, found) if pool else map(frame, found)
    return {s.slug: t for s, t in zip(found, framed, strict=True)}


def ranked_tables(
    folders: Sequence[Path], held: Sequence[Section], pool: Executor | None = None
) -> tuple[dict[str, pd.DataFrame], Read]:
    """The leaderboard lines of every row of each section `held` names (ranks need them all), and
    what was read: remembered tables where the files are those they were computed from (`memo`), the
    others verified, computed and remembered."""
    keys, counts = {}, dict.fromkeys(folders, 0)
    for s in {s.slug: s for s in held}.values():
        keys[s.slug], found = memo.digest(folders, s.dataset.id, s.protocol.id)
        counts = {f: counts[f] + n for f, n in found.items()}
    kept = {slug: memo.recall(key) for slug, key in keys.items()}
    missing = {slug for slug, table in kept.items() if table is None}
    if missing:
        again = read(folders, lambda dataset, protocol, _method: f"{dataset}-{protocol}" in missing, pool)
        computed = tables(again.sections, pool)
        for slug, table in computed.items():
            memo.keep(keys[slug], table)
        kept.update(computed)
    return {slug: t for slug, t in kept.items() if t is not None}, Read(counts, {}, [], [])


def _section_output(section: Section) -> tuple[pd.DataFrame, dict[str, bytes]]:
    """A section's table (bootstrap, ranks) and figures: the bulk of the work, independent of the others."""
    table = frame(section)
    return table, render.section_figures(section, table)


@contextmanager
def workers() -> Iterator[ProcessPoolExecutor | None]:
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


def build(folders: Sequence[Path], output: Path, add_pages: Sequence[str] = ()) -> Board:
    """Everything `bhbench leaderboard` writes under `output`, from the records of `folders`: the
    method pages already there are rebuilt, and those of `add_pages` added."""
    with workers() as pool:
        got = read(folders, pool=pool)
        checked, found = got.checked, got.sections
        outputs = list(pool.map(_section_output, found)) if pool else [_section_output(s) for s in found]
        tables = {s.slug: table for s, (table, _) in zip(found, outputs, strict=True)}
        for s in found:  # what a report or an export of these records can reuse
            memo.keep(memo.digest(folders, s.dataset.id, s.protocol.id)[0], tables[s.slug])
        files: dict[str, bytes] = {}
        pages = render.existing_reports(output) | set(add_pages)
        for name in sorted(pages):
            try:
                files.update(report.page(found, name, tables, pool))
            except UserError:  # no record of that method any more: the page is an orphan
                if name in add_pages:
                    raise
                pages.discard(name)
        shifted = robustness.checked(folders, pool)  # robustness records: the Robustness section
    figs: dict[str, list[str]] = {}
    for s, (_, drawn) in zip(found, outputs, strict=True):
        figs[s.slug] = list(drawn)
        files.update({f"{render.FIGURES}/{name}": blob for name, blob in drawn.items()})
    robust, drawn = robustness.markdown(robustness.curves(shifted), found)
    files.update({f"{render.FIGURES}/{name}": blob for name, blob in drawn.items()})
    claims = []
    for name in papers.known():
        text, drawn = papers.board_page(papers.read(name), found, tables)
        if text is not None:
            claims.append(name)
            files[f"{papers.PAGES}/{name}.md"] = text.encode()
            files.update({f"{render.FIGURES}/{n}": blob for n, blob in drawn.items()})
    # SVG bytes are exact for one matplotlib release only; this file says which drew them.
    files[DRAWN_WITH] = f"matplotlib {version('matplotlib')}\n".encode()
    source = ", ".join(str(f) for f in folders)
    files["README.md"] = render.document(found, tables, figs, pages, source, robust, claims).encode()
    files["leaderboard.csv"] = render.csv(tables).encode()
    files.update(site.files(found, tables, figs, files, source, output))
    return Board(files, tables, found, checked + shifted)


def write(folders: Sequence[Path], output: Path, add_pages: Sequence[str] = ()) -> list[Checked]:
    board = build(folders, output, add_pages)
    for name, blob in board.files.items():
        atomic_write(output / name, blob)
    for orphan in _generated(output) - set(board.files):
        (output / orphan).unlink()
    return board.checked


def _generated(output: Path) -> set[str]:
    """Figures, method and shipped papers' pages, and the site's files present in the output folder."""
    found = {f"{papers.PAGES}/{n}.md" for n in papers.known() if (output / papers.PAGES / f"{n}.md").exists()}
    for pattern in (f"{render.FIGURES}/*.svg", f"{render.REPORTS}/*.md", f"{render.REPORTS}/{render.FIGURES}/*.svg"):
        found |= {p.relative_to(output).as_posix() for p in output.glob(pattern)}
    return found | {p.relative_to(output).as_posix() for p in (output / site.SITE).rglob("*") if p.is_file()}


def stale(folders: Sequence[Path], output: Path, notes: list[str] | None = None) -> list[str]:
    """Reasons the committed leaderboard is not what the records produce (empty when current).
    Figures drawn by another matplotlib release are not compared byte for byte (a note says so):
    their numbers are the tables', which are compared whatever the versions."""
    board = build(folders, output)
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
