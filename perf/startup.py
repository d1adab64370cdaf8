"""Start-up cost of `bhbench list` and `bhbench --help`: this checkout against an older commit.

Each command runs as a whole new process, the way a user runs it, and is charged the process's
user + system CPU time (`resource.getrusage(RUSAGE_CHILDREN)`), which a busy neighbour on a shared
machine disturbs far less than wall-clock time. The older commit is exported with `git archive`
into a temporary folder and run from there through PYTHONPATH, with the same interpreter and
packages. Runs of the two alternate; the median of each is printed with their ratio, and which
heavy libraries (SciPy, scikit-image, scikit-learn, torch) each command imported. Target: list
and --help under 0.5 s, none of those libraries.

Run from the repository root: python perf/startup.py [--against 74ba71f] [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = (["list"], ["--help"])
HEAVY = ("scipy", "skimage", "sklearn", "torch")
# Prints the heavy modules the command imported on stderr, after the command's own output.
PROBE = (
    "import sys\nfrom bhbench.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
    f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}), file=sys.stderr)"
)


def cpu_seconds(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def heavy_imports(command: list[str], env: dict[str, str], cwd: Path) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE, *command], env=env, cwd=cwd, capture_output=True, text=True)
    return out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "?"


def export(rev: str, into: Path) -> Path:
    blob = subprocess.run(
        ["git", "archive", rev, "benchmark", "baselines", "submissions"], cwd=REPO, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="74ba71f", help="older commit to compare with")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = export(args.against, Path(tmp))
        trees = {
            "this checkout": (REPO, dict(os.environ)),
            args.against: (old, {**os.environ, "PYTHONPATH": f"{old / 'benchmark'}:{old / 'baselines'}"}),
        }
        print(f"CPU seconds (user + system), median of {args.runs} whole-process runs")
        for command in COMMANDS:
            argv = [sys.executable, "-m", "bhbench", *command]
            times: dict[str, list[float]] = {name: [] for name in trees}
            for _ in range(args.runs):
                for name, (cwd, env) in trees.items():
                    times[name].append(cpu_seconds(argv, env, cwd))
            medians = {name: statistics.median(t) for name, t in times.items()}
            ratio = medians[args.against] / max(medians["this checkout"], 1e-9)
            print(f"bhbench {' '.join(command)}: {args.against} / this checkout = {ratio:.1f}x")
            for name, (cwd, env) in trees.items():
                print(f"  {name:>14}: {medians[name]:.2f} s; heavy imports {heavy_imports(command, env, cwd)}")


if __name__ == "__main__":
    main()
