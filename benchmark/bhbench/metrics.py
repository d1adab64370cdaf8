"""Scores computed by the harness from per-image predictions (DESIGN.md section 4)."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

METRICS = ("patient_rr", "accuracy", "balanced_accuracy", "auc", "f1_macro")


def patient_recognition_rate(correct: np.ndarray, patients: np.ndarray) -> float:
    """Mean over patients of the fraction of their images classified correctly."""
    _, inverse = np.unique(patients, return_inverse=True)
    per_patient = np.bincount(inverse, weights=correct.astype(float)) / np.bincount(inverse)
    return float(per_patient.mean())


def auc(y: np.ndarray, proba: np.ndarray) -> float:
    """ROC AUC of P(malignant) for two classes; macro one-vs-rest over the classes present
    (with both positives and negatives) otherwise. NaN when it is undefined."""
    if proba.shape[1] == 2:
        return float(roc_auc_score(y, proba[:, 1])) if len(np.unique(y)) == 2 else math.nan
    scores = [roc_auc_score(y == c, proba[:, c]) for c in range(proba.shape[1]) if 0 < (y == c).sum() < len(y)]
    return float(np.mean(scores)) if scores else math.nan


def score(y: np.ndarray, proba: np.ndarray, patients: np.ndarray) -> dict[str, float]:
    pred = proba.argmax(axis=1)
    correct = pred == y
    labels = np.arange(proba.shape[1])
    present = np.unique(y)
    return {
        "patient_rr": patient_recognition_rate(correct, patients),
        "accuracy": float(correct.mean()),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if len(present) > 1 else float(correct.mean()),
        "auc": auc(y, proba),
        "f1_macro": float(f1_score(y, pred, labels=labels[np.isin(labels, present)], average="macro", zero_division=0)),
        "n_images": int(len(y)),
        "n_patients": int(len(np.unique(patients))),
    }


def score_all(
    y: np.ndarray,
    proba: np.ndarray,
    patients: np.ndarray,
    magnifications: np.ndarray,
    aux: dict[str, np.ndarray] | None = None,
    mag_classes: tuple[int, ...] = (40, 100, 200, 400),
) -> dict:
    """Overall and per-magnification scores; magnification accuracy when a method predicts it."""
    out: dict = {"overall": score(y, proba, patients), "by_magnification": {}}
    for mag in sorted(np.unique(magnifications)):
        sel = magnifications == mag
        out["by_magnification"][str(int(mag))] = score(y[sel], proba[sel], patients[sel])
    if aux and "magnification" in aux:
        mag_pred = np.asarray(mag_classes)[np.asarray(aux["magnification"]).argmax(axis=1)]
        out["overall"]["magnification_accuracy"] = float((mag_pred == magnifications).mean())
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation over folds, ignoring NaN."""
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std())
