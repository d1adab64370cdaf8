"""How hard is the synthetic dataset? Weak and stronger hand-crafted pipelines on the default config.

Generates the synthetic tree into a temporary folder (timed), then scores, under the harness's
default protocol (binary task, one model over all magnifications, five seeded class-stratified
patient-disjoint 70/30 splits), patient recognition rate = mean over test patients of the
fraction of their images classified correctly:

- weak:   uniform LBP (P=8, R=1) histogram of the grey image + RBF SVM (the `lbp_svm` baseline)
- strong: PFTAS (mahotas) on each RGB channel + RBF SVM

The generator is calibrated so that the weak pipeline lands between 0.60 and 0.95 (ideally about
0.75-0.85) and the strong one above it. Run: python perf/synthetic_difficulty.py [--help]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import mahotas.features
import numpy as np
from skimage.feature import local_binary_pattern
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from bhbench.data.names import parse_name
from bhbench.data.synthetic import SynthConfig, generate


def lbp(path: Path) -> np.ndarray:
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    codes = local_binary_pattern(grey, P=8, R=1, method="uniform")
    return np.bincount(codes.astype(int).ravel(), minlength=10) / codes.size


def pftas(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return np.concatenate([mahotas.features.pftas(bgr[..., c]) for c in (2, 1, 0)])


PIPELINES: dict[str, Callable[[Path], np.ndarray]] = {"weak: LBP P8 R1 + SVM": lbp, "strong: PFTAS + SVM": pftas}


def patient_splits(patients: np.ndarray, subtypes: np.ndarray, n_splits: int) -> list[np.ndarray]:
    """Test-patient sets: 30% of each subtype's patients, shuffled with the split's seed."""
    by_subtype: dict[str, list[str]] = {}
    for patient, subtype in sorted(set(zip(patients, subtypes, strict=True))):
        by_subtype.setdefault(subtype, []).append(patient)
    splits = []
    for seed in range(n_splits):
        rng = np.random.default_rng(seed)
        test = [p for group in by_subtype.values() for p in rng.permutation(group)[: round(0.3 * len(group))]]
        splits.append(np.isin(patients, test))
    return splits


def patient_recognition_rate(y_true: np.ndarray, y_pred: np.ndarray, patients: np.ndarray) -> float:
    return float(np.mean([np.mean(y_true[patients == p] == y_pred[patients == p]) for p in np.unique(patients)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    defaults = SynthConfig()
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--width", type=int, default=defaults.width)
    parser.add_argument("--height", type=int, default=defaults.height)
    parser.add_argument("--images-per-patient", type=int, default=defaults.images_per_patient)
    parser.add_argument("--splits", type=int, default=5)
    args = parser.parse_args()
    config = SynthConfig(args.seed, args.width, args.height, args.images_per_patient)

    with tempfile.TemporaryDirectory(prefix="bhbench-synth-") as tmp:
        start = time.perf_counter()
        top = generate(Path(tmp), config)
        files = sorted(top.rglob("*.png"))
        print(f"config {config.slug()}: {len(files)} images generated in {time.perf_counter() - start:.1f} s")
        names = [parse_name(f.name) for f in files]
        y = np.array([n.tumor_class == "M" for n in names], int)
        patients = np.array([n.patient for n in names])
        splits = patient_splits(patients, np.array([n.subtype for n in names]), args.splits)

        for label, describe in PIPELINES.items():
            start = time.perf_counter()
            with ProcessPoolExecutor(max_workers=2) as pool:
                x = np.stack(list(pool.map(describe, files, chunksize=16)))
            prr, bacc = [], []
            for test in splits:
                # SVC(probability=True) is deprecated in scikit-learn 1.9 in favour of exactly this.
                svm = CalibratedClassifierCV(SVC(kernel="rbf"), ensemble=False)
                model = make_pipeline(StandardScaler(), svm)
                model.fit(x[~test], y[~test])
                pred = model.predict_proba(x[test]).argmax(axis=1)
                prr.append(patient_recognition_rate(y[test], pred, patients[test]))
                bacc.append(balanced_accuracy_score(y[test], pred))
            print(
                f"{label:24s} patient recognition rate {np.mean(prr):.3f} +/- {np.std(prr):.3f}"
                f"   image balanced accuracy {np.mean(bacc):.3f} +/- {np.std(bacc):.3f}"
                f"   ({time.perf_counter() - start:.1f} s)"
            )


if __name__ == "__main__":
    main()
