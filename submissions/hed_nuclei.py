"""Haematoxylin-channel nuclear morphometry: an example bhbench submission.

Rationale. The built-in descriptors (LBP, CLBP, LPQ, GLCM, ORB, PFTAS) read texture from grey or
RGB pixels, where nuclei, stroma and the patient's stain batch are mixed together. What a
pathologist grades is nuclear: size, shape variation, crowding and how dark the chromatin is.
Colour deconvolution (Ruifrok & Johnston 2001, `skimage.color.rgb2hed`) splits an H&E image into
haematoxylin (nuclei) and eosin (stroma, cytoplasm) optical densities, so those cues can be
measured directly: nuclei are segmented on the haematoxylin channel and described by count,
area, shape and optical density; texture is read per stain after a per-image contrast stretch,
which removes most of the stain-intensity variation between patients. A class-balanced random
forest classifies the 39 numbers; they are cached per image, so tuning never recomputes them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import numpy as np

from bhbench import Interval, Method, TestSet, TrainSet, cache_dir, check_is_fitted, register

if TYPE_CHECKING:
    import optuna

VERSION = 1  # bump when the features change: it names the feature cache
ASPECT = 700 / 460  # BreaKHis images are 700x460
PERCENTILES = (5, 25, 50, 75, 95)
GLCM_LEVELS = 16
GLCM_DISTANCES = (1, 3)
GLCM_PROPS = ("contrast", "homogeneity", "energy", "correlation")
MIN_NUCLEUS_AREA = 4  # pixels; smaller blobs are noise
N_MORPHOMETRY = 9
N_FEATURES = 2 * (2 + len(PERCENTILES)) + N_MORPHOMETRY + 2 * len(GLCM_DISTANCES) * len(GLCM_PROPS)


def stain_statistics(od: np.ndarray) -> list[float]:
    """Mean, spread and percentiles of one stain's optical density."""
    return [float(od.mean()), float(od.std()), *np.percentile(od, PERCENTILES).tolist()]


def nuclear_morphometry(haematoxylin: np.ndarray) -> list[float]:
    """Nuclei segmented by Otsu's threshold on the smoothed haematoxylin density: density, area
    fraction, area distribution, shape (eccentricity, circularity) and chromatin darkness."""
    from skimage.filters import gaussian, threshold_otsu
    from skimage.measure import label, regionprops_table

    smooth = gaussian(haematoxylin, sigma=1.0)
    if np.ptp(smooth) == 0:
        return [0.0] * N_MORPHOMETRY
    props = ("area", "eccentricity", "perimeter", "intensity_mean")
    table = regionprops_table(label(smooth > threshold_otsu(smooth)), haematoxylin, properties=props)
    keep = table["area"] >= MIN_NUCLEUS_AREA
    if not keep.any():
        return [0.0] * N_MORPHOMETRY
    area, darkness = table["area"][keep], table["intensity_mean"][keep]
    circularity = np.clip(4 * np.pi * area / np.maximum(table["perimeter"][keep], 1.0) ** 2, 0, 1)
    return [
        1e4 * keep.sum() / haematoxylin.size,  # nuclei per 10,000 pixels
        float(area.sum() / haematoxylin.size),
        float(np.log(area).mean()),
        float(np.log(area).std()),
        float(table["eccentricity"][keep].mean()),
        float(circularity.mean()),
        float(circularity.std()),
        float(darkness.mean()),
        float(darkness.std()),
    ]


def stain_texture(od: np.ndarray) -> list[float]:
    """Haralick properties of one stain, quantised between its 1st and 99th percentiles."""
    from skimage.feature import graycomatrix, graycoprops

    low, high = np.percentile(od, (1, 99))
    scaled = np.clip((od - low) / max(high - low, 1e-9), 0, 1)
    levels = np.minimum((scaled * GLCM_LEVELS).astype(np.uint8), GLCM_LEVELS - 1)
    angles = (0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
    glcm = graycomatrix(levels, GLCM_DISTANCES, angles, levels=GLCM_LEVELS, symmetric=True, normed=True)
    return [float(v) for prop in GLCM_PROPS for v in graycoprops(glcm, prop).mean(axis=1)]


def describe(rgb: np.ndarray) -> np.ndarray:
    # scikit-image (and SciPy behind it) is imported where it is used: `bhbench list` imports this file.
    from skimage.color import rgb2hed

    hed = rgb2hed(rgb)
    h, e = np.clip(hed[..., 0], 0, None), np.clip(hed[..., 1], 0, None)
    features = stain_statistics(h) + stain_statistics(e) + nuclear_morphometry(h)
    return np.array(features + stain_texture(h) + stain_texture(e), dtype=np.float32)


@register(
    "hed_nuclei_rf",
    family="submission",
    reference="Ruifrok & Johnston, Anal. Quant. Cytol. Histol. 23(4), 2001 (colour deconvolution)",
    authors="bhbench maintainers",
    licence="MIT",
    dim=N_FEATURES,
)
class HedNucleiForest(Method):
    """Colour-deconvolved H&E: stain statistics, nuclear morphometry, per-stain texture + random forest."""

    tasks = ("binary", "subtype")

    def __init__(
        self,
        n_estimators: Annotated[int, Interval(1, None)] = 300,
        max_features: Annotated[float, Interval(0, 1, closed="right")] = 0.3,
        min_samples_leaf: Annotated[int, Interval(1, None)] = 2,
        height: Annotated[int, Interval(16, None)] = 230,  # pixels the images are resized to
        seed: Annotated[int, Interval(0, None)] = 0,
    ):
        self.n_estimators = n_estimators
        self.max_features = max_features
        self.min_samples_leaf = min_samples_leaf
        self.height = height
        self.seed = seed

    @classmethod
    def search_space(cls, trial: optuna.Trial) -> dict:
        """Hyperparameters `bhbench tune` explores; the features stay cached between trials."""
        return {
            "max_features": trial.suggest_float("max_features", 0.05, 1.0, log=True),
            "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 20, log=True),
        }

    def _features(self, images: TrainSet | TestSet) -> np.ndarray:
        size = (self.height, round(self.height * ASPECT))
        keys = images.cache_keys  # None while the harness times FPS: compute, do not cache
        folder = cache_dir("features", f"hed_nuclei-v{VERSION}-{size[0]}x{size[1]}") if keys else None
        rows = []
        for i in range(len(images)):
            path = folder / f"{keys[i]}.npy" if folder is not None and keys else None
            if path is not None and path.exists():
                rows.append(np.load(path))
                continue
            row = describe(images.image(i, size))
            if path is not None:  # write then rename: parallel tuning processes share the cache
                tmp = path.with_name(f".{path.stem}.{os.getpid()}.npy")
                np.save(tmp, row)
                os.replace(tmp, path)
            rows.append(row)
        return np.stack(rows)

    def fit(self, train: TrainSet) -> HedNucleiForest:
        from sklearn.ensemble import RandomForestClassifier  # slow to import; `bhbench list` imports this file

        self.forest_ = RandomForestClassifier(
            n_estimators=self.n_estimators,
            max_features=self.max_features,
            min_samples_leaf=self.min_samples_leaf,
            class_weight="balanced",  # about 69% of BreaKHis images are malignant
            random_state=self.seed,
        ).fit(self._features(train), train.y)
        return self

    def predict_proba(self, test: TestSet) -> np.ndarray:
        check_is_fitted(self)
        # A column for every class of the task, also for those absent from the training part.
        proba = np.zeros((len(test), test.n_classes))
        proba[:, self.forest_.classes_] = self.forest_.predict_proba(self._features(test))
        return proba
