"""What the trust boundary costs a deep model: this checkout against an older commit, side by side.

The same `bhbench run` of a CNN (a few epochs on the generator's tiny set, five folds) runs from
this checkout and from an older commit exported with `git archive` (same interpreter and packages,
through PYTHONPATH), alternating. Both run without bubblewrap: a sandboxed worker imports bhbench
from the installed checkout, not from PYTHONPATH, so only this checkout can be measured inside it;
`perf/blind.py` measures what the sandbox itself costs, side by side in this checkout. What is
compared here is the rest of the boundary: data-only replies, the limits, a worker per method.
Each run's records state its fit and predict seconds and its model FPS, so the comparison is of
what the harness itself reports:
training throughput (training images x epochs / fit second), inference throughput (test images /
predict second) and FPS. The best of the repeats is kept (the least disturbed on a shared
machine); ratios are this checkout / older. Target: within 5% (>= 0.95).

Run from the repository root: python perf/boundary.py [--against 0bfe30e] [--repeats 3] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from startup import export  # perf/ is on the path when this script runs

REPO = Path(__file__).resolve().parents[1]


def run_once(env: dict[str, str], cwd: Path, tree: Path, method: str, epochs: int) -> dict[str, float]:
    """One five-fold run into a fresh results folder; throughputs summed over its folds' records."""
    out = Path(tempfile.mkdtemp(prefix="bhbench-perf-boundary-"))
    argv = [sys.executable, "-m", "bhbench", "run", "-m", method, "--data", str(tree), "--results", str(out),
            "--set", f"epochs={epochs}", "--device", "cpu", "--sandbox", "off", "--fps-images", "32"]  # fmt: skip
    done = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"{cwd}: bhbench run failed: {done.stderr.strip().splitlines()[-1:]}")
    totals = {"fit": 0.0, "predict": 0.0, "train": 0.0, "test": 0.0, "fps": 0.0}
    for path in out.rglob("fold*.json"):
        record = json.loads(path.read_text())
        totals["fit"] += record["timing"]["fit_seconds"]
        totals["predict"] += record["timing"]["predict_seconds"]
        totals["train"] += record["split"]["n_train"] * epochs
        totals["test"] += record["split"]["n_test"]
        totals["fps"] = max(totals["fps"], record["timing"].get("fps_model") or 0.0)
    return {
        "training images/s": totals["train"] / totals["fit"],
        "inference images/s": totals["test"] / totals["predict"],
        "model FPS (first fold)": totals["fps"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="0bfe30e", help="older commit (default: the last before issue 23)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--method", default="cnn")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = export(args.against, Path(tmp) / "old")
        cache = Path(tmp) / "cache"
        base = {**os.environ, "BHBENCH_CACHE": str(cache)}
        trees = {
            "this checkout": (REPO, base),
            args.against: (old, {**base, "PYTHONPATH": f"{old / 'benchmark'}:{old / 'baselines'}"}),
        }
        gen = "from bhbench.data import synthetic; import sys; synthetic.generate(sys.argv[1], synthetic.TINY)"
        tree = Path(tmp) / "tiny"
        subprocess.run([sys.executable, "-c", gen, str(tree)], env=base, check=True)
        best: dict[tuple[str, str], float] = {}
        for repeat in range(args.repeats):
            for name in trees if repeat % 2 == 0 else list(trees)[::-1]:
                cwd, env = trees[name]
                for what, value in run_once(env, cwd, tree, args.method, args.epochs).items():
                    best[name, what] = max(best.get((name, what), 0.0), value)
            print(f"repeat {repeat + 1} of {args.repeats} done", file=sys.stderr)
    print(f"{args.method}, {args.epochs} epochs, five folds of the tiny set, no sandbox; best of {args.repeats}")
    print(f"{'':26}{'this checkout':>15}{args.against:>15}{'ratio':>8}")
    for what in dict.fromkeys(w for _, w in best):
        new, old_value = best["this checkout", what], best[args.against, what]
        print(f"{what:26}{new:15.1f}{old_value:15.1f}{new / max(old_value, 1e-9):8.3f}")


if __name__ == "__main__":
    main()
