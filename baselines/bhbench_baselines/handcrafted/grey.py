"""The one grey-level conversion every grey-level descriptor shares."""

from __future__ import annotations

import cv2
import numpy as np

from bhbench.errors import UserError


def to_grey(rgb: np.ndarray, min_side: int = 1) -> np.ndarray:
    """uint8 luma (ITU-R BT.601, as OpenCV computes it) of an RGB uint8 image at least `min_side`
    pixels on each side. Integer grey levels keep LBP ties and co-occurrence counts exact."""
    check_rgb(rgb, min_side)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def check_rgb(rgb: np.ndarray, min_side: int = 1) -> None:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise UserError(f"descriptors take RGB uint8 images of shape (h, w, 3), got {rgb.dtype} {rgb.shape}")
    if min(rgb.shape[:2]) < min_side:
        raise UserError(
            f"image of {rgb.shape[0]}x{rgb.shape[1]} px is too small: this descriptor needs "
            f"at least {min_side} px on each side"
        )
