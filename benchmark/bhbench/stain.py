"""Stain normalisation as a harness stage (`--stain-norm macenko|reinhard`).

Every method, built-in or submitted, is handed normalised pixels: the harness normalises the images
of a fold before staging them in the fold's blind area. The target (Macenko's stain matrix and
maximal concentrations, Reinhard's LAB means and deviations) is fitted per fold on a mosaic of
crops from a seeded sample of the fold's training images only, never a test image, and goes into
the record. The estimators are torchstain's (numpy backend).

A normalised image is cached in the image store under a key derived from its source's content key
and the target's digest, like a resized copy; the method sees it only through the handle of its
blind area (`bhbench.blind`), which is of the fold and target, so nothing links it to the raw image.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np

from bhbench import util
from bhbench.data.images import ImageStore
from bhbench.record import StainTarget

REFERENCE_IMAGES = 64  # training images sampled per fold for the target
TILE = 128  # side of the crop each contributes to the reference mosaic


class StainError(Exception):
    """An image (or reference mosaic) in which the estimator finds no stain."""


def _library(method: str) -> Any:
    import torchstain  # its numpy backend imports no torch

    normalizers = torchstain.normalizers
    return normalizers.MacenkoNormalizer(backend="numpy") if method == "macenko" else normalizers.ReinhardNormalizer()


# A target's parameters by name (their order is the record's), and the estimator's attribute for each.
_TARGET = {
    "macenko": {"stain_matrix": "HERef", "max_concentrations": "maxCRef"},
    "reinhard": {"means": "target_means", "stds": "target_stds"},
}


def _guarded(call: Any, *args: Any, **kwargs: Any) -> Any:
    """The estimator's result; StainError when it cannot estimate stains (a nearly background-only
    image leaves no stained pixels: empty covariances, zero deviations, NaN)."""
    try:
        # Only division by zero and NaN: exp overflow is the estimator's way to clip to white.
        with np.errstate(divide="raise", invalid="raise"):
            return call(*args, **kwargs)
    except (ArithmeticError, ValueError, IndexError, np.linalg.LinAlgError) as exc:
        raise StainError(f"no stain to estimate ({exc})") from None


@contextmanager
def quiet() -> Iterator[None]:
    """The estimator's RuntimeWarnings silenced: on an image without stain it warns, then fails, and
    StainError says it. Warning filters are process-wide: enter it around a thread pool, not in one."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"(numpy|torchstain)\.")
        yield


def fit(method: str, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """The target torchstain's estimator fits on these RGB pixels, its parameters by name; StainError
    when they hold no stain to estimate (or yield a non-finite target)."""
    estimator = _library(method)
    _guarded(estimator.fit, pixels)
    params = {name: np.asarray(getattr(estimator, attr)) for name, attr in _TARGET[method].items()}
    if not all(np.isfinite(value).all() for value in params.values()):
        raise StainError("no stain to estimate (a non-finite target)")
    return params


def reference(store: ImageStore, keys: Sequence[str], seed: int | Sequence[int]) -> np.ndarray:
    """A column of crops, at seeded places, from a seeded sample of up to REFERENCE_IMAGES images."""
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(keys), size=min(REFERENCE_IMAGES, len(keys)), replace=False))
    images = [store.load(keys[i]) for i in chosen]
    side = min(TILE, *(min(img.shape[:2]) for img in images))
    crops = []
    for img in images:
        top, left = rng.integers(0, img.shape[0] - side + 1), rng.integers(0, img.shape[1] - side + 1)
        crops.append(img[top : top + side, left : left + side])
    return np.concatenate(crops)


def estimate(method: str, store: ImageStore, keys: Sequence[str], seed: int | Sequence[int]) -> StainTarget:
    """The target the estimator fits on the reference mosaic of these (training) images, with its
    parameters as JSON."""
    params = {name: value.tolist() for name, value in fit(method, reference(store, keys, seed)).items()}
    return StainTarget(method, util.digest(params)[:16], min(REFERENCE_IMAGES, len(keys)), params)


class Normaliser:
    """Normalises images to one fitted target and caches them in the image store."""

    def __init__(self, target: StainTarget):
        self.target = target
        self.estimator = _library(target.method)  # torchstain's normaliser, set to the target
        for name, attr in _TARGET[target.method].items():
            setattr(self.estimator, attr, np.asarray(target.params[name], dtype=float))

    def partition(self, partition: str) -> str:
        """The blind area of this target's images: their own, apart from the raw images' area."""
        return hashlib.sha256(f"{partition}|stain|{self.target.digest}".encode()).hexdigest()

    def key(self, source: str) -> str:
        """The store key of a source image normalised to this target."""
        return hashlib.blake2b(f"{source}|{self.target.digest}".encode(), digest_size=16).hexdigest()

    def apply(self, img: np.ndarray) -> np.ndarray:
        if self.target.method == "macenko":
            import cv2  # imported on first use: `bhbench list` stays fast

            # torchstain's output is an RGB view of colour planes; the cache needs the pixels
            # interleaved: OpenCV does it in 0.04 ms a 700x460 image, numpy's copy in 1.1 ms.
            return cv2.merge(tuple(_guarded(self.estimator.normalize, I=img, stains=False)[0].transpose(2, 0, 1)))
        return _guarded(self.estimator.normalize, I=img)

    def _make(self, source: str, store: ImageStore) -> str:
        key = self.key(source)
        if store.has(key):
            return key
        try:
            store.save(key, self.apply(store.load(source)))
        except StainError:
            return source
        return key

    def stage(self, keys: Sequence[str], store: ImageStore) -> list[str]:
        """The store keys of these images normalised, made (in parallel) where not cached yet; an
        image in which the estimator finds no stain (Macenko keeps only pixels dense in all three
        channels: a pale or nearly background-only image may have none) keeps its own key, is handed
        over as it is and tried again next time (`unnormalised`)."""
        workers = min(util.cpu_count(), len(keys))
        with quiet():
            if workers <= 1:  # a pool of one adds only a thread hand-off: 0.1 ms, ms on a busy machine
                return [self._make(k, store) for k in keys]
            with ThreadPoolExecutor(workers) as pool:
                return list(pool.map(lambda k: self._make(k, store), keys))

    def unnormalised(self, keys: Sequence[str], store: ImageStore) -> list[str]:
        """Those of the staged images handed over as they are."""
        return [k for k in keys if not store.has(self.key(k))]
