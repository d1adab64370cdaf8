"""What a number means: task, regime, split and magnification filter, and the constants they are
made of. The one source of these facts; it imports nothing heavier than numpy, so the plugin
contract (`bhbench.method`), the data layer and the CLI can all read it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from typing import TYPE_CHECKING

import numpy as np

from bhbench.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

TASK_CLASSES: dict[str, tuple[str, ...]] = {
    "binary": ("benign", "malignant"),
    "subtype": ("A", "F", "PT", "TA", "DC", "LC", "MC", "PC"),
}
MAGNIFICATIONS: tuple[int, ...] = (40, 100, 200, 400)
TASKS = tuple(TASK_CLASSES)
REGIMES = ("mi", "ms")  # magnification-independent: one model; -specific: one model per magnification
SPLIT_KINDS = ("official", "patient", "image-kfold", "cross-stain", "stain-random")
STAIN_NORMS = ("none", "macenko", "reinhard")  # the harness's stain normalisation (`bhbench.stain`)
# Liu et al.'s names of the four (regime, task) protocols.
LIU_NAMES: dict[tuple[str, str], str] = {
    ("mi", "binary"): "MIBC",
    ("ms", "binary"): "MSBC",
    ("mi", "subtype"): "MIFC",
    ("ms", "subtype"): "MSFC",
}


@dataclass(frozen=True)
class Protocol:
    task: str = "binary"
    regime: str = "mi"
    split: str = "patient"
    magnification: int | None = None
    seed: int = 0  # seed of generated splits
    # Records made before it lack the key (record.py's `optional` metadata): read as "none".
    stain_norm: str = field(default="none", metadata={"optional": True})
    # Learning curves and cross-magnification transfer; absent from records at their defaults.
    train_fraction: float = field(default=1.0, metadata={"optional": True})  # of each fold's training patients
    train_mags: tuple[int, ...] | None = field(default=None, metadata={"optional": True})  # None: all
    test_mags: tuple[int, ...] | None = field(default=None, metadata={"optional": True})

    def __post_init__(self) -> None:
        for value, allowed, what in (
            (self.task, TASKS, "task"),
            (self.regime, REGIMES, "regime"),
            (self.split, SPLIT_KINDS, "split"),
            (self.stain_norm, STAIN_NORMS, "stain normalisation"),
        ):
            if value not in allowed:
                raise UserError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
        if self.magnification is not None and self.magnification not in MAGNIFICATIONS:
            raise UserError(f"magnification {self.magnification} is not one of {MAGNIFICATIONS}")
        if not 0 < self.train_fraction <= 1:
            raise UserError(f"train fraction {self.train_fraction} is not in (0, 1]")
        self._check_transfer()

    def _check_transfer(self) -> None:
        """Training and test magnifications: known ones, sorted (one protocol, one id), one model."""
        for name, mags in (("train", self.train_mags), ("test", self.test_mags)):
            if mags is None:
                continue
            if not mags or any(m not in MAGNIFICATIONS for m in mags):
                raise UserError(f"{name} magnifications {list(mags)}: each must be one of {MAGNIFICATIONS}")
            object.__setattr__(self, f"{name}_mags", tuple(sorted(set(mags))))
            if self.regime != "mi":
                raise UserError(f"{name} magnifications {list(mags)} need the mi regime (one model), not {self.regime}")
            if self.magnification is not None:
                raise UserError(f"{name} magnifications {list(mags)} and magnification {self.magnification}: use one")

    @property
    def id(self) -> str:
        parts = [self.task, self.regime, self.split]
        if self.split != "official":
            parts.append(f"seed{self.seed}")
        if self.magnification is not None:
            parts.append(f"{self.magnification}x")
        if self.stain_norm != "none":  # never beside raw rows; ids without normalisation unchanged
            parts.append(self.stain_norm)
        if self.train_fraction != 1:
            parts.append(f"frac{self.train_fraction:g}")
        for name, mags in (("train", self.train_mags), ("test", self.test_mags)):
            if mags is not None:
                parts.append(f"{name}{'+'.join(map(str, mags))}x")
        return "-".join(parts)

    @property
    def title(self) -> str:
        regime = "magnification-independent" if self.regime == "mi" else "magnification-specific"
        mag = f", {self.magnification}X only" if self.magnification else ""
        stain = f", {self.stain_norm.capitalize()}-normalised" if self.stain_norm != "none" else ""
        fraction = f", {100 * self.train_fraction:g}% of training patients" if self.train_fraction != 1 else ""
        transfer = "".join(
            f", {name} at {'/'.join(f'{m}X' for m in mags)}"
            for name, mags in (("trained", self.train_mags), ("tested", self.test_mags))
            if mags is not None
        )
        return (
            f"{LIU_NAMES[(self.regime, self.task)]} — {self.task} task, {regime}, {self.split} split"
            f"{mag}{stain}{fraction}{transfer}"
        )

    def to_json(self) -> dict:
        fields = asdict(self)
        for f in dataclass_fields(self):  # records made without an optional setting keep their bytes
            if f.metadata.get("optional") and fields[f.name] == f.default:
                del fields[f.name]
        return {**fields, "id": self.id}

    def labels(self, table: pd.DataFrame) -> np.ndarray:
        """Integer class index of each image for this task."""
        if self.task == "binary":
            return (table["tumor_class"] == "M").to_numpy().astype(int)
        order = {c: i for i, c in enumerate(TASK_CLASSES["subtype"])}
        return table["subtype"].map(order).to_numpy().astype(int)

    @property
    def classes(self) -> tuple[str, ...]:
        return TASK_CLASSES[self.task]
