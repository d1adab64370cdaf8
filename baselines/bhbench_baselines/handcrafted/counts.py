"""Exact histograms of small non-negative integer codes, the counting step every histogram
descriptor ends with.

`np.bincount` first widens every code to 8 bytes; OpenCV's `calcHist` counts 8- and 16-bit codes
as they are, 3-4x faster on a 700x460 image (0.11 against 0.43 ms for LBP's codes, 0.17 against
0.70 ms for CLBP's, index arithmetic included). It counts in float32, exact below 2**24 pixels (a
4096x4096 image); larger images are counted by `np.bincount`.
"""

from __future__ import annotations

import cv2
import numpy as np

FLOAT32_EXACT = 1 << 24


def counts(codes: np.ndarray, bins: int) -> np.ndarray:
    """int64 counts of the values 0..bins-1 in a uint8 or uint16 array (values >= bins are not
    counted)."""
    if codes.size < FLOAT32_EXACT and codes.dtype in (np.uint8, np.uint16):
        image = np.ascontiguousarray(codes).reshape(-1, 1) if codes.ndim != 2 else codes
        return cv2.calcHist([image], [0], None, [bins], [0, bins]).ravel().astype(np.int64)
    return np.bincount(codes.ravel(), minlength=bins)[:bins]


def cooccurrences(grey: np.ndarray, dy: int, dx: int, levels: int) -> np.ndarray:
    """Symmetric co-occurrence matrix, int32 (levels, levels): entry (i, j) counts the pixel pairs
    (p, p + (dy, dx)) inside the image with grey levels (i, j), plus those with (j, i), as
    `mahotas.features.cooccurence(..., symmetric=True)` counts them. dy >= 0."""
    h, w = grey.shape
    left, right = max(0, -dx), max(0, dx)
    first = grey[: h - dy, left : w - right]
    second = grey[dy:, left + dx : w - right + dx]
    if first.size < FLOAT32_EXACT and grey.dtype == np.uint8:
        pairs = cv2.calcHist([first, second], [0, 1], None, [levels, levels], [0, levels, 0, levels])
        matrix = pairs.astype(np.int32)
    else:
        flat = first.astype(np.intp) * levels + second
        matrix = np.bincount(flat.ravel(), minlength=levels * levels).reshape(levels, levels).astype(np.int32)
    return matrix + matrix.T


def counts_each(codes: list[np.ndarray], bins: int) -> list[np.ndarray]:
    """`counts` of each of a few uint8 arrays of one shape, from one joint histogram: OpenCV's
    histogram increments one bin per pixel, and on codes that repeat over long runs (PFTAS's
    neighbour counts) successive increments of the same bin wait for each other; the joint bins
    rarely repeat, so three arrays counted together cost 0.34 ms against 3 x 0.27 (700x460)."""
    first = codes[0]
    if first.size >= FLOAT32_EXACT or first.dtype != np.uint8 or len(codes) > 3:
        return [counts(c, bins) for c in codes]
    dims = len(codes)
    joint = cv2.calcHist(codes, list(range(dims)), None, [bins] * dims, [0, bins] * dims).astype(np.int64)
    return [joint.sum(axis=tuple(a for a in range(dims) if a != d)) for d in range(dims)]
