"""GLCM texture: Haralick's co-occurrence features, numerically identical to mahotas'.

The four co-occurrence matrices are counted with OpenCV's 2-D histogram of the (pixel, neighbour)
pairs, 3x faster than mahotas' own counting loop (0.8 against 3.3 ms for the four on a 700x460
image); they are the same integer matrices, and the 13 features are mahotas' own
`haralick_features` of them, so the numbers equal `mahotas.features.haralick` (the tests check)."""

from __future__ import annotations

import mahotas
import numpy as np

from bhbench_baselines.handcrafted.counts import cooccurrences
from bhbench_baselines.handcrafted.grey import to_grey

# (row, column) steps per unit of distance of mahotas' four 2-D directions, in its order.
DIRECTIONS = ((0, 1), (1, 1), (1, 0), (1, -1))


def glcm(rgb: np.ndarray, distance: int = 1) -> np.ndarray:
    """Haralick's 13 grey-level co-occurrence features [13], mean over the four directions.

    `mahotas.features.haralick` on the 256-level grey image (symmetric co-occurrence at
    `distance`, levels 0..max). One departure from mahotas' defaults, to follow Haralick's
    definition: feature 10, difference variance, is the variance of |i - j| under p_{x-y}
    (mahotas' default is the variance of the probabilities p_{x-y}(k) themselves)."""
    grey = to_grey(rgb, min_side=distance + 1)
    levels = int(grey.max()) + 1
    matrices = [cooccurrences(grey, dy * distance, dx * distance, levels) for dy, dx in DIRECTIONS]
    return mahotas.features.texture.haralick_features(matrices, return_mean=True, use_x_minus_y_variance=True)
