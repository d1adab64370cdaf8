"""What blind test sets cost: the same work as before them (no sandbox, test images in file-name
order), shuffled without the sandbox (`off`) and shuffled in it (`on`), side by side in one run,
printed as ratios (on / off, on / before).

1. worker start-up: a fresh worker answering a trivial task (spawned interpreter against bwrap +
   interpreter), which a sandboxed run pays once per fold;
2. a hand-crafted fold (lbp_svm by default): the whole (method, fold) job through `runner.run_job`,
   the method's derived-data cache emptied before each repeat so both pay for their features;
3. a short deep fit and predict (cnn by default): the job's fit and predict seconds as the record
   states them, and the same method on 200 images held in memory, which isolates training and
   inference throughput from the image cache's disk traffic. Target: within 5%.

Runs alternate (before, off, on, on, off, before...) on the synthetic tiny set in a private cache; each figure is the
best of its repeats (the least disturbed one on a shared machine). Needs a working bwrap.
Run from the repository root: python perf/blind.py [--repeats 4] [--epochs 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

# "before" = no sandbox and test images in file-name order, as the harness was before blind test sets.
ORDERED = "none ordered"
LAUNCHERS = (ORDERED, "none", "bubblewrap")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--startups", type=int, default=5, help="worker start-ups timed per launcher and repeat")
    p.add_argument("--handcrafted", default="lbp_svm")
    p.add_argument("--deep", default="cnn")
    p.add_argument("--epochs", type=int, default=1, help="epochs of the deep fit")
    return p.parse_args()


def in_memory(n: int, side: int) -> list:
    """One part of n random images held in memory (no image store, no disk), two classes."""
    import numpy as np

    from bhbench.method import TestSet, TrainMeta, TrainSet

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(n)]
    y = np.arange(n) % 2
    meta = TrainMeta(y, y > 0, np.array(["A"] * n), np.full(n, 40), np.array([f"p{i % 10}" for i in range(n)]))
    return [(TrainSet.build("binary", meta, images=images), TestSet.build("binary", images=images))]


def startup(launcher: str, n: int) -> float:
    """Median seconds from nothing to a fresh worker's answer to a two-image task."""
    from bhbench.worker import Task, Worker

    parts = in_memory(2, 8)
    times = []
    for _ in range(n):
        worker = Worker(None, launcher)
        t0 = time.perf_counter()
        worker.run(Task("majority", {}, parts), timeout=120)
        times.append(time.perf_counter() - t0)
        worker.stop()
    return statistics.median(times)


def deep_in_memory(launcher: str, name: str, epochs: int) -> dict[str, float]:
    """Fit and predict seconds of a deep method on 200 in-memory images: training and inference
    throughput alone, without the image cache's disk reads and writes."""
    from bhbench.worker import Task, Worker

    worker = Worker(None, launcher)
    try:
        outcome = worker.run(Task(name, {"epochs": epochs, "device": "cpu"}, in_memory(200, 100)), timeout=1800)
    finally:
        worker.stop()
    return {"fit": outcome.fit_seconds, "predict": outcome.predict_seconds}


class _FileOrder:
    """Stands in for the runner's secret generator to hand test images over in file-name order, as
    before blind test sets: measures what the shuffle costs (measurement only; contract sample kept)."""

    def __init__(self) -> None:
        import numpy as np

        self._rng = np.random.default_rng(0)

    def permutation(self, n: int):
        import numpy as np

        return np.arange(n)

    def choice(self, *args, **kwargs):
        return self._rng.choice(*args, **kwargs)


def job_seconds(plan, spec, launcher: str, shuffle: bool = True) -> dict[str, float]:
    """Wall seconds of one (method, fold) job in a fresh worker, and its fit and predict seconds."""
    from bhbench import blind, runner

    runner.secret_rng = blind.secret_rng if shuffle else _FileOrder
    from bhbench.config import cache_dir
    from bhbench.worker import Worker

    options = runner.Options(results=Path(tempfile.mkdtemp()), force=True, fps_images=0, sandbox=launcher)
    (job,) = runner.make_jobs(plan, [spec], options)[:1]
    for area in cache_dir("blind").iterdir():  # no features or resized images left by the last repeat
        shutil.rmtree(area / "cache", ignore_errors=True)
    worker = Worker(None, launcher)
    try:
        t0 = time.perf_counter()
        record = runner.run_job(plan, job, worker, options)
        wall = time.perf_counter() - t0
    finally:
        worker.stop(kill=True)
    if record.timing is None:  # failed
        sys.exit(f"{spec.name} failed under {launcher}: {record.error}")
    return {"job": wall, "fit": record.timing.fit_seconds, "predict": record.timing.predict_seconds}


def main() -> None:
    args = parse_args()
    os.environ["BHBENCH_CACHE"] = tempfile.mkdtemp(prefix="bhbench-perf-blind-")
    from bhbench import registry, runner, sandbox
    from bhbench.data import synthetic
    from bhbench.data.sources import open_dataset
    from bhbench.protocol import Protocol

    problem = sandbox.unavailable()
    if problem:
        sys.exit(f"no sandbox to measure: {problem}; {sandbox.INSTALL}")
    registry.discover()
    tree = synthetic.generate(Path(os.environ["BHBENCH_CACHE"]) / "tiny", synthetic.TINY)
    options = runner.Options(results=Path(tempfile.mkdtemp()), fps_images=0)
    plan = runner.make_plan(open_dataset(tree), Protocol(), None, options)
    specs = {
        "hand-crafted fold": runner.MethodSpec.create(args.handcrafted, {}),
        "deep fold": runner.MethodSpec.create(args.deep, {"epochs": args.epochs, "device": "cpu"}),
    }
    best: dict[tuple[str, str], float] = {}

    def keep(name: str, launcher: str, seconds: float) -> None:
        best[name, launcher] = min(best.get((name, launcher), float("inf")), seconds)

    for repeat in range(args.repeats):
        # Alternate which goes first, so a neighbour's load drifting over time favours neither.
        for launcher in LAUNCHERS if repeat % 2 == 0 else LAUNCHERS[::-1]:
            for label, spec in specs.items():
                timing = job_seconds(plan, spec, launcher.split()[0], shuffle=launcher != ORDERED)
                keep(f"{label}: whole job ({spec.name})", launcher, timing["job"])
                if label == "deep fold":
                    keep(f"  its fit ({args.epochs} epochs)", launcher, timing["fit"])
                    keep("  its predict", launcher, timing["predict"])
            if launcher == ORDERED:  # the rest does not depend on the order: measured once, unsandboxed
                continue
            keep("worker start-up", launcher, startup(launcher, args.startups))
            timing = deep_in_memory(launcher, args.deep, args.epochs)
            keep(f"deep fit, images in memory ({args.deep})", launcher, timing["fit"])
            keep(f"deep predict, images in memory ({args.deep})", launcher, timing["predict"])
        print(f"repeat {repeat + 1} of {args.repeats} done", file=sys.stderr)

    head = ("before", "off", "on", "on/off", "on/before")
    print(f"{'seconds (best of ' + str(args.repeats) + ')':44}" + "".join(f"{h:>10}" for h in head))
    for name in dict.fromkeys(n for n, _ in best):
        off, on = best[name, "none"], best[name, "bubblewrap"]
        before = best.get((name, ORDERED), off)  # start-up and in-memory work do not depend on the order
        print(f"{name:44}" + "".join(f"{v:10.3f}" for v in (before, off, on, on / off, on / before)))


if __name__ == "__main__":
    main()
