"""Pooled ORB keypoint descriptors through OpenCV."""

from __future__ import annotations

import cv2
import numpy as np

from bhbench_baselines.handcrafted.grey import to_grey


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
