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
from collections.abc import Iterable

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


def _interpolate(g: np.ndarray, m: int, dy: float, dx: float, out: np.ndarray, tmp: np.ndarray) -> None:
    """Writes into `out` the samples at offset (dy, dx) of every pixel at least m from the border,
    as scikit-image computes them: top = (1 - fc) * TL + fc * TR, bottom likewise, then
    (1 - fr) * top + fr * bottom; an on-grid axis skips its exact (1 - 0) * a + 0 * b."""
    h, w = g.shape
    r_lo, r_hi, fr = _axis(dy, h, m)
    c_lo, c_hi, fc = _axis(dx, w, m)

    def row(shift: int, dest: np.ndarray) -> None:
        rows = slice(m + shift, h - m + shift)
        left = g[rows, m + c_lo : w - m + c_lo]
        if c_hi == c_lo:
            dest[...] = left
            return
        np.multiply(1 - fc, left, out=dest)
        dest += fc * g[rows, m + c_hi : w - m + c_hi]

    row(r_lo, out)
    if r_hi != r_lo:
        row(r_hi, tmp)
        out *= (1 - fr)[:, None]
        tmp *= fr[:, None]
        out += tmp


def neighbour_differences(grey: np.ndarray, P: int, R: float) -> np.ndarray:
    """d_p = g_p - g_c for every pixel at least ceil(R) from the border: shape (P, h - 2m, w - 2m)."""
    g = grey.astype(np.float64)
    h, w = g.shape
    m = math.ceil(R)
    centre = g[m : h - m, m : w - m]
    out = np.empty((P, *centre.shape))
    tmp = np.empty(centre.shape)
    for p, (dy, dx) in enumerate(zip(*circle_offsets(P, R), strict=True)):
        _interpolate(g, m, dy, dx, out[p], tmp)
        out[p] -= centre
    return out


def riu2(planes: Iterable[np.ndarray]) -> np.ndarray:
    """Rotation-invariant uniform codes of P boolean planes (bit p of every pixel's pattern):
    the number of ones if the circular pattern has at most two transitions, else P + 1.
    Planes are consumed one at a time, so a (P, h, w) boolean array is never built."""
    ones = transitions = first = previous = None
    P = 0
    for bits in planes:
        if first is None:
            first, ones, transitions = bits, bits.astype(np.uint8), np.zeros(bits.shape, np.uint8)
        else:
            ones += bits
            transitions += bits != previous
        previous, P = bits, P + 1
    if first is None or ones is None or transitions is None:
        raise ValueError("riu2 needs at least one bit plane")
    transitions += first != previous
    return np.where(transitions <= 2, ones, P + 1)


def clbp_codes(grey: np.ndarray, P: int, R: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S (riu2), M (riu2) and C (0/1) code maps over the pixels whose whole circle is inside."""
    d = neighbour_differences(grey, P, R)
    s = riu2(plane >= 0 for plane in d)
    np.abs(d, out=d)
    threshold = d.mean()
    m = riu2(plane >= threshold for plane in d)
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
