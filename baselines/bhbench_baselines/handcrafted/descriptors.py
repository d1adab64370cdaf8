"""The six texture descriptors of Spanhol et al. (IEEE TBME 2016) and their specifications.

Every descriptor maps an RGB uint8 image of any size to a fixed-length float64 vector. Library
implementations are used where they exist (mahotas Haralick and Otsu, OpenCV ORB). CLBP and LPQ
have none and are written here; LBP and the PFTAS counting are too, because the libraries' versions
dominated extraction time: they compute numbers identical to scikit-image's and mahotas' (the tests
check equality), several times faster and in parallel threads (see their modules). A `DescriptorSpec`
names exactly what was computed: descriptor, parameters, code version and the version of the
library that computes it. Its id keys the feature cache, and it goes into every record.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import mahotas
import numpy as np

from bhbench.errors import UserError
from bhbench_baselines.handcrafted.binary_patterns import clbp, lbp
from bhbench_baselines.handcrafted.grey import to_grey
from bhbench_baselines.handcrafted.lpq import lpq
from bhbench_baselines.handcrafted.pftas import pftas


def glcm(rgb: np.ndarray, distance: int = 1) -> np.ndarray:
    """Haralick's 13 grey-level co-occurrence features [13], mean over the four directions.

    `mahotas.features.haralick` on the 256-level grey image (symmetric co-occurrence at
    `distance`). One departure from mahotas' defaults, to follow Haralick's definition: feature 10,
    difference variance, is the variance of |i - j| under p_{x-y} (mahotas' default is the variance
    of the probabilities p_{x-y}(k) themselves)."""
    grey = to_grey(rgb, min_side=distance + 1)
    return mahotas.features.haralick(grey, distance=distance, return_mean=True, use_x_minus_y_variance=True)


def orb(rgb: np.ndarray, n_features: int = 500) -> np.ndarray:
    """ORB descriptors pooled [32]: the mean, over all keypoints, of OpenCV's 32-byte binary
    descriptors read as 32 byte values (0..255); all zeros when no keypoint is found.

    OpenCV's ORB (`cv2.ORB.create(nfeatures=n_features)`, its other defaults) is about 70x faster than
    scikit-image's on BreaKHis images (258 vs 3.6 images/s on this project's machine). Averaging the bytes
    is how a variable set of 32-byte descriptors becomes the 32 numbers Spanhol et al. report."""
    _, descriptors = cv2.ORB.create(nfeatures=n_features).detectAndCompute(to_grey(rgb), None)
    if descriptors is None or len(descriptors) == 0:
        return np.zeros(32)
    return descriptors.mean(axis=0, dtype=np.float64)


@dataclass(frozen=True)
class Descriptor:
    """A descriptor function with its defaults, output size and what its results depend on."""

    name: str
    title: str
    reference: str
    function: Callable[..., np.ndarray]
    defaults: Mapping[str, Any]
    checks: Mapping[str, tuple[Callable[[Any], bool], str]]  # param -> (valid?, what is expected)
    dim: Callable[[Mapping[str, Any]], int]
    library: str  # distribution doing the work; its version is part of the spec
    version: int = 1  # bump when this code changes the numbers, so cached features are recomputed

    def spec(self, **params: Any) -> DescriptorSpec:
        """The spec for these params (defaults filled in); a bad value is a UserError naming it."""
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise UserError(f"{self.name} has no parameter {sorted(unknown)}; it has {sorted(self.defaults)}")
        full = {**self.defaults, **params}
        for key, (valid, expected) in self.checks.items():
            if not valid(full[key]):
                raise UserError(f"{self.name} parameter {key}={full[key]!r}: expected {expected}")
        code = f"{self.version}+{self.library}=={importlib.metadata.version(self.library)}"
        return DescriptorSpec(self.name, tuple(sorted(full.items())), code)


def _integer(lo: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _real(lo: float, hi: float) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v < hi


_CIRCLE = {
    "P": (_integer(1), "a positive integer number of neighbours"),
    "R": (_real(1e-6, float("inf")), "a positive radius in pixels"),
}

DESCRIPTORS: dict[str, Descriptor] = {
    d.name: d
    for d in (
        Descriptor(
            name="lbp",
            title="rotation-invariant uniform LBP",
            reference="Ojala et al. 2002",
            function=lbp,
            defaults={"P": 8, "R": 1},
            checks=_CIRCLE,
            dim=lambda p: p["P"] + 2,
            library="numpy",
        ),
        Descriptor(
            name="clbp",
            title="completed LBP, joint S/M/C riu2 histogram",
            reference="Guo et al. 2010",
            function=clbp,
            defaults={"P": 24, "R": 3},
            checks=_CIRCLE,
            dim=lambda p: 2 * (p["P"] + 2) ** 2,
            library="numpy",
            version=2,
        ),
        Descriptor(
            name="lpq",
            title="local phase quantisation",
            reference="Ojansivu and Heikkila 2008",
            function=lpq,
            defaults={"window": 3, "rho": 0.9},
            checks={
                "window": (lambda v: _integer(3)(v) and v % 2 == 1, "an odd integer >= 3"),
                "rho": (_real(0, 1), "a correlation in [0, 1)"),
            },
            dim=lambda p: 256,
            library="numpy",
            version=2,
        ),
        Descriptor(
            name="glcm",
            title="Haralick co-occurrence features",
            reference="Haralick et al. 1973",
            function=glcm,
            defaults={"distance": 1},
            checks={"distance": (_integer(1), "a positive integer")},
            dim=lambda p: 13,
            library="mahotas",
        ),
        Descriptor(
            name="orb",
            title="pooled ORB descriptors",
            reference="Rublee et al. 2011",
            function=orb,
            defaults={"n_features": 500},
            checks={"n_features": (_integer(1), "a positive integer")},
            dim=lambda p: 32,
            library="opencv-python-headless",
        ),
        Descriptor(
            name="pftas",
            title="parameter-free threshold adjacency statistics",
            reference="Coelho et al. 2010",
            function=pftas,
            defaults={},
            checks={},
            dim=lambda p: 162,
            library="mahotas",
        ),
    )
}


@dataclass(frozen=True)
class DescriptorSpec:
    """Exactly what was computed: descriptor name, all parameters, code and library version."""

    name: str
    params: tuple[tuple[str, Any], ...]
    code: str

    @property
    def id(self) -> str:
        """Short stable key for the feature cache, e.g. `clbp-1f0c2a9e4b7d`."""
        blob = json.dumps(self.as_dict(), sort_keys=True).encode()
        return f"{self.name}-{hashlib.sha256(blob).hexdigest()[:12]}"

    @property
    def dim(self) -> int:
        return DESCRIPTORS[self.name].dim(dict(self.params))

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params), "code": self.code}

    def compute(self, rgb: np.ndarray) -> np.ndarray:
        vector = np.asarray(DESCRIPTORS[self.name].function(rgb, **dict(self.params)), dtype=np.float64)
        assert vector.shape == (self.dim,), f"{self.name} gave {vector.shape}, expected ({self.dim},)"
        return vector
