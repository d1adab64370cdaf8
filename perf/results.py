"""compare and report on the committed board: reading every record (what they did before) against
reading only the records they need (the method folders of the rows asked for, and for report's
ranks the sections holding them), side by side in one run. Target: at most 5 s each.

Both paths give the same numbers; this prints each one's wall-clock seconds and their ratio.
Run from the repository root: python perf/results.py [--a lbp_svm] [--b majority]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from bhbench import api
from bhbench import leaderboard as board
from bhbench.config import COMMITTED_RESULTS
from bhbench.leaderboard import compare, report
from bhbench.leaderboard.aggregate import find_rows


def _timed(what: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = what()
    return time.perf_counter() - start, out


def _compare_everything(a: str, b: str) -> pd.DataFrame:
    return compare.compare(board.read([COMMITTED_RESULTS]).sections, a, b)


def _report_everything(name: str, output: Path) -> Path:
    with board.workers() as pool:
        found = board.read([COMMITTED_RESULTS], pool=pool).sections
        held = [s for s, _ in find_rows(found, name)]
        return report.write(found, name, board.tables(held, pool), output, pool)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", default="lbp_svm")
    parser.add_argument("--b", default="majority")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old_c, old_table = _timed(lambda: _compare_everything(args.a, args.b))
        new_c, new = _timed(lambda: api.compare(args.a, args.b, [COMMITTED_RESULTS]))
        pd.testing.assert_frame_equal(old_table, new.table)  # same numbers
        old_r, old_page = _timed(lambda: _report_everything(args.a, Path(tmp) / "old"))
        new_r, done = _timed(lambda: api.report(args.a, [COMMITTED_RESULTS], Path(tmp) / "new"))
        assert old_page.read_bytes() == done.page.read_bytes(), "the two pages differ"
    print(f"{'':28}{'every record':>14}{'what it needs':>15}{'ratio':>8}")
    for what, old, fresh in ((f"compare {args.a} {args.b}", old_c, new_c), (f"report {args.a}", old_r, new_r)):
        print(f"{what:28}{old:>12.1f} s{fresh:>13.1f} s{old / fresh:>7.1f}x")
    print(new.read)


if __name__ == "__main__":
    main()
