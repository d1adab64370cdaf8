"""The six texture descriptors of Spanhol et al. (IEEE TBME 2016) and their specifications.

Every descriptor maps an RGB uint8 image of any size to a fixed-length float64 vector. Library
implementations are used where they exist (mahotas Haralick and Otsu, OpenCV ORB). CLBP and LPQ
have none and are written here; LBP, the PFTAS counting and the GLCM co-occurrence counting are
too, because the libraries' versions dominated extraction time: they compute numbers identical to
scikit-image's and mahotas' (the tests check equality), several times faster and in parallel
threads (see their modules). A `DescriptorSpec`
names exactly what was computed: descriptor, parameters, code version and the version of the
library that computes it. Its id keys the feature cache, and it goes into every record.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np

from bhbench import Interval
from bhbench.errors import UserError
from bhbench.util import digest


@dataclass(frozen=True)
class Descriptor:
    """A descriptor function with its defaults, output size and what its results depend on."""

    name: str
    title: str
    reference: str
    module: str  # module of this package defining the function `name` (imported on first use)
    defaults: Mapping[str, Any]
    annotations: Mapping[str, Any]  # param -> what it allows, as the methods' signatures declare it
    dim: Callable[[Mapping[str, Any]], int]
    library: str  # distribution doing the work; its version is part of the spec
    version: int = 1  # bump when this code changes the numbers, so cached features are recomputed

    @property
    def function(self) -> Callable[..., np.ndarray]:
        """The function computing the vector. Imported here, not at module import: the catalogue is
        read by `bhbench list`, which must not pay for OpenCV and mahotas."""
        return getattr(importlib.import_module(f"bhbench_baselines.handcrafted.{self.module}"), self.name)

    def spec(self, **params: Any) -> DescriptorSpec:
        """The spec for these params (defaults filled in). Their values were checked against
        `annotations` before any job started (`bhbench.params`)."""
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise UserError(f"{self.name} has no parameter {sorted(unknown)}; it has {sorted(self.defaults)}")
        full = {**self.defaults, **params}
        code = f"{self.version}+{self.library}=={importlib.metadata.version(self.library)}"
        return DescriptorSpec(self.name, tuple(sorted(full.items())), code)


_COUNT = Annotated[int, Interval(1, None)]
_CIRCLE = {
    "P": Annotated[int, Interval(1, 254)],  # neighbours; codes are counted in one byte per pixel (binary_patterns)
    "R": Annotated[float, Interval(0, None, closed="neither")],  # radius in pixels
}

DESCRIPTORS: dict[str, Descriptor] = {
    d.name: d
    for d in (
        Descriptor(
            name="lbp",
            title="rotation-invariant uniform LBP",
            reference="Ojala et al. 2002",
            module="binary_patterns",
            defaults={"P": 8, "R": 1},
            annotations=_CIRCLE,
            dim=lambda p: p["P"] + 2,
            library="numba",
        ),
        Descriptor(
            name="clbp",
            title="completed LBP, joint S/M/C riu2 histogram",
            reference="Guo et al. 2010",
            module="binary_patterns",
            defaults={"P": 24, "R": 3},
            annotations=_CIRCLE,
            dim=lambda p: 2 * (p["P"] + 2) ** 2,
            library="numba",
            version=2,
        ),
        Descriptor(
            name="lpq",
            title="local phase quantisation",
            reference="Ojansivu and Heikkila 2008",
            module="lpq",
            defaults={"window": 3, "rho": 0.9},
            annotations={
                "window": Annotated[int, Interval(3, None, step=2)],  # odd: the kernels are centred
                "rho": Annotated[float, Interval(0, 1, closed="left")],  # neighbour pixels' correlation
            },
            dim=lambda p: 256,
            library="numpy",
            version=2,
        ),
        Descriptor(
            name="glcm",
            title="Haralick co-occurrence features",
            reference="Haralick et al. 1973",
            module="glcm",
            defaults={"distance": 1},
            annotations={"distance": _COUNT},
            dim=lambda p: 13,
            library="mahotas",
        ),
        Descriptor(
            name="orb",
            title="pooled ORB descriptors",
            reference="Rublee et al. 2011",
            module="orb",
            defaults={"n_features": 500},
            annotations={"n_features": _COUNT},
            dim=lambda p: 32,
            library="opencv-python-headless",
        ),
        Descriptor(
            name="pftas",
            title="parameter-free threshold adjacency statistics",
            reference="Coelho et al. 2010",
            module="pftas",
            defaults={},
            annotations={},
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
        return f"{self.name}-{digest(self.as_dict())[:12]}"

    @property
    def dim(self) -> int:
        return DESCRIPTORS[self.name].dim(dict(self.params))

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params), "code": self.code}

    def compute(self, rgb: np.ndarray) -> np.ndarray:
        vector = np.asarray(DESCRIPTORS[self.name].function(rgb, **dict(self.params)), dtype=np.float64)
        assert vector.shape == (self.dim,), f"{self.name} gave {vector.shape}, expected ({self.dim},)"
        return vector
