"""Training sets for tests, built one way: `from builders import train_set` (pytest puts tests/ on
the import path). The metadata follows the labels as BreaKHis's does, so a test states only what
it is about: labels, and patients or magnifications where they matter."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bhbench import TASK_CLASSES, TrainSet
from bhbench.method import TrainMeta

BENIGN = 4  # the first four subtypes (A, F, PT, TA) are benign


def train_set(
    y: Sequence[int] | np.ndarray,
    images: Sequence[np.ndarray] | None = None,
    *,
    task: str = "binary",
    patients: Sequence[str] | np.ndarray | None = None,
    magnification: int | Sequence[int] | np.ndarray = 40,
    keys: Sequence[str] | None = None,
    store: str | None = None,
) -> TrainSet:
    """A TrainSet of `images` (or `keys` in the image store at `store`) labelled `y` for `task`.
    Binary labels are benign A (0) and malignant DC (1); subtype labels index TASK_CLASSES["subtype"].
    One patient per image unless `patients` are given; one magnification for all unless several."""
    y = np.asarray(y, dtype=int)
    if task == "binary":
        malignant, subtype = y == 1, np.where(y == 1, "DC", "A")
    else:
        malignant, subtype = y >= BENIGN, np.array(TASK_CLASSES["subtype"])[y]
    meta = TrainMeta(
        y=y,
        malignant=malignant,
        subtype=subtype,
        magnification=np.broadcast_to(np.asarray(magnification), y.shape).copy(),
        patient=np.asarray(patients) if patients is not None else np.array([f"p{i}" for i in range(len(y))]),
    )
    return TrainSet.build(task, meta, images=images, keys=keys, store=store)
