"""Local binary patterns: rotation-invariant uniform LBP (Ojala, Pietikainen and Maenpaa, IEEE
TPAMI 24(7), 2002) and completed LBP (Guo, Zhang and Zhang, IEEE TIP 19(6), 2010), compiled.

Each pixel is compared with P neighbours on a circle of radius R. The differences d_p give the
sign code S (d_p >= 0), which is LBP, and for CLBP also the magnitude code M (|d_p| >= the image's
mean |d_p|) and the centre code C (grey level >= the image's mean grey level). S and M are coded
"riu2" (rotation invariant, uniform): the number of ones when the circular pattern has at most two
0/1 transitions, P + 1 otherwise.

Neighbours off the pixel grid are bilinearly interpolated with scikit-image's formula, operation
order and per-position weights, so the S code equals `skimage.feature.local_binary_pattern(grey, P,
R, "uniform")` bit for bit, ties d_p == 0 included (the tests check it on every pixel), and the M
threshold is numpy's mean of the whole (P, h, w) array of |d_p|, as a direct implementation takes
it. No library computes CLBP, and numpy takes each neighbour through ~8 whole-plane operations,
so the per-pixel work is two numba kernels, compiled once per process (a few seconds, cached on
disk where the package folder or ~/.cache is writable) without fast-math, so every product and sum
rounds as numpy's do: one row of one neighbour at a time, its bits counted into the codes as they
arrive. Measured side by side on BreaKHis 700x460 images, one thread: CLBP 14 ms and LBP 1.8 ms
against 32 and 5.9 for the cache-sized bands of numpy planes they replace (perf/handcrafted.py
checks they still give the same numbers as the definitions).
"""

from __future__ import annotations

import functools
import math
import threading

import numba
import numpy as np

from bhbench_baselines.handcrafted.counts import counts
from bhbench_baselines.handcrafted.grey import to_grey

_scratch = threading.local()
# Where each neighbour is read and how it is weighted: (row lo, row hi, column lo, column hi) offsets,
# each (P,), then the row weights (1 - f, f), each (P, h), and the column weights, each (P, w)
Geometry = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
# Per pixel of a row, uint8 (P <= 254, see descriptors.py): ones among the bits so far, 0/1
# transitions so far, first bit, last bit
Tally = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def circle_offsets(P: int, R: float) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets of the P neighbours, rounded to 5 decimals as scikit-image does, so
    that on-grid neighbours land exactly on pixels."""
    angles = 2 * np.pi * np.arange(P) / P
    return np.round(-R * np.sin(angles), 5), np.round(R * np.cos(angles), 5)


def _weights(first: int, count: int, offset: float) -> tuple[np.ndarray, np.ndarray]:
    """(1 - f, f) with f = pos - floor(pos) for positions first + offset, ..., as scikit-image
    computes them: the sum rounds differently from one power of two to the next, so f is taken per
    position. On the grid f = 0, and (1 - 0) * a + 0 * b is a itself."""
    pos = np.arange(first, first + count) + offset
    f = pos - np.floor(pos)
    return 1 - f, f


@functools.lru_cache(maxsize=16)  # a dataset has a few image sizes
def _geometry(P: int, R: float, origin: int, h: int, w: int) -> Geometry:
    """The neighbours of h x w coded pixels, the first at scikit-image's coordinate `origin`."""
    dys, dxs = circle_offsets(P, R)
    rows = [_weights(origin, h, dy) for dy in dys]
    columns = [_weights(origin, w, dx) for dx in dxs]
    geometry = (
        np.floor(dys).astype(np.int64),
        np.ceil(dys).astype(np.int64),
        np.floor(dxs).astype(np.int64),
        np.ceil(dxs).astype(np.int64),
        np.array([low for low, _ in rows]),
        np.array([high for _, high in rows]),
        np.array([low for low, _ in columns]),
        np.array([high for _, high in columns]),
    )
    for array in geometry:
        array.flags.writeable = False  # shared by every image of this size
    return geometry


def _padded(grey: np.ndarray, m: int, pad: bool) -> np.ndarray:
    """The grey levels, with a border of m zeros (scikit-image's outside) when `pad`. The kernels
    read them as uint8 and widen each to float64 exactly, as numpy does."""
    return np.pad(grey, m) if pad else np.ascontiguousarray(grey)


_jit = numba.njit(cache=True, nogil=True, boundscheck=False)  # no fastmath: numpy's roundings
_inline = numba.njit(inline="always", nogil=True, boundscheck=False)


@_inline
def _differences(g: np.ndarray, m: int, r: int, p: int, geometry: Geometry, out: np.ndarray) -> None:
    """d_p of every coded pixel of row r into `out`: ((1 - fy) * top + fy * bottom) - g_c, with top
    and bottom ((1 - fx) * left + fx * right) on the two pixel rows around the neighbour."""
    lo_y, hi_y, lo_x, hi_x, row_low, row_high, column_low, column_high = geometry
    w = out.shape[0]
    above, below, centre = g[r + m + lo_y[p]], g[r + m + hi_y[p]], g[r + m, m : m + w]
    left, right = m + lo_x[p], m + hi_x[p]
    # slices indexed from 0: the compiler then knows no index is negative and vectorises the loop
    above_left, above_right = above[left : left + w], above[right : right + w]
    below_left, below_right = below[left : left + w], below[right : right + w]
    fy0, fy1, fx0, fx1 = row_low[p, r], row_high[p, r], column_low[p], column_high[p]
    for c in range(w):
        top = fx0[c] * above_left[c] + fx1[c] * above_right[c]
        bottom = fx0[c] * below_left[c] + fx1[c] * below_right[c]
        out[c] = (fy0 * top + fy1 * bottom) - centre[c]


@_inline
def _add_bits(bits: np.ndarray, p: int, tally: Tally) -> None:
    """Count bit p (0/1) of each pixel's pattern into the tally: ones, 0/1 transitions so far, the
    first bit, the last bit."""
    ones, flips, first, last = tally
    if p == 0:
        for c in range(bits.shape[0]):
            ones[c], flips[c], first[c], last[c] = bits[c], 0, bits[c], bits[c]
    else:
        for c in range(bits.shape[0]):
            ones[c] += bits[c]
            flips[c] += bits[c] ^ last[c]
            last[c] = bits[c]


@_inline
def _tally(w: int) -> Tally:
    return np.empty(w, np.uint8), np.empty(w, np.uint8), np.empty(w, np.uint8), np.empty(w, np.uint8)


@_inline
def _riu2(P: int, tally: Tally, out: np.ndarray) -> None:
    """riu2 codes from the tally: ones when the circular pattern has at most two transitions."""
    ones, flips, first, last = tally
    for c in range(out.shape[0]):
        out[c] = ones[c] if flips[c] + (last[c] ^ first[c]) <= 2 else P + 1


@_jit
def _sign_codes(g: np.ndarray, m: int, geometry: Geometry, magnitudes: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """riu2 S codes of the coded pixels of g (which has a margin of m around them); when
    `magnitudes` is (P, h, w) rather than empty, also each |d_p| into it (rounded to its dtype)
    and the sum of row r's |d_p| over its pixels into sums[r, p]."""
    P, h, w = geometry[0].shape[0], geometry[4].shape[1], geometry[6].shape[1]
    codes = np.empty((h, w), np.uint8)
    d, bits = np.empty(w), np.empty(w, np.uint8)
    tally = _tally(w)
    keep = magnitudes.shape[0] > 0
    for r in range(h):
        for p in range(P):
            _differences(g, m, r, p, geometry, d)
            for c in range(w):
                bits[c] = d[c] >= 0
            _add_bits(bits, p, tally)
            if keep:
                # four running sums: one would wait for each addition to finish before the next
                s0, s1, s2, s3 = 0.0, 0.0, 0.0, 0.0
                for c in range(0, w - 3, 4):
                    a0 = abs(d[c])
                    a1 = abs(d[c + 1])
                    a2 = abs(d[c + 2])
                    a3 = abs(d[c + 3])
                    s0 += a0
                    s1 += a1
                    s2 += a2
                    s3 += a3
                    magnitudes[p, r, c] = a0
                    magnitudes[p, r, c + 1] = a1
                    magnitudes[p, r, c + 2] = a2
                    magnitudes[p, r, c + 3] = a3
                for c in range(w - w % 4, w):
                    magnitudes[p, r, c] = abs(d[c])
                    s0 += abs(d[c])
                sums[r, p] = (s0 + s1) + (s2 + s3)
        _riu2(P, tally, codes[r])
    return codes


@_jit
def _magnitude_codes(
    magnitudes: np.ndarray, T: np.floating, low: float, high: float, g: np.ndarray, m: int, geometry: Geometry
) -> tuple[np.ndarray, int]:
    """riu2 M codes against a threshold t known to lie in [low, high], from |d_p| rounded to the
    magnitudes' dtype (T's too), whose rounding keeps order: with T = round(high) = round(low), a stored
    f > T means |d_p| > high and f < T means |d_p| < low. Where f == T, |d_p| is computed again in
    float64 (10 of the 283 mini images need this somewhere). Returns the codes and how many were
    computed again, or -1 when one of those lies in [low, high) itself and t must be known exactly."""
    P, h, w = magnitudes.shape
    codes = np.empty((h, w), np.uint8)
    d, bits = np.empty(w), np.empty(w, np.uint8)
    tally = _tally(w)
    again = 0
    for r in range(h):
        for p in range(P):
            stored = magnitudes[p, r]
            tie = False
            for c in range(w):
                bits[c] = stored[c] > T
                tie |= stored[c] == T
            if tie:
                _differences(g, m, r, p, geometry, d)
                for c in range(w):
                    if stored[c] == T:
                        again += 1
                        exact = abs(d[c])
                        if low <= exact < high:
                            return codes, -1
                        bits[c] = exact >= high
            _add_bits(bits, p, tally)
        _riu2(P, tally, codes[r])
    return codes, again


def lbp_codes(grey: np.ndarray, P: int, R: float) -> np.ndarray:
    """riu2 sign codes of every pixel, zeros outside the image, as scikit-image's
    `local_binary_pattern(grey, P, R, "uniform")` gives them."""
    m = math.ceil(R)
    geometry = _geometry(P, float(R), 0, *grey.shape)
    return _sign_codes(_padded(grey, m, pad=True), m, geometry, np.empty((0, 0, 0), np.float32), np.empty((0, 0)))


def lbp(rgb: np.ndarray, P: int = 8, R: float = 1) -> np.ndarray:
    """Rotation-invariant uniform LBP histogram [P + 2 = 10 for P=8, R=1], normalised.

    Every pixel is coded, with zeros outside the image, as scikit-image's `local_binary_pattern(
    grey, P, R, "uniform")` does; code P + 1 collects the non-uniform patterns."""
    codes = lbp_codes(to_grey(rgb), P, R)
    return counts(codes, P + 2) / codes.size


# The mean of the |d_p| from the kernel's row sums is within this relative distance of numpy's mean
# of the whole (P, h, w) array, with 1000x to spare: both sum non-negative numbers, numpy pairwise
# (relative error below ~50 roundings, 6e-15), the kernel in four running sums along each row of a
# neighbour (~w / 4 roundings, 2e-14 at 700 px) and numpy pairwise over those. Measured on the 283
# mini images: at most 5e-16 apart.
MEAN_SLACK = 1e-10


def clbp_codes(grey: np.ndarray, P: int, R: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S (riu2), M (riu2) and C (0/1) code maps over the pixels whose whole circle is inside.

    The M threshold t is numpy's mean of the whole (P, h, w) float64 array of |d_p|, as the
    definition reads, but that array (60 MB at 700x460) is not kept: the kernel sums the |d_p| as
    it goes and keeps them as float32 (30 MB), and M's bits come from those, giving the float64
    ones (see `_magnitude_codes`). Where the row sums cannot place t closely enough (MEAN_SLACK)
    or a |d_p| is too close to it, the whole float64 array is built and its mean taken."""
    m = math.ceil(R)
    h, w = grey.shape[0] - 2 * m, grey.shape[1] - 2 * m
    g, geometry = _padded(grey, m, pad=False), _geometry(P, float(R), m, h, w)
    # the thread's scratch, reused from image to image: a fresh 30 MB array faults in every page again
    stored = getattr(_scratch, "magnitudes", None)
    if stored is None or stored.size < P * h * w:
        stored = _scratch.magnitudes = np.empty(P * h * w, np.float32)
    stored = stored[: P * h * w].reshape(P, h, w)
    sums = np.empty((h, P))
    s = _sign_codes(g, m, geometry, stored, sums)
    codes = _magnitude_code_from_float32(stored, float(sums.sum()) / stored.size, g, m, geometry)
    if codes is None:  # t not placed closely enough, or some |d_p| too close to it
        codes = _magnitude_code(g, m, geometry)
    c = grey[m : m + h, m : m + w] >= grey.mean()
    return s, codes, c.view(np.uint8)


def _magnitude_code_from_float32(
    stored: np.ndarray, mean: float, g: np.ndarray, m: int, geometry: Geometry
) -> np.ndarray | None:
    """M from the float32 |d_p| and the mean from the row sums, or None where they cannot decide."""
    low, high = mean * (1 - MEAN_SLACK), mean * (1 + MEAN_SLACK)  # numpy's mean lies in [low, high]
    if np.float32(low) != np.float32(high):
        return None
    codes, again = _magnitude_codes(stored, np.float32(high), low, high, g, m, geometry)
    return codes if again >= 0 else None


def _magnitude_code(g: np.ndarray, m: int, geometry: Geometry) -> np.ndarray:
    """M against numpy's mean of the whole float64 (P, h, w) array of |d_p|, built for it."""
    P, h, w = geometry[0].shape[0], geometry[4].shape[1], geometry[6].shape[1]
    magnitudes = np.empty((P, h, w))
    _sign_codes(g, m, geometry, magnitudes, np.empty((h, P)))
    threshold = float(magnitudes.mean())
    codes, _ = _magnitude_codes(magnitudes, np.float64(threshold), threshold, threshold, g, m, geometry)
    return codes


def clbp(rgb: np.ndarray, P: int = 24, R: float = 3) -> np.ndarray:
    """CLBP_S/M/C joint histogram [(P + 2) * (P + 2) * 2 = 1352 for P=24, R=3], normalised.

    Bin index is (S * (P + 2) + M) * 2 + C. Only pixels at least ceil(R) from the border are
    coded (their whole circle is inside the image; no padding invents neighbours)."""
    grey = to_grey(rgb, min_side=2 * math.ceil(R) + 1)
    s, m, c = clbp_codes(grey, P, R)
    bins = 2 * (P + 2) ** 2
    index = s.astype(np.min_scalar_type(bins - 1))
    index *= P + 2
    index += m
    index *= 2
    index += c
    return counts(index, bins) / index.size
