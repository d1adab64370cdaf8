"""Parameter-free threshold adjacency statistics (Hamilton et al. 2007; Coelho et al. 2010), per
RGB channel, numerically identical to `mahotas.features.pftas` applied to each channel.

Why not call mahotas directly: for each of its three binarisations mahotas convolves the image
and its complement separately and counts with `np.histogram`, which sorts every pixel; that is
about 50 ms per 700x460 channel, most of a BreaKHis image's extraction budget. The complement's
neighbour counts follow from the image's (8 - n), so one 3x3 box count per binarisation and one
joint OpenCV histogram of the three (`counts_each`) give the same 54 numbers. The mean and standard
deviation of the pixels above Otsu's threshold come from the channel's 256-bin histogram instead
of a copy of those pixels (see `_above`). About 20 times faster than mahotas in all (3.3 ms per
700x460 image, 6.7 before the joint histogram and `_above`). Otsu's threshold still comes from
mahotas, and the tests check equality with `mahotas.features.pftas` on real and random images.
"""

from __future__ import annotations

import cv2
import mahotas
import numpy as np

from bhbench_baselines.handcrafted.counts import counts, counts_each
from bhbench_baselines.handcrafted.grey import check_rgb

# How far the histogram's standard deviation may be from numpy's (both are within ~1e-12 of the
# true value for 8-bit pixels): a binarisation threshold this close to an integer grey level could
# fall on its other side, so there numpy's own value is taken.
SPREAD_SLACK = 1e-9


def _adjacency(binaries: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """mahotas' TAS pair for each binarisation: the normalised histogram of the number of set
    neighbours (0..8) over unset pixels, and the same for the complement (borders mirrored)."""
    codes = []
    for binary in binaries:
        b = binary.view(np.uint8)
        count = cv2.boxFilter(b, -1, (3, 3), normalize=False, borderType=cv2.BORDER_REFLECT)  # incl. centre
        count += 10 * b  # unset: 0..8; set: 11..19
        codes.append(count)
    pairs = []
    for joint in counts_each(codes, 20):
        unset = joint[0:9]
        complement = joint[19:10:-1]  # a set pixel with n set neighbours has 8 - n unset ones
        pairs.append((_normalised(unset), _normalised(complement)))
    return pairs


def _above(channel: np.ndarray, threshold: int) -> tuple[float, float]:
    """(mean, spread) of the pixels above `threshold` as mahotas takes them: their sum over their
    number + 1e-8, and numpy's standard deviation of them (0 when there are none).

    From the channel's histogram: the sum is the same integer; the standard deviation is the same
    up to rounding (~1e-13), which matters only through the binarisations `channel > mean -
    spread` and `channel < mean + spread`. Those depend on which integers lie between the
    thresholds, so the histogram's value is used unless a threshold is within SPREAD_SLACK of an
    integer; then numpy's std of the pixels is taken, as mahotas does."""
    values = np.arange(256)
    hist = counts(channel, 256)
    hist[: threshold + 1] = 0
    n = int(hist.sum())
    total = int(hist @ values)
    mean = total / (n + 1e-8)
    if n == 0:
        return mean, 0.0
    spread = float(np.sqrt(hist @ (values - total / n) ** 2 / n))
    edges = np.array([mean - spread, mean + spread])
    if (np.abs(edges - np.round(edges)) < SPREAD_SLACK).any():
        spread = float(channel[channel > threshold].std())
    return mean, spread


def _normalised(hist: np.ndarray) -> np.ndarray:
    total = hist.sum()
    return hist / total if total else hist.astype(np.float64)


def pftas_channel(channel: np.ndarray) -> np.ndarray:
    """54 statistics of one uint8 channel: 27 for three Otsu-derived binarisations, 27 for their
    complements, in mahotas' order."""
    mean, spread = _above(channel, mahotas.thresholding.otsu(channel))
    binaries = (
        (channel > mean - spread) & (channel < mean + spread),
        channel > mean - spread,
        channel > mean,
    )
    pairs = _adjacency([np.ascontiguousarray(b) for b in binaries])
    return np.concatenate([p[0] for p in pairs] + [p[1] for p in pairs])


def pftas(rgb: np.ndarray) -> np.ndarray:
    """PFTAS [162]: `pftas_channel` of the red, green and blue channels, concatenated."""
    check_rgb(rgb)
    return np.concatenate([pftas_channel(channel) for channel in cv2.split(rgb)])
