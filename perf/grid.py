"""The whole hand-crafted grid at BreaKHis size, as a user runs it: time and memory, cold and warm.

`bhbench run --method handcrafted` (24 baselines x 5 folds, binary task, one model over all
magnifications, the patient split `run` makes without fold files) on the BreaKHis-sized synthetic
set (`bhbench data synth --size breakhis`: 7,909 PNGs of 700x460, generated once into the default
cache if missing), twice with one fresh cache folder:

  cold   an empty BHBENCH_CACHE: every image decoded, every descriptor extracted (once per fold:
         each fold's partition has its own handles and feature cache, see `bhbench.blind`)
  warm   the same cache, a fresh results folder: every feature read back, only fits and predictions

Each phase is one `bhbench run` subprocess (its --workers, default one per core; sandbox as `run`
defaults it). Printed: wall and CPU minutes and peak memory of bhbench and every process under it,
sampled every half second (memory: the sum of their proportional set sizes, which counts shared
pages once), each against its target; then the records' own fit and
predict seconds summed by descriptor and classifier, cold and warm: what a descriptor's extraction
cost is the cold minus the warm time of its four rows.

The cache folder (decoded images ~1 MB each, features, blind areas) is removed at the end unless
--keep; the records go with it. With --cache DIR the cache is DIR and stays; if DIR is already
filled (an earlier run of the same grid), only the warm phase runs, e.g. to remeasure the fits
after a change without paying for extraction again.

Run: python perf/grid.py [--data PATH] [--workers 2] [--scratch DIR] [--method handcrafted] [--cache DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bhbench.data import synthetic
from bhbench.results import load
from bhbench.util import cpu_count

TARGETS = {"cold": (45.0, 8.0), "warm": (10.0, 8.0)}  # minutes, GB peak
TICKS = os.sysconf("SC_CLK_TCK")  # of /proc/<pid>/stat's CPU times


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="BreaKHis_v1 tree (default: BreaKHis-sized synthetic)")
    p.add_argument("--method", default="handcrafted", help="what `bhbench run --method` gets")
    p.add_argument("--workers", type=int, default=cpu_count())
    p.add_argument("--scratch", type=Path, default=None, help="where records (and the cache, without --cache) go")
    p.add_argument("--keep", action="store_true", help="keep the cache and records")
    p.add_argument("--cache", type=Path, default=None, help="a cache folder to keep; already filled: warm phase only")
    return p.parse_args()


def _tree(pid: int) -> list[int]:
    """pid and all its descendants, from /proc (children of each task)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return out


def _sample(pids: list[int], cpu: dict[tuple[int, str], float]) -> int:
    """Sum of the processes' proportional set sizes in bytes; records each one's CPU seconds so far
    in `cpu` by (pid, start time). Workers killed inside the sandbox are never waited for, so
    getrusage would not see their time: the last sample of each process is what counts (a process
    loses at most its last half second)."""
    total = 0
    for p in pids:
        try:
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:  # the process ended meanwhile
            continue
        # fields after the command name: utime and stime are the 12th and 13th, start time the 20th
        cpu[(p, stat[19])] = (int(stat[11]) + int(stat[12])) / TICKS
    return total


@dataclass
class Phase:
    name: str
    wall: float
    cpu: float
    peak: int  # bytes
    exit: int
    results: Path


def run_phase(name: str, command: list[str], env: dict[str, str], results: Path) -> Phase:
    print(f"\n== {name}: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen([*command, "--results", str(results)], env=env)
    peak, cpu = [0], {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            peak[0] = max(peak[0], _sample(_tree(proc.pid), cpu))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    stop.set()
    sampler.join()
    return Phase(name, time.perf_counter() - start, sum(cpu.values()), peak[0], code, results)


def record_seconds(results: Path) -> dict[str, float]:
    """Fit + predict seconds per method, summed over its folds (failed records count nothing)."""
    total: dict[str, float] = defaultdict(float)
    for path in results.rglob("fold*.json"):
        record = load(path)
        if record.timing is not None:
            total[record.method.name] += record.timing.fit_seconds + record.timing.predict_seconds
    return total


def print_summary(phases: list[Phase], images: int) -> None:
    print(f"\n{images:,} images, load now {os.getloadavg()[0]:.1f}")
    print(f"{'phase':6} {'wall min':>9} {'CPU min':>8} {'peak GB':>8} {'target':>16}  verdict")
    for ph in phases:
        minutes, gb = TARGETS[ph.name]
        wall, peak = ph.wall / 60, ph.peak / 2**30
        verdict = "met" if wall <= minutes and peak <= gb else f"missed: {wall / minutes:.2f}x the time"
        if ph.exit:
            verdict = f"bhbench run exited {ph.exit}"
        print(
            f"{ph.name:6} {wall:9.1f} {ph.cpu / 60:8.1f} {peak:8.2f} {f'<= {minutes:g} min, {gb:g} GB':>16}  {verdict}"
        )


def print_breakdown(cold: dict[str, float], warm: dict[str, float]) -> None:
    """Rows are descriptors, columns classifiers; each cell cold / warm seconds over all folds."""
    names = sorted(set(cold) | set(warm))
    split = [n.rsplit("_", 1) for n in names if "_" in n]
    descriptors = sorted({d for d, _ in split})
    classifiers = sorted({c for _, c in split})
    print("\nfit + predict seconds summed over the folds, from the records (cold / warm; one worker's time):")
    print(f"{'':8}" + "".join(f"{c:>16}" for c in classifiers) + f"{'extraction':>14}")
    for d in descriptors:
        cells = [(cold.get(f"{d}_{c}", 0.0), warm.get(f"{d}_{c}", 0.0)) for c in classifiers]
        extraction = sum(a - b for a, b in cells)
        print(f"{d:8}" + "".join(f"{a:8.0f} /{b:6.0f}" for a, b in cells) + f"{extraction:13.0f}s")
    for c in classifiers:
        seconds = sum(warm.get(f"{d}_{c}", 0.0) for d in descriptors)
        print(f"  warm {c}: {seconds / 60:.1f} min over its {len(descriptors)} descriptors")


def main() -> None:
    args = parse_args()
    data = args.data or synthetic.default_root(synthetic.BREAKHIS_SIZED)
    images = sum(1 for _ in data.rglob("*.png"))
    scratch = Path(tempfile.mkdtemp(prefix="bhbench-grid-", dir=args.scratch))
    cache = args.cache.resolve() if args.cache else scratch / "cache"
    # A kept cache filled by an earlier run of the same grid is warm: remeasuring after a change to
    # the fits then costs the warm phase alone.
    names = ["warm"] if cache.is_dir() and any(cache.iterdir()) else list(TARGETS)
    env = {**os.environ, "BHBENCH_CACHE": str(cache)}
    command = [
        sys.executable, "-m", "bhbench", "run", "--method", args.method, "--data", str(data),
        "--workers", str(args.workers),
    ]  # fmt: skip
    phases: list[Phase] = []
    try:
        for name in names:
            phases.append(run_phase(name, command, env, scratch / f"results-{name}"))
            if phases[-1].exit:
                break
        print_summary(phases, images)
        if len(phases) == 2:
            print_breakdown(*(record_seconds(ph.results) for ph in phases))
    finally:
        if args.keep:
            print(f"\nkept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
