"""Local binary patterns: rotation-invariant uniform LBP (Ojala, Pietikainen and Maenpaa, IEEE
TPAMI 24(7), 2002) and completed LBP (Guo, Zhang and Zhang, IEEE TIP 19(6), 2010), vectorised.

Each pixel is compared with P neighbours on a circle of radius R. The differences d_p give the
sign code S (d_p >= 0), which is LBP, and for CLBP also the magnitude code M (|d_p| >= the image's
mean |d_p|) and the centre code C (grey level >= the image's mean grey level). S and M are coded
"riu2" (rotation invariant, uniform): the number of ones when the circular pattern has at most two
0/1 transitions, P + 1 otherwise.

Neighbours off the pixel grid are bilinearly interpolated with scikit-image's formula, operation
order and per-position weights, so the S code equals `skimage.feature.local_binary_pattern(grey, P,
R, "uniform")` bit for bit, ties d_p == 0 included (the tests check it on every pixel), and the M
threshold is numpy's mean of the whole (P, h, w) array of |d_p|, as a direct implementation takes
it. The work runs in bands of rows whose planes stay in the core's cache, the codes count in one
byte per pixel, and CLBP keeps its |d_p| for M as float32 (see `clbp_codes` for why the bits are
still the float64 ones): measured on BreaKHis 700x460 images, one thread, CLBP ~25 ms, 3.5x
cheaper than whole-image numpy planes, LBP ~5 ms (perf/handcrafted.py checks they still give the
same numbers).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator

import numpy as np

from bhbench_baselines.handcrafted.counts import counts
from bhbench_baselines.handcrafted.grey import to_grey

# Rows per band: a band's planes (~150 KB each at 700 px wide) stay in a 1 MB L2 cache, while numpy's
# per-call overhead stays small beside the arithmetic. 16 and 64 measured slower on 700x460 images.
BAND = 32
_scratch = threading.local()


def circle_offsets(P: int, R: float) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets of the P neighbours, rounded to 5 decimals as scikit-image does, so
    that on-grid neighbours land exactly on pixels."""
    angles = 2 * np.pi * np.arange(P) / P
    return np.round(-R * np.sin(angles), 5), np.round(R * np.cos(angles), 5)


def _weights(first: int, count: int, offset: float) -> tuple[np.ndarray, np.ndarray]:
    """(1 - f, f) with f = pos - floor(pos) for positions first + offset, ..., as scikit-image
    computes them: the sum rounds differently from one power of two to the next, so f is taken per
    position."""
    pos = np.arange(first, first + count) + offset
    f = pos - np.floor(pos)
    return 1 - f, f


def _interpolate(
    low: np.ndarray, high: np.ndarray, weights: tuple[np.ndarray, np.ndarray], out: np.ndarray, tmp: np.ndarray
) -> np.ndarray:
    """(1 - f) * low + f * high in scikit-image's operation order, into `out`."""
    np.multiply(weights[0], low, out=out)
    np.multiply(weights[1], high, out=tmp)
    return np.add(out, tmp, out=out)


class _Circle:
    """The interpolated neighbours g_p of a grey image, a band of coded rows at a time: those at
    least ceil(R) from the border or, with `pad`, every pixel with zeros outside the image
    (scikit-image's border). A band's arrays are buffers reused by the next band asked for. All
    arrays are the thread's scratch, reused from image to image (fresh ones fault in their pages
    on every image: ~1 ms an image for CLBP and LBP together), so one circle at a time per thread."""

    def __init__(self, grey: np.ndarray, P: int, R: float, pad: bool):
        m = self.m = math.ceil(R)
        border = m if pad else 0
        g = self.g = _scratch_array("grey", (grey.shape[0] + 2 * border, grey.shape[1] + 2 * border), np.float64)
        g[border : g.shape[0] - border, border : g.shape[1] - border] = grey
        if pad:  # zeros outside the image
            g[:m], g[-m:], g[:, :m], g[:, -m:] = 0, 0, 0, 0
        origin = 0 if pad else m  # scikit-image's coordinate of the first coded pixel
        self.h, self.w = self.g.shape[0] - 2 * m, self.g.shape[1] - 2 * m
        self.dys, self.dxs = circle_offsets(P, R)
        self.columns_at = {dx: i for i, dx in enumerate(np.unique(self.dxs))}
        # Weights computed once per image (per band they were a tenth of the time, in numpy call overhead)
        self.column_w = {dx: _weights(origin, self.w, dx) for dx in self.columns_at}
        self.row_w = [tuple(v[:, None] for v in _weights(origin, self.h, dy)) for dy in self.dys]
        self.columns = _scratch_array("columns", (len(self.columns_at), BAND + 2 * m, self.w), np.float64)
        self.samples = _scratch_array("samples", (P, BAND, self.w), np.float64)
        self.tmp = _scratch_array("tmp", (BAND + 2 * m, self.w), np.float64)
        self.following = -1  # the band whose first 2m rows of `columns` the last band computed

    def __iter__(self) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
        return (self.band(r0) for r0 in range(0, self.h, BAND))

    def band(self, r0: int) -> tuple[slice, np.ndarray, np.ndarray]:
        """(rows, samples, centre) of the band starting at coded row r0: the neighbours, shape (P,
        band, w'), and the centre plane g_c."""
        m, w, tmp = self.m, self.w, self.tmp
        b = min(BAND, self.h - r0)
        rows = self.g[r0 : r0 + b + 2 * m]
        # Consecutive bands overlap by 2m rows: those rows' column interpolations are copied, not
        # recomputed (the weights depend on the column only, so the values are the same)
        done = 2 * m if r0 == self.following else 0
        self.following = r0 + BAND
        across: dict[float, np.ndarray] = {}
        for dx, i in self.columns_at.items():
            lo, hi = math.floor(dx), math.ceil(dx)
            low, high = rows[:, m + lo : m + lo + w], rows[:, m + hi : m + hi + w]
            if lo == hi:  # on the grid: the pixels themselves, exactly what (1 - 0) * a + 0 * b gives
                across[dx] = low
                continue
            out = self.columns[i, : b + 2 * m]
            out[:done] = self.columns[i, BAND : BAND + done]
            _interpolate(low[done:], high[done:], self.column_w[dx], out[done:], tmp[done : b + 2 * m])
            across[dx] = out
        samples = self.samples[:, :b]
        for p, (dy, dx) in enumerate(zip(self.dys, self.dxs, strict=True)):
            a = across[dx]
            lo, hi = math.floor(dy), math.ceil(dy)
            low, high = a[m + lo : m + lo + b], a[m + hi : m + hi + b]
            if lo == hi:
                samples[p] = low
            else:
                weights = (self.row_w[p][0][r0 : r0 + b], self.row_w[p][1][r0 : r0 + b])
                _interpolate(low, high, weights, samples[p], tmp[:b])
        return slice(r0, r0 + b), samples, rows[m : m + b, m : m + w]


def riu2(bits: np.ndarray) -> np.ndarray:
    """Rotation-invariant uniform codes of a (P, ...) boolean array (bit p of every pixel's
    pattern): the number of ones if the circular pattern has at most two transitions, else P + 1.
    Counts are kept in the smallest integer type holding P + 1 (one byte for P < 255), and whole
    stacks are reduced in one call each: per-plane calls cost more in overhead than in arithmetic.
    The bits are summed as bytes (a view, not a cast: casting in the reduction cost a sixth more)."""
    P = len(bits)
    if P == 0:
        raise ValueError("riu2 needs at least one bit plane")
    kind = np.min_scalar_type(P + 1)
    ones = np.add.reduce(bits.view(np.uint8), axis=0, dtype=kind)
    transitions = np.add.reduce(np.not_equal(bits[1:], bits[:-1]).view(np.uint8), axis=0, dtype=kind)
    transitions += bits[0] != bits[-1]
    return np.where(transitions <= 2, ones, kind.type(P + 1))


def lbp_codes(grey: np.ndarray, P: int, R: float) -> np.ndarray:
    """riu2 sign codes of every pixel, zeros outside the image, as scikit-image's
    `local_binary_pattern(grey, P, R, "uniform")` gives them."""
    codes = np.empty(grey.shape, np.min_scalar_type(P + 1))
    for rows, samples, centre in _Circle(grey, P, R, pad=True):
        codes[rows] = riu2(samples >= centre)  # d_p >= 0 exactly when g_p >= g_c
    return codes


def lbp(rgb: np.ndarray, P: int = 8, R: float = 1) -> np.ndarray:
    """Rotation-invariant uniform LBP histogram [P + 2 = 10 for P=8, R=1], normalised.

    Every pixel is coded, with zeros outside the image, as scikit-image's `local_binary_pattern(
    grey, P, R, "uniform")` does; code P + 1 collects the non-uniform patterns."""
    codes = lbp_codes(to_grey(rgb), P, R)
    return counts(codes, P + 2) / codes.size


def _scratch_array(name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """An array of `shape` reused by this thread's next images: a fresh 30 MB array faults in every
    page again, which was a third of CLBP's time on 700x460 images (measured)."""
    size = math.prod(shape)
    buffer = getattr(_scratch, name, None)
    if buffer is None or buffer.size < size or buffer.dtype != dtype:
        buffer = np.empty(size, dtype)
        setattr(_scratch, name, buffer)
    return buffer[:size].reshape(shape)


# The mean of the |d_p| summed band by band is within this relative distance of numpy's mean of the
# whole (P, h, w) array, with 1000x to spare: both sum non-negative numbers, numpy pairwise (relative
# error below ~50 roundings, 6e-15), the bands pairwise within a band and then in sequence, at worst
# ~800 roundings (1e-13) for a last band that is not contiguous. Measured: at most 4e-16 apart.
MEAN_SLACK = 1e-10


def clbp_codes(grey: np.ndarray, P: int, R: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S (riu2), M (riu2) and C (0/1) code maps over the pixels whose whole circle is inside.

    The M threshold t is numpy's mean of the whole (P, h, w) float64 array of |d_p|, as the
    definition reads, but that array (60 MB at 700x460) is neither kept nor read twice: each band's
    |d_p| are summed while in cache and kept as float32 (30 MB), and M's bits come from those.
    That gives the same bits: rounding to float32 keeps order, so with T = float32(t), f > T means
    |d_p| > t and f < T means |d_p| < t; the rare bands holding an f == T (10 of the 283 mini
    images have one or more) are computed again in float64. Where the band-wise sum cannot place t closely enough
    (MEAN_SLACK), the whole float64 array is built and its mean taken, as before."""
    margin = math.ceil(R)
    h, w = grey.shape[0] - 2 * margin, grey.shape[1] - 2 * margin
    s = np.empty((h, w), np.min_scalar_type(P + 1))
    circle = _Circle(grey, P, R, pad=False)
    stored = _scratch_array("magnitudes", (P, h, w), np.float32)
    total = 0.0
    for rows, samples, centre in circle:
        d = np.subtract(samples, centre, out=samples)  # samples is the circle's scratch: free to reuse
        s[rows] = riu2(d >= 0)  # d_p >= 0 exactly when g_p >= g_c
        np.abs(d, out=d)
        total += float(np.add.reduce(d, axis=None))
        stored[:, rows] = d
    m = _magnitude_code_from_float32(circle, stored, total / stored.size)
    if m is None:  # some |d_p| too close to the mean to call from the band-wise sum
        m = _magnitude_code(circle, P, (h, w))
    c = grey[margin : margin + h, margin : margin + w] >= grey.mean()
    return s, m, c.view(np.uint8)


def _magnitude_code_from_float32(circle: _Circle, stored: np.ndarray, mean: float) -> np.ndarray | None:
    """M from the float32 |d_p| and the band-wise mean, or None where that cannot decide a bit."""
    lo, hi = mean * (1 - MEAN_SLACK), mean * (1 + MEAN_SLACK)  # numpy's mean lies in [lo, hi]
    threshold = np.float32(hi)
    if np.float32(lo) != threshold:
        return None
    m = np.empty(stored.shape[1:], np.min_scalar_type(len(stored) + 1))
    for r0 in range(0, len(m), BAND):
        f = stored[:, r0 : r0 + BAND]
        if (f == threshold).any():  # these |d_p| may lie on either side of the mean: take them exactly
            rows, samples, centre = circle.band(r0)
            exact = np.abs(np.subtract(samples, centre, out=samples), out=samples)
            if ((exact >= lo) & (exact < hi)).any():
                return None
            m[rows] = riu2(exact >= hi)
        else:
            m[r0 : r0 + BAND] = riu2(f > threshold)
    return m


def _magnitude_code(circle: _Circle, P: int, shape: tuple[int, int]) -> np.ndarray:
    """M against numpy's mean of the whole float64 (P, h, w) array of |d_p|, built for it."""
    magnitudes = np.empty((P, *shape))
    for rows, samples, centre in circle:
        band = magnitudes[:, rows]
        np.abs(np.subtract(samples, centre, out=band), out=band)
    threshold = magnitudes.mean()
    m = np.empty(shape, np.min_scalar_type(P + 1))
    for r0 in range(0, shape[0], BAND):
        m[r0 : r0 + BAND] = riu2(magnitudes[:, r0 : r0 + BAND] >= threshold)
    return m


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
