"""Completed local binary patterns (Guo, Zhang and Zhang, IEEE TIP 19(6), 2010), vectorised.

Each pixel is compared with P neighbours on a circle of radius R. The differences d_p give three
codes: the sign code S (d_p >= 0), the magnitude code M (|d_p| >= the image's mean |d_p|) and the
centre code C (grey level >= the image's mean grey level). S and M are coded "riu2" (rotation
invariant, uniform: the number of ones when the circular pattern has at most two 0/1 transitions,
P + 1 otherwise), and the descriptor is the normalised joint S/M/C histogram.

Neighbours off the pixel grid are bilinearly interpolated with the same formula and floating-point
order as scikit-image's `local_binary_pattern`, so the S code equals scikit-image's "uniform" LBP
bit for bit (ties d_p == 0 included, which flat regions produce often).
"""

from __future__ import annotations

import math

import numpy as np
from bhbench_baselines.handcrafted.grey import to_grey


def circle_offsets(P: int, R: float) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets of the P neighbours, rounded to 5 decimals as scikit-image does, so
    that on-grid neighbours land exactly on pixels."""
    angles = 2 * np.pi * np.arange(P) / P
    return np.round(-R * np.sin(angles), 5), np.round(R * np.cos(angles), 5)


def _axis(offset: float, n: int, margin: int) -> tuple[int, int, np.ndarray]:
    """Lower and upper integer shifts and per-position interpolation weights along one axis,
    computed per position (pos - floor(pos)) like scikit-image, not once from the offset."""
    pos = np.arange(margin, n - margin) + offset
    return math.floor(offset), math.ceil(offset), pos - np.floor(pos)


def _along_row(g: np.ndarray, rows: slice, m: int, c_lo: int, c_hi: int, fc: np.ndarray) -> np.ndarray:
    """Samples of the given rows interpolated between columns shifted by c_lo and c_hi."""
    w = g.shape[1]
    left = g[rows, m + c_lo : w - m + c_lo]
    if c_hi == c_lo:  # on-grid column: scikit-image's (1 - 0) * a + 0 * b is exactly a
        return left
    return (1 - fc) * left + fc * g[rows, m + c_hi : w - m + c_hi]


def neighbour_differences(grey: np.ndarray, P: int, R: float) -> np.ndarray:
    """d_p = g_p - g_c for every pixel at least ceil(R) from the border: shape (P, h - 2m, w - 2m)."""
    g = grey.astype(np.float64)
    h, w = g.shape
    m = math.ceil(R)
    centre = g[m : h - m, m : w - m]
    out = np.empty((P, *centre.shape))
    for p, (dy, dx) in enumerate(zip(*circle_offsets(P, R), strict=True)):
        r_lo, r_hi, fr = _axis(dy, h, m)
        c_lo, c_hi, fc = _axis(dx, w, m)
        sample = _along_row(g, slice(m + r_lo, h - m + r_lo), m, c_lo, c_hi, fc)
        if r_hi != r_lo:
            lower = _along_row(g, slice(m + r_hi, h - m + r_hi), m, c_lo, c_hi, fc)
            sample = (1 - fr[:, None]) * sample + fr[:, None] * lower
        np.subtract(sample, centre, out=out[p])
    return out


def riu2(bits: np.ndarray) -> np.ndarray:
    """Rotation-invariant uniform code of (P, ...) boolean patterns: ones if at most two circular
    transitions, else P + 1. Values 0..P+1."""
    P = bits.shape[0]
    transitions = np.count_nonzero(bits[1:] != bits[:-1], axis=0) + (bits[0] != bits[-1])
    ones = np.count_nonzero(bits, axis=0)
    return np.where(transitions <= 2, ones, P + 1)


def clbp_codes(grey: np.ndarray, P: int, R: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S (riu2), M (riu2) and C (0/1) code maps over the pixels whose whole circle is inside."""
    d = neighbour_differences(grey, P, R)
    s = riu2(d >= 0)
    np.abs(d, out=d)
    m = riu2(d >= d.mean())
    margin = math.ceil(R)
    h, w = grey.shape
    c = grey[margin : h - margin, margin : w - margin] >= grey.mean()
    return s, m, c.astype(np.intp)


def clbp(rgb: np.ndarray, P: int = 24, R: float = 3) -> np.ndarray:
    """CLBP_S/M/C joint histogram [(P + 2) * (P + 2) * 2 = 1352 for P=24, R=3], normalised.

    Bin index is (S * (P + 2) + M) * 2 + C. Only pixels at least ceil(R) from the border are
    coded (their whole circle is inside the image; no padding invents neighbours)."""
    grey = to_grey(rgb, min_side=2 * math.ceil(R) + 1)
    s, m, c = clbp_codes(grey, P, R)
    index = (s * (P + 2) + m) * 2 + c
    hist = np.bincount(index.ravel(), minlength=2 * (P + 2) ** 2).astype(np.float64)
    return hist / index.size
