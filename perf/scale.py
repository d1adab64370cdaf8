"""BreaKHis at full size on this machine: where a whole grid's time and memory go.

Data: the BreaKHis-sized synthetic set (`bhbench data synth --size breakhis`: 700x460 PNGs, 7,909
images of 82 patients in BreaKHis_v1's class, subtype and magnification mix), or with --patients N
a slice of it: N patients taken in turn from each subtype, at most --per-patient images each per
magnification, rendered once into their own cache folder. Protocol as `bhbench run` defaults it
without official folds: binary task, one model over all magnifications, patient-level 70/30 split
(the first --folds of the five generated ones).

Stages, each with wall time, CPU time, share of the total and peak resident memory (the process's
high-water mark, reset before every stage):
  decode                 PNG -> decoded-image cache
  descriptor <d>         the six descriptors of every image into a cold feature cache
  <d>_<c> fit|predict    the 24 hand-crafted baselines through `Method.fit` / `predict_proba`
                         (inner CV included), warm feature cache
  deep ...               one deep baseline, quick recipe, one epoch; then its test predictions
  probe ...              one probe (random weights: no model download), embedding + head
Image staging into blind areas and the records are the runner's and are not timed here.

Then the measured CPU time per image is extrapolated to 7,909 images and 5 folds (labelled as such).
With --fits instead: each classifier's `fit_classifier` (inner CV and final fit, as a run does it;
1-NN with its prediction, where its cost is) is timed on synthetic feature matrices of 500, 1,000
and 2,000 images, its growth exponent fitted and its cost at 5,536 training images (a BreaKHis
fold) extrapolated.

Everything runs on --jobs threads (default 1: costs per core). Libraries get one BLAS thread (those a fit
loads too, as in a run's workers); the deep and probe stages set torch's own thread count (all cores).

Run: python perf/scale.py [--patients 16 --per-patient 6] [--folds 1] [--deep cnn] [--probe NAME]
     python perf/scale.py --fits
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from bhbench import TestSet, TrainSet, cache_dir, registry
from bhbench.data import breakhis, synthetic
from bhbench.data.images import ImageStore
from bhbench.data.index import index_tree
from bhbench.method import TrainMeta
from bhbench.protocol import Protocol
from bhbench.splits import patient_split
from bhbench.worker import thread_pools
from bhbench_baselines.handcrafted.classifiers import CLASSIFIERS, fit_classifier
from bhbench_baselines.handcrafted.descriptors import DESCRIPTORS
from bhbench_baselines.handcrafted.features import extract

FULL_IMAGES = sum(map(sum, breakhis.IMAGES.values()))  # 7,909
FULL_FOLDS = 5
TRAIN_SHARE = 0.7  # of the images, in a 70/30 patient split


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Time and memory of every stage of a grid on BreaKHis-sized data")
    p.add_argument("--patients", type=int, default=None, help="a slice of N patients (default: all 82)")
    p.add_argument("--per-patient", type=int, default=None, help="at most N images per patient and magnification")
    p.add_argument("--folds", type=int, default=1, help="folds of the patient split to run (1-5)")
    p.add_argument("--jobs", type=int, default=1, help="extraction and decoding threads")
    p.add_argument("--deep", default="cnn", help="deep baseline run with the quick recipe for one epoch ('' to skip)")
    p.add_argument("--probe", default="probe_resnet50", help="probe run with random weights ('' to skip)")
    p.add_argument("--fits", action="store_true", help="only time classifier fits at 500/1000/2000 images")
    return p.parse_args()


@dataclass
class Stage:
    name: str
    wall: float
    cpu: float
    peak_mb: float
    images: int  # images the stage processed (per-image cost = wall / images)


def _reset_peak() -> None:
    """Linux: writing 5 to clear_refs resets the high-water mark VmHWM (else it only grows)."""
    with suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Timer:
    def __init__(self) -> None:
        self.stages: list[Stage] = []

    @contextmanager
    def stage(self, name: str, images: int) -> Iterator[None]:
        _reset_peak()
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.stages.append(Stage(name, time.perf_counter() - wall, time.process_time() - cpu, _peak_mb(), images))
        print(f"  {name}: {self.stages[-1].wall:.1f} s", flush=True)


def slice_root(patients: int | None, per_patient: int | None) -> Path:
    """The full BreaKHis-sized tree (generated on first use), or a slice of it rendered once."""
    config = synthetic.BREAKHIS_SIZED
    if patients is None and per_patient is None:
        done = [0]

        def progress(n: int) -> None:
            done[0] += n
            print(f"  generating the BreaKHis-sized set (once): {done[0]}/{FULL_IMAGES}", end="\r", flush=True)

        return synthetic.default_root(config, progress)
    names = synthetic.image_names(config)
    by_subtype: dict[str, list[str]] = {}
    for n in names:
        if n.patient not in by_subtype.setdefault(n.subtype, []):
            by_subtype[n.subtype].append(n.patient)
    turns: list[str] = []  # one patient of each subtype in turn, so a slice has both classes
    for i in range(max(map(len, by_subtype.values()))):
        turns += [ps[i] for ps in by_subtype.values() if i < len(ps)]
    chosen = set(turns[: patients or len(turns)])
    picked = [n for n in names if n.patient in chosen and (per_patient is None or n.seq <= per_patient)]
    home = cache_dir("synthetic", f"{config.slug()}-p{len(chosen)}-i{per_patient or 'all'}")
    top = home / "BreaKHis_v1"
    if top.is_dir():
        return top
    scratch = Path(tempfile.mkdtemp(prefix=".partial-", dir=home))
    cv2.setNumThreads(1)
    try:
        for i, name in enumerate(picked, 1):
            path = scratch / "histology_slides" / name.relpath()
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), cv2.cvtColor(synthetic.render(config, name), cv2.COLOR_RGB2BGR))
            print(f"  rendering the slice: {i}/{len(picked)}", end="\r", flush=True)
        marker = f"bhbench synthetic slice of {config}: {len(picked)} images\n"
        (scratch / synthetic.SYNTHETIC_MARKER).write_text(marker)
        scratch.rename(top)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # an interrupted slice leaves nothing behind
    return top


def _sets(
    table: pd.DataFrame, protocol: Protocol, store: ImageStore, train_rows: list[str], test_rows: list[str]
) -> tuple[TrainSet, TestSet]:
    train, test = table.loc[train_rows], table.loc[test_rows]
    meta = TrainMeta(
        y=protocol.labels(train),
        malignant=(train["tumor_class"] == "M").to_numpy(),
        subtype=train["subtype"].to_numpy(),
        magnification=train["magnification"].to_numpy(),
        patient=train["patient"].to_numpy(),
    )
    return (
        TrainSet.build(protocol.task, meta, keys=list(train["key"]), store=store),
        TestSet.build(protocol.task, keys=list(test["key"]), store=store),
    )


def run_grid(args: argparse.Namespace, timer: Timer) -> tuple[int, int]:
    """All stages on the data; returns (images, training images of the first fold)."""
    root = slice_root(args.patients, args.per_patient)
    dataset = index_tree(root, "synthetic")
    table = dataset.table.set_index("filename", drop=False)
    n = len(table)
    protocol = Protocol(task="binary", regime="mi", split="patient")
    folds = patient_split(dataset.table, protocol.seed).folds[: args.folds]
    print(f"{n} images, {table['patient'].nunique()} patients from {root}; {len(folds)} fold(s)")
    with tempfile.TemporaryDirectory(prefix="bhbench-scale-") as cache:
        os.environ["BHBENCH_CACHE"] = cache  # cold: no decoded images or features yet
        store = ImageStore()
        items = list(zip(table["key"], (dataset.path(r) for r in table["relpath"]), strict=True))
        with timer.stage("decode", n):
            if args.jobs == 1:
                for key, path in items:
                    store.put(key, path)
            else:
                store.ensure(items)
        everything = TestSet.build("binary", keys=list(table["key"]), store=store)
        for d in DESCRIPTORS.values():
            with timer.stage(f"descriptor {d.name}", n):
                extract(everything, [d.spec()], args.jobs)
        n_train = 0
        for fold in folds:
            train, test = _sets(table, protocol, store, sorted(fold.train), sorted(fold.test))
            n_train = n_train or len(train)
            for d in DESCRIPTORS:
                for c in CLASSIFIERS:
                    method = registry.create(f"{d}_{c}")
                    with timer.stage(f"{d}_{c} fit", len(train)):
                        method.fit(train)
                    with timer.stage(f"{d}_{c} predict", len(test)):
                        method.predict_proba(test)
            deep_and_probe(args, timer, train, test)
    return n, n_train


def deep_and_probe(args: argparse.Namespace, timer: Timer, train: TrainSet, test: TestSet) -> None:
    runs: list[tuple[str, str, dict]] = []
    if args.deep:
        runs.append(("deep", args.deep, {"recipe": "quick", "epochs": 1}))
    if args.probe:
        runs.append(("probe", args.probe, {"weights": "random"}))
    for family, name, params in runs:
        try:
            method = registry.create(name, **params)
        except Exception as exc:  # noqa: BLE001 - a family still being built is a row with a note
            print(f"  {family} {name}: skipped ({exc})")
            continue
        what = "one epoch" if family == "deep" else "embedding + head"
        with timer.stage(f"{family} {name} fit ({what})", len(train)):
            method.fit(train)
        with timer.stage(f"{family} {name} predict", len(test)):
            method.predict_proba(test)


def _kind(name: str) -> str:
    """What a stage's cost grows with, for the extrapolation."""
    if name == "decode" or name.startswith("descriptor"):
        return "once per image"
    return "per fold"


def print_table(timer: Timer, n: int, n_train: int, folds: int) -> None:
    """The stages side by side; shares are of CPU time (on a shared machine wall time is mostly
    waiting for a core), and the extrapolation scales CPU time per image."""
    cpu = sum(s.cpu for s in timer.stages)
    print(f"\nmeasured on {n} images ({n_train} training), {folds} fold(s), load {os.getloadavg()[0]:.1f}:")
    print(f"{'stage':44} {'wall s':>8} {'CPU s':>8} {'share':>6} {'peak MB':>8} {'CPU ms/image':>13}")
    for s in timer.stages:
        print(
            f"{s.name:44} {s.wall:8.2f} {s.cpu:8.2f} {100 * s.cpu / cpu:5.1f}% {s.peak_mb:8.0f} "
            f"{1000 * s.cpu / max(s.images, 1):13.1f}"
        )
    print(f"{'total':44} {sum(s.wall for s in timer.stages):8.2f} {cpu:8.2f}")
    once = sum(s.cpu / s.images for s in timer.stages if s.name == "decode" or s.name.startswith("descriptor"))
    fits = sum(s.cpu for s in timer.stages if s.name.endswith((" fit", " predict")) and "_" in s.name.split()[0])
    if n >= FULL_IMAGES:  # the full set: a run's five folds are five of the fold(s) measured
        print(f"\n{FULL_FOLDS} folds at this size (from the CPU times above; a run's folds are alike):")
        print(f"  decode + six descriptors, once per fold: {once * n / 60:6.1f} CPU min")
        print(f"  24 hand-crafted fits + predictions: {fits / folds * FULL_FOLDS / 60:6.1f} CPU min")
        return
    full_train = round(TRAIN_SHARE * FULL_IMAGES)
    print(
        f"\nEXTRAPOLATION from the CPU times above (not measured): {FULL_IMAGES:,} images, {FULL_FOLDS} folds, "
        f"~{full_train:,} training images per fold"
    )
    print(f"  decode + six descriptors, cold cache, once: {once * FULL_IMAGES / 60:6.1f} CPU min")
    per_fold = fits / folds / n_train * full_train
    print(
        f"  24 hand-crafted fits + predictions, {FULL_FOLDS} folds: {per_fold * FULL_FOLDS / 60:6.1f} "
        "CPU min if each fit's cost per training image stayed as on this slice (it does not: small slices overstate "
        "fixed costs such as the forest's, and the SVM grows ~n^2; --fits measures the growth)"
    )


def _synthetic_features(n: int, d: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two overlapping classes (a third of the images benign), patients of ~100 images."""
    y = (rng.random(n) < 0.69).astype(int)
    X = rng.normal(size=(n, d)) + 0.15 * y[:, None] * rng.normal(size=d)
    groups = rng.integers(0, max(4, n // 100), n)
    return X, y, groups


def _fit_cost(name: str, data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:
    """CPU seconds of a run's fit (inner CV + final fit); for 1-NN, whose cost is at prediction,
    also of predicting a test fold of 3/7 the training size."""
    X, y, groups = data
    clf = CLASSIFIERS[name]
    t0 = time.process_time()
    fitted, _ = fit_classifier(clf, dict(clf.settings), X, y, groups, seed=0, cv_folds=3)
    if name == "1nn":
        fitted.predict_proba(X[: round(len(X) * 3 / 7)], 2)
    return time.process_time() - t0


def time_fits(sizes: tuple[int, ...] = (500, 1000, 2000), dims: tuple[int, ...] = (162, 1352)) -> None:
    """Growth of each classifier's whole fit (inner CV + final) with the training set size."""
    rng = np.random.default_rng(0)
    full_train = round(TRAIN_SHARE * FULL_IMAGES)
    print("\nclassifier fit_classifier (inner CV + final fit) on synthetic features, one thread:")
    print(
        f"{'classifier':10} {'d':>5} "
        + " ".join(f"{f'n={n}':>9}" for n in sizes)
        + f"  exponent  {f'n={full_train} (extrapolated)':>26}"
    )
    for d in dims:
        data = {n: _synthetic_features(n, d, rng) for n in sizes}
        for name in CLASSIFIERS:
            _fit_cost(name, data[sizes[0]])  # warm-up: imports and first-call setup are not growth
            seconds = [_fit_cost(name, data[n]) for n in sizes]
            k = np.polyfit(np.log(sizes), np.log(seconds), 1)[0]
            at_full = seconds[-1] * (full_train / sizes[-1]) ** k
            print(f"{name:10} {d:5d} " + " ".join(f"{s:8.2f}s" for s in seconds) + f"  {k:8.2f}  {at_full:24.0f} s")


def main() -> None:
    args = parse_args()
    with thread_pools(1):
        if args.fits:
            time_fits()
            return
        timer = Timer()
        n, n_train = run_grid(args, timer)
        print_table(timer, n, n_train, args.folds)


if __name__ == "__main__":
    main()
