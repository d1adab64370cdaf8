"""Regenerating the leaderboard: this checkout against an older commit side by side, and a 10x stress set.

Both build the committed records (leaderboard/results) into a temporary folder, the committed method
pages copied in first so that they are rebuilt too, with `bhbench leaderboard` run as a user runs it
(a whole new process); the older commit is exported with `git archive` and run through PYTHONPATH
with the same interpreter and packages. Printed: wall-clock seconds of each, their ratio, and the CPU
seconds of each process tree. The outputs are then compared: every file the older commit writes must
come out of this checkout with the same bytes apart from what this checkout adds (Markdown lines, CSV
columns), which is listed; any other difference is printed.

Then the stress set: the committed records ten times over (the originals and nine copies, each
copy a distinct dataset whose probabilities are perturbed, seeded, with its stored metrics
recomputed so that every record verifies), built by this checkout. Targets: at most 20 s for
today's records, at most 3 min for the stress set.

Run from the repository root: python perf/leaderboard.py [--against a79daba] [--copies 10]
"""

from __future__ import annotations

import argparse
import csv
import difflib
import hashlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from startup import export  # perf/ is on the path when this script runs

from bhbench.data.names import parse_name
from bhbench.protocol import TASK_CLASSES
from bhbench.scoring import score_all

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "leaderboard"


def build(env: dict[str, str], results: Path, output: Path) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system, the process and its workers) of one leaderboard build."""
    output.mkdir(parents=True)
    shutil.copytree(COMMITTED / "reports", output / "reports")  # the pages are rebuilt with the board
    argv = [sys.executable, "-m", "bhbench", "leaderboard", "--results", str(results), "--output", str(output)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"bhbench leaderboard failed: {done.stderr.strip().splitlines()[-1:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def compare(old: Path, new: Path) -> tuple[list[str], list[str]]:
    """(what the new output adds, how it differs otherwise) for every file of the old output."""
    added, differ = [], []
    for path in sorted(p for p in old.rglob("*") if p.is_file()):
        rel = path.relative_to(old).as_posix()
        other = new / rel
        if not other.exists():
            differ.append(f"{rel}: missing")
        elif path.read_bytes() == other.read_bytes():
            continue
        elif rel.endswith(".csv"):
            added += [f"{rel}: column {c}" for c in _csv_added(path, other, differ)]
        elif rel.endswith(".md"):
            a, b = path.read_text().splitlines(), other.read_text().splitlines()
            for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
                if op == "insert":
                    added.append(f"{rel}: {j2 - j1} line(s) after line {i1}")
                elif op != "equal":
                    differ += [f"{rel}: - {line}" for line in a[i1:i2]] + [f"{rel}: + {line}" for line in b[j1:j2]]
        else:
            differ.append(f"{rel}: bytes differ")
    return added, differ


def _csv_added(old: Path, new: Path, differ: list[str]) -> list[str]:
    """The columns the new CSV adds; a note in `differ` when the old columns do not hold the same text."""
    a = list(csv.reader(io.StringIO(old.read_text())))
    b = list(csv.reader(io.StringIO(new.read_text())))
    keep = [b[0].index(c) for c in a[0] if c in b[0]]
    if len(keep) < len(a[0]) or [[row[i] for i in keep] for row in b] != a:
        differ.append(f"{old.name}: the old columns differ")
    return [c for c in b[0] if c not in a[0]]


# --- the stress set ---------------------------------------------------------------------------------


def stress_set(results: Path, into: Path, copies: int) -> int:
    """The records of `results` and copies - 1 perturbed copies of each dataset in `into`; the count."""
    shutil.copytree(results, into)
    datasets = [d for d in sorted(results.iterdir()) if (d / "manifest.csv").exists()]
    jobs = [(d, into, k) for k in range(1, copies) for d in datasets]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_copy_dataset, *zip(*jobs, strict=True)))
    return sum(1 for _ in into.rglob("fold*.json"))


def _copy_dataset(source: Path, into: Path, k: int) -> None:
    """Copy k of one dataset: a new dataset id, probabilities moved towards random ones, metrics recomputed."""
    old_id = source.name
    name, fingerprint = old_id.rsplit("-", 1)
    new_id = f"{name}{k}-{fingerprint}"
    target = into / new_id
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("fold*.json", "fold*.csv"))
    rng = np.random.default_rng([k, int(fingerprint, 16)])
    for path in sorted(source.rglob("fold*.json")):
        doc = json.loads(path.read_text())
        doc["dataset"]["id"], doc["dataset"]["name"] = new_id, f"{name}{k}"
        out = target / path.relative_to(source)
        if doc["status"] == "ok":
            frame = pd.read_csv(path.parent / doc["predictions"]["file"])
            classes = TASK_CLASSES[doc["protocol"]["task"]]
            columns = [f"p_{c}" for c in classes]
            proba = 0.8 * frame[columns].to_numpy() + 0.2 * rng.dirichlet(np.ones(len(classes)), len(frame))
            frame[columns] = proba
            blob = frame.to_csv(index=False).encode()
            (out.parent / doc["predictions"]["file"]).write_bytes(blob)
            doc["predictions"]["sha256"] = hashlib.sha256(blob).hexdigest()
            names = [parse_name(f) for f in frame["filename"]]
            if doc["protocol"]["task"] == "binary":
                y = np.array([n.tumor_class == "M" for n in names], dtype=int)
            else:
                y = np.array([classes.index(n.subtype) for n in names])
            aux = [c for c in frame.columns if c.startswith("aux_magnification_")]
            metrics = score_all(
                y,
                proba,
                np.array([n.patient for n in names]),
                np.array([n.magnification for n in names]),
                {"magnification": frame[aux].to_numpy()} if aux else None,
            )
            doc["metrics"] = metrics.to_json()
        out.write_text(json.dumps(doc, indent=1, sort_keys=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="a79daba", help="older commit (default: the last before issue 24)")
    parser.add_argument("--copies", type=int, default=10, help="the stress set: the committed records this many times")
    parser.add_argument("--no-stress", action="store_true", help="only the side-by-side build of today's records")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bhbench-perf-leaderboard-") as tmp:
        old = export(args.against, Path(tmp) / "old")
        envs = {
            "this checkout": dict(os.environ),
            args.against: {**os.environ, "PYTHONPATH": f"{old / 'benchmark'}:{old / 'baselines'}"},
        }
        results = COMMITTED / "results"
        records = sum(1 for _ in results.rglob("fold*.json"))
        times = {name: build(env, results, Path(tmp) / name.replace(" ", "-")) for name, env in envs.items()}
        print(f"bhbench leaderboard over the {records:,} committed records, {os.cpu_count()} cores")
        for name, (wall, cpu) in times.items():
            print(f"  {name:>14}: {wall:6.1f} s wall ({cpu:.1f} CPU s)")
        print(f"  {args.against} / this checkout = {times[args.against][0] / times['this checkout'][0]:.1f}x")
        added, differ = compare(Path(tmp) / args.against, Path(tmp) / "this-checkout")
        print(f"output: {len(added)} addition(s), {len(differ)} other difference(s)")
        for line in [*added, *differ]:
            print(f"  {line}")
        if args.no_stress:
            return
        stress = Path(tmp) / "stress"
        count = stress_set(results, stress, args.copies)
        wall, cpu = build(envs["this checkout"], stress, Path(tmp) / "stress-board")
        print(f"stress set: {count:,} records ({args.copies}x): {wall:.1f} s wall ({cpu:.1f} CPU s)")


if __name__ == "__main__":
    main()
