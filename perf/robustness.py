"""What `bhbench robustness` costs against a plain `bhbench run` of the same method, side by side in
one run, printed as ratios:

1. cold: the shifted images made (HED conversion and back, seeded per image) and cached, then the
   method fitted once per fold and predicting every strength;
2. warm: the shifted images cached (the second method of a board pays only this), the method's own
   feature cache emptied before each repeat so both pay for their features.

Both go through `bhbench.api` with no sandbox, into private results and cache folders, on the
synthetic default at one magnification (--mag) unless --data says otherwise. Each warm figure is the
best of --repeats (the least disturbed on a shared machine).
Run from the repository root: python perf/robustness.py [--method lbp_svm] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="lbp_svm")
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--mag", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    return p.parse_args()


def timed(call) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def main() -> None:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="bhbench-perf-robustness-"))
    os.environ["BHBENCH_CACHE"] = str(work / "cache")
    from bhbench import api, perturb

    where = api.Where(args.data, mag=args.mag)
    common = {"sandbox": "off", "force": True}

    def plain() -> None:
        assert api.run(args.method, where, results=work / "plain", fps_images=0, **common).ok

    def shifted() -> None:
        assert api.robustness(args.method, where, results=work / "shifted", **common).ok

    def features_dropped() -> None:  # the method's per-image caches, so each repeat computes its features
        for folder in (work / "cache").glob("blind/*/cache"):
            shutil.rmtree(folder)

    try:
        plain()  # stages the dataset: neither side pays for decoding
        features_dropped()
        base = timed(plain)
        features_dropped()
        cold = timed(shifted)
        warm_plain, warm_shifted = [], []
        for _ in range(args.repeats):
            features_dropped()
            warm_plain.append(timed(plain))
            features_dropped()
            warm_shifted.append(timed(shifted))
        n = len(perturb.STRENGTHS)
        print(f"{args.method}, {args.mag}X of {args.data or 'the synthetic default'}, {n} strengths "
              f"(0 included), 5 folds, no sandbox")  # fmt: skip
        print(f"  cold (shifted images made): run {base:.1f} s, robustness {cold:.1f} s, ratio {cold / base:.2f}")
        best_plain, best_shifted = min(warm_plain), min(warm_shifted)
        print(f"  warm (shifted images cached): run {best_plain:.1f} s, robustness {best_shifted:.1f} s, "
              f"ratio {best_shifted / best_plain:.2f} (test images predicted {n}x)")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
