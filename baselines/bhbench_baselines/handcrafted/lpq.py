"""Local phase quantisation (Ojansivu and Heikkila, ICISP 2008), vectorised.

A short-term Fourier transform over a window x window neighbourhood (uniform window) is taken at
the four lowest non-zero frequencies u1 = (a, 0), u2 = (0, a), u3 = (a, a), u4 = (a, -a),
a = 1 / window ((horizontal, vertical) cycles per pixel). The real and imaginary parts of the four
coefficients form an 8-vector per pixel. Under a model where pixel correlation decays as
rho ** distance these eight are correlated; they are whitened with the eigenvectors of their model
covariance before each is quantised by its sign (positive: 1) into one bit of an 8-bit code. The descriptor is
the normalised 256-bin histogram of the codes.

Every part is a linear filter of the window, and so is every whitened part: the whitening is
folded into eight window x window kernels, applied with OpenCV's `filter2D`.

The phase of a frequency is unchanged by a centrally symmetric blur wherever the blur's transfer
function is positive there, which is what makes the codes blur-insensitive.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import cv2
import numpy as np

from bhbench_baselines.handcrafted.counts import counts
from bhbench_baselines.handcrafted.grey import to_grey

FREQUENCIES = ((1, 0), (0, 1), (1, 1), (1, -1))  # (horizontal, vertical), in units of 1/window
# In a flat window every part is zero, computed as +-1e-13 or so: parts below ZERO count as zero
# (bit 0), so flat regions get code 0 whatever the rounding. Grey levels are integers, and any
# real response is far above this.
ZERO = 1e-9


def stft_kernels(window: int) -> np.ndarray:
    """(8, window, window) correlation kernels of Re and Im of F(u, x) = sum_y f(x - y) exp(-2 pi i
    u.y) for u1..u4: the pixel at offset t from the centre weighs exp(+2 pi i u.t)."""
    r = window // 2
    ty, tx = np.mgrid[-r : r + 1, -r : r + 1]
    kernels = []
    for fx, fy in FREQUENCIES:
        phase = 2 * np.pi * (fx * tx + fy * ty) / window
        kernels += [np.cos(phase), np.sin(phase)]
    return np.stack(kernels)


@functools.lru_cache(maxsize=16)
def whitening(window: int, rho: float) -> np.ndarray:
    """8x8 rotation decorrelating the STFT parts when pixel correlation is rho ** distance.

    Eigenvectors are ordered by decreasing variance, and each is signed so its largest entry is
    positive, so the same (window, rho) always gives the same codes. The eight parts come in
    symmetric pairs of equal variance, whose eigenvectors are only defined up to a rotation; a
    slightly unequal scaling of the parts (1 + k * 1e-6) separates them deterministically."""
    basis = stft_kernels(window).reshape(8, -1)
    yy, xx = np.divmod(np.arange(window * window), window)
    covariance = basis @ (rho ** np.hypot(yy[:, None] - yy, xx[:, None] - xx)) @ basis.T
    scale = np.diag(1 + 1e-6 * np.arange(8, 0, -1))
    values, vectors = np.linalg.eigh(scale @ covariance @ scale)
    vectors = vectors[:, np.argsort(values)[::-1]]
    signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(8)])
    return (vectors * signs).T


@functools.lru_cache(maxsize=16)
def _whitened_kernels(window: int, rho: float) -> np.ndarray:
    return np.tensordot(whitening(window, rho), stft_kernels(window), axes=1)


def whitened_parts(grey: np.ndarray, window: int, rho: float) -> Iterator[np.ndarray]:
    """The eight decorrelated STFT parts, one (h', w') plane at a time, of every pixel with a full
    window."""
    f = np.asarray(grey, dtype=np.float64)
    r = window // 2
    h, w = f.shape
    for kernel in _whitened_kernels(window, rho):
        yield cv2.filter2D(f, cv2.CV_64F, kernel)[r : h - r, r : w - r]


def lpq(rgb: np.ndarray, window: int = 3, rho: float = 0.9) -> np.ndarray:
    """LPQ histogram [256]: codes of all pixels with a full window x window neighbourhood,
    decorrelated with correlation coefficient `rho` (0.9 as in the paper), normalised."""
    grey = to_grey(rgb, min_side=window)
    r = window // 2
    codes = np.zeros((grey.shape[0] - 2 * r, grey.shape[1] - 2 * r), np.uint8)
    for bit, part in enumerate(whitened_parts(grey, window, float(rho))):
        codes |= (part > ZERO).view(np.uint8) << bit
    return counts(codes, 256) / codes.size
