"""Test-time stain perturbation for `bhbench robustness`: a fitted method's test images shifted in
HED space (haematoxylin, eosin, DAB: skimage's colour deconvolution) at graded strengths.

At strength s each image's three stain concentrations are rescaled and offset,
c' = a * c + b * m, with a drawn from U(1 - s, 1 + s), b from U(-s, s) and m the channel's 99th
percentile in that image (so an offset is a share of the stain's own range, whatever the units), one
draw per channel. The draws are seeded by the image's content key, the strength and the run's seed:
the same image is shifted the same way in every run, fold and method, and no two images alike.
Strength 0 is the image itself. A shifted image is cached in the image store under a key derived
from its source's key, the strength and the seed, like a resized copy; a method sees it only through
a handle of its blind area, in a secret order among the other strengths' images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bhbench import util
from bhbench.data.images import ImageStore

STRENGTHS = (0.0, 0.05, 0.1, 0.2, 0.4)  # light to harsh; 0 is the image as it is


def shifted(img: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """The RGB uint8 image with its stain concentrations rescaled and offset at this strength."""
    from skimage.color import hed2rgb, rgb2hed

    hed = rgb2hed(img)
    scale = rng.uniform(1 - strength, 1 + strength, size=3)
    offset = rng.uniform(-strength, strength, size=3) * np.percentile(hed.reshape(-1, 3), 99, axis=0)
    rgb = hed2rgb(hed * scale + offset)
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Shift:
    """The perturbation of a robustness run: its strengths and seed."""

    strengths: tuple[float, ...] = STRENGTHS
    seed: int = 0

    def _name(self, source: str, strength: float) -> str:
        return f"{source}|hed|{strength!r}|{self.seed}"

    def key(self, source: str, strength: float) -> str:
        """The store key of a source image shifted at this strength (the source's own at 0)."""
        if strength == 0:
            return source
        return hashlib.blake2b(self._name(source, strength).encode(), digest_size=16).hexdigest()

    def rng(self, source: str, strength: float) -> np.random.Generator:
        return np.random.default_rng(int.from_bytes(hashlib.sha256(self._name(source, strength).encode()).digest()[:8]))

    def _make(self, source: str, strength: float, store: ImageStore) -> str:
        key = self.key(source, strength)
        if not store.has(key):
            store.save(key, shifted(store.load(source), strength, self.rng(source, strength)))
        return key

    def stage(self, keys: Sequence[str], store: ImageStore) -> dict[float, list[str]]:
        """For each strength, the store keys of these images shifted at it (made where not cached)."""
        staged = {}
        with ThreadPoolExecutor(util.cpu_count()) as pool:  # skimage's conversions release the GIL
            for s in self.strengths:
                staged[s] = list(pool.map(lambda k, s=s: self._make(k, s, store), keys))
        return staged

    def expand(self, test: pd.DataFrame, store: ImageStore) -> pd.DataFrame:
        """The test rows once per strength (column `strength`), each with its shifted image's key."""
        staged = self.stage(list(test["key"]), store)
        copies = [test.assign(key=keys, strength=s) for s, keys in staged.items()]
        return pd.concat(copies, ignore_index=True)
