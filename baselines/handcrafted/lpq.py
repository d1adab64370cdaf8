"""Local phase quantisation (Ojansivu and Heikkila, ICISP 2008), vectorised.

A short-term Fourier transform over a window x window neighbourhood (uniform window) is taken at
the four lowest non-zero frequencies u1 = (a, 0), u2 = (0, a), u3 = (a, a), u4 = (a, -a),
a = 1 / window. The real and imaginary parts of the four coefficients form an 8-vector per pixel.
Under a model where pixel correlation decays as rho ** distance, these eight are correlated; they
are whitened with the eigenvectors of their model covariance before each is quantised by its sign
into one bit of an 8-bit code. The descriptor is the normalised 256-bin histogram of the codes.

The phase of a frequency is unchanged by a centrally symmetric blur wherever the blur's transfer
function is positive there, which is what makes the codes blur-insensitive.
"""

from __future__ import annotations

import functools

import numpy as np
from bhbench_baselines.handcrafted.grey import to_grey


def _filters(window: int) -> tuple[np.ndarray, np.ndarray]:
    """1-D filters over offsets -r..r: w0 (frequency 0) and w1 (frequency a = 1/window)."""
    r = (window - 1) // 2
    x = np.arange(-r, r + 1)
    return np.ones(window, dtype=complex), np.exp(-2j * np.pi * x / window)


def _convolve_valid(f: np.ndarray, w: np.ndarray, axis: int) -> np.ndarray:
    """'valid' convolution along one axis: out[n] = sum_y f[c - y] w[y], c the window centre."""
    n = f.shape[axis] - len(w) + 1
    out = np.zeros((n, f.shape[1]) if axis == 0 else (f.shape[0], n), dtype=complex)
    for j, wj in enumerate(w):  # one shifted slice per tap (window is small)
        start = len(w) - 1 - j
        part = f[start : start + n] if axis == 0 else f[:, start : start + n]
        out += wj * part
    return out


def stft_coefficients(grey: np.ndarray, window: int) -> np.ndarray:
    """Real and imaginary STFT parts at u1..u4 for every full window: shape (8, h', w')."""
    w0, w1 = _filters(window)
    f = np.asarray(grey, dtype=np.float64)
    v0, v1 = _convolve_valid(f, w0, 0), _convolve_valid(f, w1, 0)  # vertical frequency 0 and a
    responses = (
        _convolve_valid(v0, w1, 1),  # u1 = (a, 0): horizontal a
        _convolve_valid(v1, w0, 1),  # u2 = (0, a): vertical a
        _convolve_valid(v1, w1, 1),  # u3 = (a, a)
        _convolve_valid(v1, np.conj(w1), 1),  # u4 = (a, -a)
    )
    return np.stack([part for z in responses for part in (z.real, z.imag)])


@functools.lru_cache(maxsize=16)
def whitening(window: int, rho: float) -> np.ndarray:
    """8x8 matrix decorrelating the STFT parts when pixel correlation is rho ** distance.

    Eigenvectors are ordered by decreasing variance, and each is signed so its largest entry is
    positive, so the same (window, rho) always gives the same codes. The eight parts come in
    symmetric pairs of equal variance, whose eigenvectors are only defined up to a rotation; a
    slightly unequal scaling of the parts (1 + k * 1e-6) separates them deterministically."""
    # Each STFT part is a linear function of the window's pixels; probe it with unit impulses.
    impulses = np.eye(window * window).reshape(-1, window, window)
    basis = np.stack([stft_coefficients(img, window)[:, 0, 0] for img in impulses], axis=1)
    yy, xx = np.divmod(np.arange(window * window), window)
    distance = np.hypot(yy[:, None] - yy[None, :], xx[:, None] - xx[None, :])
    covariance = basis @ (rho**distance) @ basis.T
    scale = np.diag(1 + 1e-6 * np.arange(8, 0, -1))
    values, vectors = np.linalg.eigh(scale @ covariance @ scale)
    vectors = vectors[:, np.argsort(values)[::-1]]
    signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(8)])
    return (vectors * signs).T


def lpq_codes(grey: np.ndarray, window: int, rho: float) -> np.ndarray:
    """8-bit LPQ code of every pixel with a full window around it."""
    parts = stft_coefficients(grey, window)
    white = np.tensordot(whitening(window, rho), parts, axes=1)
    weights = (1 << np.arange(8)).reshape(8, 1, 1)
    return ((white > 0) * weights).sum(axis=0)


def lpq(rgb: np.ndarray, window: int = 3, rho: float = 0.9) -> np.ndarray:
    """LPQ histogram [256]: codes of all pixels with a full window x window neighbourhood,
    decorrelated with correlation coefficient `rho` (0.9 as in the paper), normalised."""
    codes = lpq_codes(to_grey(rgb, min_side=window), window, float(rho))
    return np.bincount(codes.ravel(), minlength=256) / codes.size
