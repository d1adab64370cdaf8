"""GLCM texture: Haralick's co-occurrence features through mahotas."""

from __future__ import annotations

import mahotas
import numpy as np

from bhbench_baselines.handcrafted.grey import to_grey


def glcm(rgb: np.ndarray, distance: int = 1) -> np.ndarray:
    """Haralick's 13 grey-level co-occurrence features [13], mean over the four directions.

    `mahotas.features.haralick` on the 256-level grey image (symmetric co-occurrence at
    `distance`). One departure from mahotas' defaults, to follow Haralick's definition: feature 10,
    difference variance, is the variance of |i - j| under p_{x-y} (mahotas' default is the variance
    of the probabilities p_{x-y}(k) themselves)."""
    grey = to_grey(rgb, min_side=distance + 1)
    return mahotas.features.haralick(grey, distance=distance, return_mean=True, use_x_minus_y_variance=True)
