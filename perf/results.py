"""compare, report and export on the committed board: reading and verifying every record (what they
did before) against what they do now, side by side in one run. compare reads the two rows' method
folders only. report and export read their row's records and need the leaderboard lines of every
section holding it (ranks are among all its rows): "cold", computed (the first call on a machine,
in an empty cache), and "warm", remembered from an earlier call or `bhbench leaderboard` for the same
records and code (`leaderboard/memo.py`). Target: at most 5 s each.

All paths give the same numbers or bytes; this prints each one's wall-clock seconds and the ratios.
Run from the repository root: python perf/results.py [--a lbp_svm] [--b majority]
"""

from __future__ import annotations

import argparse
import os
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
        os.environ["BHBENCH_CACHE"] = str(Path(tmp) / "cache")  # an empty cache: the first report is cold
        old_c, old_table = _timed(lambda: _compare_everything(args.a, args.b))
        new_c, new = _timed(lambda: api.compare(args.a, args.b, [COMMITTED_RESULTS]))
        pd.testing.assert_frame_equal(old_table, new.table)  # same numbers
        old_r, old_page = _timed(lambda: _report_everything(args.a, Path(tmp) / "old"))
        cold_r, cold = _timed(lambda: api.report(args.a, [COMMITTED_RESULTS], Path(tmp) / "cold"))
        warm_r, warm = _timed(lambda: api.report(args.a, [COMMITTED_RESULTS], Path(tmp) / "warm"))
        assert old_page.read_bytes() == cold.page.read_bytes() == warm.page.read_bytes(), "the pages differ"
        warm_e, _ = _timed(lambda: api.export([args.a], [COMMITTED_RESULTS], Path(tmp) / "export"))
    print(f"{'':28}{'every record':>14}{'cold':>10}{'warm':>10}{'ratio':>8}")
    print(f"{'compare ' + args.a + ' ' + args.b:28}{old_c:>12.1f} s{new_c:>8.1f} s{'':>10}{old_c / new_c:>7.1f}x")
    print(f"{'report ' + args.a:28}{old_r:>12.1f} s{cold_r:>8.1f} s{warm_r:>8.1f} s{old_r / warm_r:>7.1f}x")
    print(f"{'export ' + args.a:28}{'':>14}{'':>10}{warm_e:>8.1f} s")
    print(new.read)


if __name__ == "__main__":
    main()
