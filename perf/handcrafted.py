"""Hand-crafted feature extraction speed: bhbench against a straightforward composition.

On real BreaKHis PNGs (default: ../shared/breakhis/mini beside the repository), in one process:

1. straightforward composition: one image at a time, PNG decoded with PIL, each descriptor by its
   library call with the same parameters (scikit-image LBP, mahotas Haralick, OpenCV ORB, mahotas
   PFTAS per channel). CLBP and LPQ have no library implementation: LPQ is bhbench's function, and
   CLBP is its definition in whole-image numpy planes (`clbp_reference` below: scikit-image's
   neighbour interpolation, riu2 by counting over the stacked bits, the mean |d_p| threshold), the
   way bhbench computed it before it moved to cache-sized bands;
2. bhbench, cold: an empty temporary BHBENCH_CACHE; content keys, decoding into the image cache and
   the six descriptors extracted in parallel threads and cached: everything from PNG file to
   stored vector. bhbench's LBP (numba) and PFTAS (numpy) are its own versions of the libraries' numbers;
   the check at the end confirms they are the same;
3. bhbench, warm: the same extraction again, which reads every vector from the cache.

The two compositions alternate over chunks of images, so a neighbour's load burst on a shared
machine hits both alike. Both run with one BLAS thread: OpenBLAS threads spinning on a busy
machine slow mahotas' Haralick features 15x, which would flatter bhbench. With --jobs 1 bhbench
also decodes on one thread and the composition's OpenCV calls (ORB, LPQ's filters) run on one
thread too (bhbench's always do), so the ratio is per core; with all cores, the wall-time ratio is per
machine (target >= 2). Both wall and CPU time are taken: on a machine shared with other work, wall
time is mostly waiting for a core, so the per-core ratio (target >= 4 with --jobs 1) is the CPU-time
one. Prints images/s, both ratios, the composition's CPU milliseconds per step and bhbench's per
descriptor, cold/warm (target >= 50), and checks that both computed the same numbers.
bhbench's LBP and CLBP kernels are loaded from numba's on-disk cache in the first chunk (0.4 s), or
compiled there the first time on a machine (2.4 s, ~8 ms an image over the mini set).

Run: python perf/handcrafted.py [--data PATH] [--limit N] [--jobs 1 (bhbench on one thread)]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2
import mahotas
import numpy as np
from PIL import Image
from skimage.feature import local_binary_pattern
from threadpoolctl import threadpool_limits

from bhbench import TestSet
from bhbench.data.images import ImageStore, content_key
from bhbench.util import cpu_count
from bhbench_baselines.handcrafted.binary_patterns import circle_offsets
from bhbench_baselines.handcrafted.descriptors import DESCRIPTORS
from bhbench_baselines.handcrafted.features import extract
from bhbench_baselines.handcrafted.lpq import lpq

REPO = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Hand-crafted extraction: bhbench against one-at-a-time library calls")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "breakhis" / "mini")
    p.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    p.add_argument("--chunk", type=int, default=32, help="images per alternation")
    p.add_argument("--jobs", type=int, default=None, help="bhbench extraction threads (default: all cores)")
    return p.parse_args()


def _fractions(positions: np.ndarray) -> np.ndarray:
    return positions - np.floor(positions)


def clbp_reference(rgb: np.ndarray, P: int = 24, R: float = 3) -> np.ndarray:
    """CLBP_S/M/C joint histogram as its definition reads (Guo et al. 2010), in whole-image numpy
    planes: neighbours by scikit-image's bilinear formula and per-position weights (f = pos -
    floor(pos); on the grid f = 0 gives the pixel itself), rows interpolated once per column offset."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    g, m = grey.astype(np.float64), math.ceil(R)
    h, w = g.shape[0] - 2 * m, g.shape[1] - 2 * m
    centre = g[m:-m, m:-m]
    dys, dxs = circle_offsets(P, R)
    across = {}  # column offset -> every row interpolated at it
    for dx in np.unique(dxs):
        fc, c0, c1 = _fractions(np.arange(m, m + w) + dx), m + math.floor(dx), m + math.ceil(dx)
        across[dx] = (1 - fc) * g[:, c0 : c0 + w] + fc * g[:, c1 : c1 + w]
    d = np.empty((P, h, w))
    for p, (dy, dx) in enumerate(zip(dys, dxs, strict=True)):
        fr, r0, r1 = _fractions(np.arange(m, m + h) + dy)[:, None], m + math.floor(dy), m + math.ceil(dy)
        d[p] = (1 - fr) * across[dx][r0 : r0 + h] + fr * across[dx][r1 : r1 + h] - centre

    def riu2(bits: np.ndarray) -> np.ndarray:
        ones, transitions = np.zeros(centre.shape, np.intp), np.zeros(centre.shape, np.intp)
        for p in range(P):
            ones += bits[p]
            transitions += bits[p] != bits[p - 1]
        return np.where(transitions <= 2, ones, P + 1)

    s, magnitude = riu2(d >= 0), np.abs(d)
    mm = riu2(magnitude >= magnitude.mean())
    c = grey[m:-m, m:-m] >= grey.mean()
    index = (s * (P + 2) + mm) * 2 + c
    return np.bincount(index.ravel(), minlength=2 * (P + 2) ** 2) / index.size


def straightforward(path: Path, seconds: dict[str, float]) -> dict[str, np.ndarray]:
    """The six descriptors of one PNG by direct library calls; adds each step's time to `seconds`."""
    out: dict[str, np.ndarray] = {}
    t = time.process_time()

    def lap(name: str) -> None:
        nonlocal t
        now = time.process_time()
        seconds[name] += now - t
        t = now

    rgb = np.asarray(Image.open(path).convert("RGB"))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    lap("decode")
    codes = local_binary_pattern(grey, 8, 1, "uniform").astype(int)
    out["lbp"] = np.bincount(codes.ravel(), minlength=10) / codes.size
    lap("lbp")
    out["clbp"] = clbp_reference(rgb, P=24, R=3)
    lap("clbp")
    out["lpq"] = lpq(rgb, window=3, rho=0.9)
    lap("lpq")
    out["glcm"] = mahotas.features.haralick(grey, return_mean=True, use_x_minus_y_variance=True)
    lap("glcm")
    _, descriptors = cv2.ORB.create(nfeatures=500).detectAndCompute(grey, None)
    out["orb"] = np.zeros(32) if descriptors is None else descriptors.mean(axis=0, dtype=np.float64)
    lap("orb")
    out["pftas"] = np.concatenate([mahotas.features.pftas(np.ascontiguousarray(rgb[..., c])) for c in range(3)])
    lap("pftas")
    return out


def main() -> None:
    args = parse_args()
    paths = sorted(args.data.rglob("*.png"))[: args.limit or None]
    if not paths:
        raise SystemExit(f"no PNG files under {args.data}")
    specs = [d.spec() for d in DESCRIPTORS.values()]
    with tempfile.TemporaryDirectory(prefix="bhbench-bench-") as cache, threadpool_limits(1):
        os.environ["BHBENCH_CACHE"] = cache  # cold means cold: no images or features cached yet
        store = ImageStore()
        plain_s, cold_s, plain_cpu, cold_cpu = 0.0, 0.0, 0.0, 0.0
        steps: dict[str, float] = defaultdict(float)
        plain: list[dict[str, np.ndarray]] = []
        keys: list[str] = []
        if args.jobs == 1:
            cv2.setNumThreads(1)  # extraction sets this for its own calls and restores it after
        for start in range(0, len(paths), args.chunk):
            chunk = paths[start : start + args.chunk]
            t0, c0 = time.perf_counter(), time.process_time()
            plain += [straightforward(p, steps) for p in chunk]
            t1, c1 = time.perf_counter(), time.process_time()
            chunk_keys = [content_key(p) for p in chunk]
            if args.jobs == 1:  # per core: decoding on one thread too
                for key, path in zip(chunk_keys, chunk, strict=True):
                    store.put(key, path)
            else:
                store.ensure(zip(chunk_keys, chunk, strict=True))
            extract(TestSet.build("binary", keys=chunk_keys, store=str(store.root)), specs, args.jobs)
            t2, c2 = time.perf_counter(), time.process_time()
            plain_s, cold_s, keys = plain_s + t1 - t0, cold_s + t2 - t1, keys + chunk_keys
            plain_cpu, cold_cpu = plain_cpu + c1 - c0, cold_cpu + c2 - c1
            if sys.stderr.isatty():
                print(f"  {start + len(chunk)}/{len(paths)} images", end="\r", file=sys.stderr, flush=True)

        everything = TestSet.build("binary", keys=keys, store=str(store.root))
        t0 = time.perf_counter()
        warm = extract(everything, specs)
        warm_s = time.perf_counter() - t0
        own = {spec.name: 0.0 for spec in specs}  # bhbench's CPU ms per descriptor, first 32 images
        for key in keys[:32]:
            rgb = store.load(key)
            for spec in specs:
                t0 = time.process_time()
                spec.compute(rgb)
                own[spec.name] += time.process_time() - t0

    n = len(paths)
    h, w = np.asarray(Image.open(paths[0])).shape[:2]
    print(f"{n} images from {args.data} ({w}x{h} first), {cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    per_step = ", ".join(f"{k} {1000 * v / n:.0f}" for k, v in steps.items())
    print(f"straightforward composition: {n / plain_s:6.2f} images/s   (CPU ms per image: {per_step})")
    threads = args.jobs or cpu_count()
    print(
        f"bhbench, cold cache:         {n / cold_s:6.2f} images/s   (keys, decode, six descriptors, cached; "
        f"{threads} thread{'s' if threads > 1 else ''})"
    )
    print(f"  bhbench CPU ms per image: {', '.join(f'{k} {1000 * v / min(n, 32):.1f}' for k, v in own.items())}")
    print(f"ratio, wall time: {plain_s / cold_s:.2f}x (target >= 2 on all cores)")
    print(
        f"ratio, CPU time: {plain_cpu / cold_cpu:.2f}x ({1000 * plain_cpu / n:.0f} against {1000 * cold_cpu / n:.0f} "
        f"CPU ms per image; per core with --jobs 1: target >= 4)"
    )
    print(
        f"bhbench, warm cache: {warm_s:.2f} s for {n} images, {warm.computed} computed: "
        f"{cold_s / warm_s:.0f}x faster than cold (target >= 50)"
    )
    for j, spec in enumerate(specs):
        expected = np.stack([p[spec.name] for p in plain])
        diff = np.abs(warm.features[j] - expected).max()
        verdict = "identical" if diff == 0 else f"max |difference| {diff:.2e}"
        assert np.allclose(warm.features[j], expected, rtol=1e-9, atol=1e-12), f"{spec.name} differs"
        print(f"  same numbers, {spec.name} [{spec.dim}]: {verdict}")


if __name__ == "__main__":
    main()
