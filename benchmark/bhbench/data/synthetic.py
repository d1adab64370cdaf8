"""Synthetic BreaKHis-like data: the dataset bhbench uses when no real BreaKHis is configured.

The tree has BreaKHis's layout and file names, 82 patients in its subtype mix and four
magnifications. Images are H&E-like renderings: haematoxylin (nuclei) and eosin (stroma,
cytoplasm) optical densities composed by Beer-Lambert with stain vectors that vary by patient.

Class cues live where a pathologist looks: nuclear size, shape variation, chromatin, crowding
and architecture (benign glands are orderly rings with a myoepithelial layer; carcinoma is
crowded and disordered). They are driven by a per-patient latent "atypia" whose benign and
malignant distributions overlap, so some benign patients look atypical and some carcinomas
bland; stain, focus, noise and field composition vary on top. The overlap is calibrated so a
weak descriptor (LBP P=8 R=1 + SVM) lands well below perfect and richer ones do better:
`perf/synthetic_difficulty.py` measures it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from joblib import Parallel, delayed
from numpy.typing import ArrayLike

from bhbench.config import cache_dir
from bhbench.data.names import BENIGN_SUBTYPES, ImageName
from bhbench.errors import UserError
from bhbench.protocol import MAGNIFICATIONS
from bhbench.util import cpu_count

SYNTHETIC_MARKER = "SYNTHETIC.txt"  # beside histology_slides/: names the tree synthetic wherever it is

# Bump whenever the images change for the same config: it is part of the cache folder name.
# 2: pixel values computed with IEEE basic operations only (see "Same bytes everywhere" below).
GENERATOR_VERSION = 2

SUBTYPE_PATIENTS: dict[str, int] = {"A": 4, "F": 10, "PT": 3, "TA": 7, "DC": 38, "LC": 5, "MC": 9, "PC": 6}
# Real BreaKHis patient numbers are below 30000; these can never be mistaken for them.
_FIRST_PATIENT_NUMBER = 90001

# Lengths below are in units: one unit is a pixel at 40X in an image of the reference width.
# A wider image is the same field at a higher resolution.
_REFERENCE_WIDTH = 350
# Pixels per unit at each magnification: BreaKHis's 10x zoom range, compressed so that nuclei at
# 40X stay a few pixels wide.
_MAG_SCALE = dict(zip(MAGNIFICATIONS, (1.0, 1.7, 2.8, 4.6), strict=True))
_NUCLEUS_RADIUS = 1.7  # epithelial nucleus radius in units

# Mean latent atypia of each class; patients scatter around it with unit spread, so the classes
# overlap. This is the main difficulty knob (see the module docstring).
_CLASS_ATYPIA = {"B": -1.2, "M": 1.2}


@dataclass(frozen=True)
class SynthConfig:
    seed: int = 0
    width: int = 350
    height: int = 230
    images_per_patient: int = 4  # per magnification, on average
    # True: BreaKHis_v1's own images per subtype and magnification (7,909 in all), split over each
    # subtype's patients; images_per_patient is then unused.
    breakhis_counts: bool = False

    def __post_init__(self) -> None:
        if not (64 <= self.width <= 4096 and 48 <= self.height <= 4096):
            raise UserError(f"synthetic image size {self.width}x{self.height} is out of range (64-4096 x 48-4096)")
        if not 1 <= self.images_per_patient <= 200:
            raise UserError(f"images_per_patient={self.images_per_patient} is out of range (1-200)")
        if self.seed < 0:
            raise UserError(f"seed={self.seed} must be a non-negative integer")

    def slug(self) -> str:
        counts = "breakhis" if self.breakhis_counts else f"n{self.images_per_patient}"
        return f"s{self.seed}-{self.width}x{self.height}-{counts}-v{GENERATOR_VERSION}"


TINY = SynthConfig(width=128, height=84, images_per_patient=1)
# BreaKHis-sized: its image size (700x460) and image count per subtype and magnification.
BREAKHIS_SIZED = SynthConfig(width=700, height=460, breakhis_counts=True)


@dataclass(frozen=True)
class _Subtype:
    """Architecture and cytology of one subtype, before per-patient variation."""

    atypia: float  # offset added to the class mean atypia
    glands: float  # gland rings per 10,000 unit^2
    gland_radius: float  # ring radius in nucleus radii
    gland_aspect: float  # ring elongation (fibroadenoma's slit-like ducts are long)
    nests: float  # area fraction of solid epithelial nests
    files: float  # single-file cords (or papillary fronds) per 10,000 unit^2
    spindles: float  # stromal spindle nuclei per 1,000 unit^2
    spaces: float  # area fraction of empty lumen/fat
    mucin: float  # area fraction of pale mucin pools
    nucleus_size: float  # multiplier on the epithelial nucleus radius
    fronds: bool = False  # cords lined on both sides by columnar cells (papillary)


_SUBTYPES: dict[str, _Subtype] = {
    # atypia, glands, gland_radius, gland_aspect, nests, files, spindles, spaces, mucin, nucleus_size
    "A": _Subtype(-0.2, 9.0, 5.0, 1.3, 0.05, 0.0, 2.0, 0.10, 0.0, 1.0),
    "F": _Subtype(-0.4, 2.5, 7.0, 3.5, 0.0, 0.0, 4.0, 0.06, 0.0, 0.95),
    "PT": _Subtype(0.1, 1.5, 8.0, 3.0, 0.0, 0.0, 11.0, 0.12, 0.0, 1.0),
    "TA": _Subtype(-0.3, 14.0, 4.0, 1.1, 0.0, 0.0, 1.5, 0.05, 0.0, 0.95),
    "DC": _Subtype(0.3, 1.5, 6.0, 1.4, 0.40, 0.0, 2.5, 0.05, 0.0, 1.15),
    "LC": _Subtype(-0.5, 0.0, 5.0, 1.0, 0.05, 7.0, 2.0, 0.05, 0.0, 0.9),
    "MC": _Subtype(0.0, 0.0, 5.0, 1.0, 0.22, 0.0, 1.0, 0.05, 0.45, 1.05),
    "PC": _Subtype(0.0, 1.0, 6.0, 1.5, 0.10, 3.0, 1.5, 0.30, 0.0, 1.05, fronds=True),
}

# Ruifrok & Johnston's optical-density vectors (R, G, B) for haematoxylin and eosin.
_HAEMATOXYLIN = np.array([0.65, 0.70, 0.29])
_EOSIN = np.array([0.07, 0.99, 0.11])


@dataclass(frozen=True)
class _Patient:
    number: int  # position in the cohort; seeds this patient's images
    name: str  # "14-90017"
    subtype: str
    atypia: float
    haematoxylin: tuple[float, float, float]
    eosin: tuple[float, float, float]
    stroma_density: float
    fibre_period: float  # collagen wave period in units
    blur: float  # focus, in pixels at the reference width
    noise: float  # sensor noise, grey levels
    vignette: float
    counts: tuple[int, ...]  # images per magnification

    @property
    def tumor_class(self) -> str:
        return "B" if self.subtype in BENIGN_SUBTYPES else "M"

    def image_names(self) -> list[ImageName]:
        return [
            ImageName(self.tumor_class, self.subtype, self.name, mag, seq)
            for mag, count in zip(MAGNIFICATIONS, self.counts, strict=True)
            for seq in range(1, count + 1)
        ]


# Same bytes everywhere. Every value that feeds a pixel is computed with +, -, *, /, sqrt and
# floor on float64 numpy arrays, one ufunc at a time and in a fixed order: IEEE 754 rounds each of
# them exactly, so they give the same bits on every CPU, SIMD width and thread count (separate
# ufuncs are never fused into FMAs). Library transcendentals are not like that (numpy picks SVML
# or its own SIMD exp/sin by CPU; libm has FMA variants; OpenCV's float resize and blur pick SIMD
# kernels at run time, and BLAS picks kernels too), and a one-ulp difference flips a pixel that sits
# on a rounding edge: one image in 1,315 came out different on another machine with generator 1.
# So exp, sin and cos below are polynomials on basic operations, blurring and upsampling are
# written out as fixed-order weighted sums, and OpenCV only rasterises shapes (integer arithmetic)
# and writes the PNG. What remains tied to versions rather than machines: numpy's random streams and
# the order of its pairwise sums (mean, std), OpenCV's rasteriser and PNG encoder; records carry
# both versions, and `DEFAULT_DATASET_ID` below says whether a machine made the committed set.
_LN2 = 0.6931471805599453
_PI = 3.141592653589793


def _exp(x: ArrayLike) -> np.ndarray:
    """e**x to about 1e-15 relative, from basic operations only (see above)."""
    x = np.asarray(x, dtype=np.float64)
    k = np.clip(np.floor(x * (1.0 / _LN2) + 0.5), -1000, 1000)
    r = x - k * _LN2  # |r| <= ln2 / 2: the Taylor series to r**14 is exact to ~1e-17
    p = np.ones_like(r)
    for n in range(14, 0, -1):
        p = 1.0 + r * p / n
    return np.ldexp(p, k.astype(np.int64))


def _sin(x: ArrayLike) -> np.ndarray:
    """sin(x) to about 1e-15 absolute for |x| below ~1e6, from basic operations only."""
    x = np.asarray(x, dtype=np.float64)
    r = x - np.floor(x * (0.5 / _PI) + 0.5) * (2.0 * _PI)  # in [-pi, pi]
    r = np.where(r > _PI / 2, _PI - r, np.where(r < -_PI / 2, -_PI - r, r))  # in [-pi/2, pi/2]
    r2 = r * r
    p = np.ones_like(r)
    for n in range(20, 0, -2):
        p = 1.0 - r2 * p / (n * (n + 1))
    return r * p


def _cos(x: ArrayLike) -> np.ndarray:
    return _sin(np.asarray(x, dtype=np.float64) + _PI / 2)


def _lognormal(rng: np.random.Generator, sigma: float, size: int | None = None) -> np.ndarray:
    return _exp(rng.normal(0.0, sigma, size))


def _weighted_sum(parts: list[np.ndarray], weights: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """sum_k weights[k] * parts[k], accumulated in list order (a fixed order: same bits everywhere)."""
    total = weights[0] * parts[0]
    for w, part in zip(weights[1:], parts[1:], strict=True):
        total = total + w * part
    return total


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur over the first two axes, edges mirrored as OpenCV's default (reflect-101)."""
    radius = max(1, int(4.0 * sigma + 0.5))
    taps = _exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = taps / math.fsum(taps.tolist())  # fsum: exactly rounded, so order cannot matter
    for axis in (0, 1):
        n = img.shape[axis]
        pad = [(0, 0)] * img.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(img, pad, mode="reflect")
        img = _weighted_sum([np.take(padded, np.arange(k, k + n), axis=axis) for k in range(2 * radius + 1)], taps)
    return img


def _cubic_taps(n_out: int, n_in: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Source indices (n_out, 4) and Catmull-Rom weights for resizing an axis of n_in to n_out."""
    pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5  # pixel centres, as OpenCV maps them
    base = np.floor(pos)
    t = pos - base
    index = np.clip(base.astype(np.int64)[:, None] + np.arange(-1, 3), 0, n_in - 1)
    weights = [
        ((-0.5 * t + 1.0) * t - 0.5) * t,
        (1.5 * t - 2.5) * t * t + 1.0,
        ((-1.5 * t + 2.0) * t + 0.5) * t,
        (0.5 * t - 0.5) * t * t,
    ]
    return index, weights


def _upsample(small: np.ndarray, h: int, w: int) -> np.ndarray:
    rows, row_w = _cubic_taps(h, small.shape[0])
    tall = _weighted_sum([small[rows[:, k]] for k in range(4)], [wk[:, None] for wk in row_w])
    cols, col_w = _cubic_taps(w, small.shape[1])
    return _weighted_sum([tall[:, cols[:, k]] for k in range(4)], col_w)


def _stain(rng: np.random.Generator, base: np.ndarray, spread: float) -> tuple[float, float, float]:
    vec = np.abs(base + rng.normal(0.0, spread, 3))
    vec = vec / np.sqrt(vec[0] * vec[0] + vec[1] * vec[1] + vec[2] * vec[2]) * _lognormal(rng, 0.18)
    return (float(vec[0]), float(vec[1]), float(vec[2]))


@functools.lru_cache(maxsize=8)
def _cohort(config: SynthConfig) -> tuple[_Patient, ...]:
    """The 82 patients, their latent traits and image counts; deterministic from the seed."""
    subtypes = [sub for sub, n in SUBTYPE_PATIENTS.items() for _ in range(n)]
    # Ids are shuffled so their order says nothing about the subtype.
    ids = np.random.default_rng([config.seed, 0]).permutation(len(subtypes)) + _FIRST_PATIENT_NUMBER
    spread = config.images_per_patient // 4  # real BreaKHis patients differ in image count
    patients = []
    for number, (subtype, pid) in enumerate(zip(subtypes, ids, strict=True)):
        rng = np.random.default_rng([config.seed, 1, number])
        cls = "B" if subtype in BENIGN_SUBTYPES else "M"
        counts = config.images_per_patient + rng.integers(-spread, spread + 1, len(MAGNIFICATIONS))
        patients.append(
            _Patient(
                number=number,
                name=f"14-{pid}",
                subtype=subtype,
                atypia=_CLASS_ATYPIA[cls] + _SUBTYPES[subtype].atypia + rng.normal(),
                haematoxylin=_stain(rng, _HAEMATOXYLIN, 0.10),
                eosin=_stain(rng, _EOSIN, 0.12),
                stroma_density=float(0.45 * _lognormal(rng, 0.25)),
                fibre_period=float(rng.uniform(3.0, 7.0)),
                blur=float(rng.uniform(0.55, 0.85)),
                noise=float(rng.uniform(1.0, 2.0)),
                vignette=float(rng.uniform(0.0, 0.35)),
                counts=tuple(int(c) for c in np.maximum(counts, 1)),
            )
        )
    if config.breakhis_counts:
        patients = _breakhis_counts(patients, config.seed)
    return tuple(patients)


def _breakhis_counts(patients: list[_Patient], seed: int) -> list[_Patient]:
    """The patients with BreaKHis_v1's images per subtype and magnification, each subtype's total
    split over its patients in random (lognormal) shares, at least one image each."""
    from bhbench.data.breakhis import IMAGES  # the published counts; imports pandas, so only here

    out = list(patients)
    for k, (subtype, totals) in enumerate(IMAGES.items()):
        mine = [i for i, p in enumerate(patients) if p.subtype == subtype]
        rng = np.random.default_rng([seed, 3, k])
        per_mag = []
        for total in totals:
            share = _lognormal(rng, 0.5, len(mine))
            exact = 1 + (total - len(mine)) * share / share.sum()
            counts = np.floor(exact).astype(int)
            counts[np.argsort(counts - exact)[: total - counts.sum()]] += 1  # largest remainders
            per_mag.append(counts)
        for j, i in enumerate(mine):
            out[i] = dataclasses.replace(patients[i], counts=tuple(int(c[j]) for c in per_mag))
    return out


def image_names(config: SynthConfig) -> list[ImageName]:
    """Every image `generate` writes for this config, in writing order."""
    return [name for patient in _cohort(config) for name in patient.image_names()]


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean, unit-variance noise with features about `scale` pixels wide (upsampled, so cheap)."""
    h, w = shape
    small = rng.standard_normal((max(2, int(h / scale) + 2), max(2, int(w / scale) + 2)))
    big = _upsample(small, h, w)
    sample = big[::3, ::3]  # statistics of a subsample are as good and much cheaper
    return (big - sample.mean()) / (sample.std() + 1e-6)


def _area_mask(rng: np.random.Generator, shape: tuple[int, int], scale: float, fraction: float) -> np.ndarray:
    """Blobby regions `scale` pixels wide covering about `fraction` of the image."""
    if fraction <= 0:
        return np.zeros(shape, bool)
    field = _smooth_noise(rng, shape, scale) + 0.3 * _smooth_noise(rng, shape, scale / 4)  # ragged edges
    return field > np.quantile(field[::3, ::3], 1.0 - min(fraction, 0.9))


class _Renderer:
    """Draws one field of view of one patient at one magnification."""

    def __init__(self, patient: _Patient, mag: int, config: SynthConfig, rng: np.random.Generator):
        self.p, self.rng = patient, rng
        self.shape = (config.height, config.width)
        self.res = config.width / _REFERENCE_WIDTH
        self.unit = self.res * _MAG_SCALE[mag]  # pixels per unit
        self.sub = _SUBTYPES[patient.subtype]
        # Fields of one patient differ a little in how atypical they look.
        a = patient.atypia + rng.normal(0.0, 0.35)
        self.radius = _NUCLEUS_RADIUS * self.unit * self.sub.nucleus_size * float(_exp(0.11 * a))
        self.pleomorphism = float(np.clip(0.12 + 0.07 * a, 0.04, 0.45))
        self.disorder = float(np.clip(0.2 + 0.15 * a, 0.03, 0.9))
        self.crowding = float(_exp(-0.08 * a))  # spacing multiplier: < 1 is crowded
        self.darkness = float(np.clip(0.85 + 0.08 * a, 0.5, 1.3))
        self.chromatin = float(np.clip(0.25 + 0.12 * a, 0.05, 0.7))
        self.vesicular = float(1.0 / (1.0 + _exp(-(a - 1.2) * 2.0)))
        self.nuclei: list[np.ndarray] = []  # rows of (x, y, semi-axis a, semi-axis b, angle deg, darkness)
        h, w = self.shape
        self.area_units = h * w / self.unit**2
        self.yy, self.xx = np.mgrid[0:h, 0:w].astype(np.float64)

    def _count(self, per_area: float, area: float) -> int:
        return int(self.rng.poisson(per_area * self.area_units / area))

    def _add_nuclei(
        self, x: ArrayLike, y: ArrayLike, a: ArrayLike, b: ArrayLike, angle: ArrayLike, dark: ArrayLike
    ) -> None:
        self.nuclei.append(np.column_stack(np.broadcast_arrays(x, y, a, b, angle, dark)).astype(float))

    def _epithelial(self, x: np.ndarray, y: np.ndarray, angle: np.ndarray | float, aspect: float = 1.15) -> None:
        n = np.size(x)
        r = self.radius * _lognormal(self.rng, self.pleomorphism, n)
        elong = aspect + np.abs(self.rng.normal(0.0, 0.1 + self.pleomorphism, n))
        dark = self.darkness * _lognormal(self.rng, 0.08 + 0.5 * self.pleomorphism, n)
        self._add_nuclei(x, y, r * np.sqrt(elong), r / np.sqrt(elong), angle, dark)

    def stroma(self) -> tuple[np.ndarray, np.ndarray]:
        """Eosin density of wavy collagen, and the local fibre direction (radians)."""
        u = self.unit
        direction = self.rng.uniform(0, np.pi) + 0.6 * _smooth_noise(self.rng, self.shape, 40 * u)
        proj = self.xx * _cos(direction) + self.yy * _sin(direction)
        coarse = _sin(2 * np.pi * proj / (self.p.fibre_period * u) + 2.5 * _smooth_noise(self.rng, self.shape, 12 * u))
        fine = _sin(
            2 * np.pi * proj / (0.37 * self.p.fibre_period * u) + 3.0 * _smooth_noise(self.rng, self.shape, 5 * u)
        )
        fibres = (0.5 + 0.3 * coarse + 0.2 * fine) ** 2
        packing = np.clip(0.55 + 0.35 * _smooth_noise(self.rng, self.shape, 25 * u), 0.15, 1.0)
        grain = _smooth_noise(self.rng, self.shape, 1.2 * self.res)
        eosin = self.p.stroma_density * (0.55 + 0.9 * packing * fibres + 0.12 * grain)
        return eosin, direction

    def glands(self, lumen: np.ndarray, cytoplasm: np.ndarray) -> None:
        """Rings of epithelium around lumens; orderly and with a myoepithelial rim when bland."""
        sub, rng = self.sub, self.rng
        for _ in range(self._count(sub.glands, 10_000)):
            cx, cy = rng.uniform(0, self.shape[1]), rng.uniform(0, self.shape[0])
            ring = sub.gland_radius * self.radius * _lognormal(rng, 0.25)
            aspect = sub.gland_aspect * _lognormal(rng, 0.15)
            ra, rb = ring * np.sqrt(aspect), ring / np.sqrt(aspect)
            tilt = rng.uniform(0, 180)
            centre, lumen_axes = (int(cx * 16), int(cy * 16)), (int(ra * 16), int(rb * 16))
            cv2.ellipse(lumen, centre, lumen_axes, tilt, 0, 360, 1.0, -1, cv2.LINE_8, 4)
            band = max(1, int(2.6 * self.radius))
            cv2.ellipse(cytoplasm, centre, lumen_axes, tilt, 0, 360, 1.0, band, cv2.LINE_8, 4)
            perimeter = np.pi * (ra + rb)
            n = max(4, int(perimeter / (2.3 * self.radius * self.crowding)))
            t = np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.normal(0, 0.15 * self.disorder, n)
            off = 1.0 + rng.normal(0, 0.5 * self.disorder, n) * self.radius / ring
            rot = np.deg2rad(tilt)
            ex, ey = ra * _cos(t) * off, rb * _sin(t) * off
            x = cx + ex * _cos(rot) - ey * _sin(rot)
            y = cy + ex * _sin(rot) + ey * _cos(rot)
            radial = np.rad2deg(np.arctan2(y - cy, x - cx))
            self._epithelial(x, y, radial, aspect=1.3)  # columnar cells point at the lumen
            if rng.random() < 1.0 / (1.0 + _exp(2.0 * self.p.atypia)):
                # Myoepithelial cells: a thin outer layer of flat nuclei, lost in carcinoma.
                m = max(3, n // 2)
                t = rng.uniform(0, 2 * np.pi, m)
                grow = 1.0 + 2.6 * self.radius / ring
                ex, ey = ra * grow * _cos(t), rb * grow * _sin(t)
                x = cx + ex * _cos(rot) - ey * _sin(rot)
                y = cy + ex * _sin(rot) + ey * _cos(rot)
                tangent = np.rad2deg(np.arctan2(y - cy, x - cx)) + 90
                r = 0.8 * self.radius
                self._add_nuclei(x, y, 1.6 * r, 0.5 * r, tangent, 0.95)

    def nests(self, cytoplasm: np.ndarray, mask: np.ndarray) -> None:
        """Solid sheets of epithelium on a jittered lattice; jitter grows with atypia."""
        if not mask.any():
            return
        spacing = 2.4 * self.radius * self.crowding
        h, w = self.shape
        gy, gx = np.mgrid[0 : h + spacing : spacing, 0 : w + spacing : spacing * 0.866]
        gy = gy + (np.arange(gx.shape[1]) % 2) * spacing / 2  # hexagonal packing
        x = gx.ravel() + self.rng.normal(0, 0.35 * self.disorder * spacing, gx.size)
        y = gy.ravel() + self.rng.normal(0, 0.35 * self.disorder * spacing, gy.size)
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        x, y = x[inside], y[inside]
        keep = mask[y.astype(int), x.astype(int)]
        keep &= self.rng.random(keep.size) < 0.92  # a few gaps
        cytoplasm[mask] = 1.0
        self._epithelial(x[keep], y[keep], self.rng.uniform(0, 180, int(keep.sum())))

    def cords(self, direction: np.ndarray, cytoplasm: np.ndarray) -> None:
        """Single files of cells (lobular) or papillary fronds lined on both sides."""
        sub, rng = self.sub, self.rng
        h, w = self.shape
        for _ in range(self._count(sub.files, 10_000)):
            x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
            theta = float(direction[int(y0), int(x0)]) + rng.normal(0, 0.3)
            length = rng.uniform(20, 45) * self.unit
            n = max(3, int(length / (2.4 * self.radius * self.crowding)))
            s = np.linspace(-length / 2, length / 2, n)
            bend = 0.15 * rng.normal() * (s / length) ** 2 * length
            x = x0 + s * _cos(theta) - bend * _sin(theta)
            y = y0 + s * _sin(theta) + bend * _cos(theta)
            if not sub.fronds:
                jitter = rng.normal(0, 0.4 * self.disorder * self.radius, (2, n))
                self._epithelial(x + jitter[0], y + jitter[1], np.rad2deg(theta), aspect=1.1)
                continue
            core = 3.0 * self.radius
            pts = np.stack([x, y], 1).astype(np.int32)
            cv2.polylines(cytoplasm, [pts], False, 1.0, int(2 * core + 2.6 * self.radius))
            for side in (-1, 1):
                nx, ny = -_sin(theta) * core * side, _cos(theta) * core * side
                self._epithelial(x + nx, y + ny, np.rad2deg(theta) + 90, aspect=1.5)

    def background_cells(self, direction: np.ndarray, tissue: np.ndarray) -> None:
        """Spindle fibroblasts along the collagen, and scattered small dark lymphocytes."""
        rng, h, w = self.rng, *self.shape
        n = self._count(self.sub.spindles, 1_000)
        x, y = rng.uniform(0, w, n), rng.uniform(0, h, n)
        keep = tissue[y.astype(int), x.astype(int)]
        x, y = x[keep], y[keep]
        angle = np.rad2deg(direction[y.astype(int), x.astype(int)])
        r = _NUCLEUS_RADIUS * self.unit * _lognormal(rng, 0.15, x.size)
        self._add_nuclei(x, y, 1.9 * r, 0.45 * r, angle, 0.9)
        n = self._count(0.6, 1_000)
        r = 0.75 * _NUCLEUS_RADIUS * self.unit
        self._add_nuclei(rng.uniform(0, w, n), rng.uniform(0, h, n), r, r * 0.9, rng.uniform(0, 180, n), 1.2)

    def draw_nuclei(self) -> np.ndarray:
        """Haematoxylin density of all nuclei, with chromatin texture and nucleoli."""
        canvas = np.zeros(self.shape, np.uint8)
        table = np.concatenate(self.nuclei) if self.nuclei else np.zeros((0, 6))
        # cv2 draws with sub-pixel precision in fixed point: 4 fractional bits.
        centres = np.round(table[:, :2] * 16).astype(int)
        axes = np.maximum(1, np.round(table[:, 2:4] * 16).astype(int))
        tones = np.minimum(255, 180 * table[:, 5]).astype(int)
        open_chromatin = (self.rng.random(len(table)) < self.vesicular) & (table[:, 3] > 2.0)
        for (cx, cy), (ax, bx), angle, tone, vesicular in zip(
            centres, axes, table[:, 4], tones, open_chromatin, strict=True
        ):
            cv2.ellipse(canvas, (cx, cy), (ax, bx), angle, 0, 360, int(tone), -1, cv2.LINE_AA, 4)
            if vesicular:
                # A paler centre inside a dark rim, with a prominent nucleolus.
                inner = (int(ax * 0.6), int(bx * 0.6))
                cv2.ellipse(canvas, (cx, cy), inner, angle, 0, 360, int(tone) // 2, -1, cv2.LINE_AA, 4)
                cv2.circle(canvas, (cx, cy), max(16, int(bx / 4)), 255, -1, cv2.LINE_AA, 4)
        density = canvas / 180.0
        grain = _smooth_noise(self.rng, self.shape, max(1.0, 0.5 * self.radius))
        return density * np.clip(1.0 + self.chromatin * grain, 0.2, None) * 1.5

    def render(self) -> np.ndarray:
        sub, u = self.sub, self.unit
        eosin, direction = self.stroma()
        lumen = np.zeros(self.shape, np.float32)
        cytoplasm = np.zeros(self.shape, np.float32)
        spaces = _area_mask(self.rng, self.shape, 10 * u, sub.spaces * _lognormal(self.rng, 0.4))
        mucin = _area_mask(self.rng, self.shape, 25 * u, sub.mucin * _lognormal(self.rng, 0.2))
        nests = _area_mask(self.rng, self.shape, 14 * u, sub.nests * _lognormal(self.rng, 0.3))
        self.glands(lumen, cytoplasm)
        self.cords(direction, cytoplasm)
        self.nests(cytoplasm, nests)
        tissue = ~(spaces | mucin) & (lumen < 0.5) & (cytoplasm < 0.5)
        self.background_cells(direction, tissue)
        haem = self.draw_nuclei()

        empty = _blur(((spaces | mucin | (lumen > 0.5)) & (cytoplasm < 0.5)).astype(np.float64), 0.5 * u)
        eosin = eosin * (1.0 - empty) + 0.04 * empty
        eosin += 0.35 * _blur(cytoplasm.astype(np.float64), 0.8 * self.radius)
        haem += np.where(mucin & ~nests, 0.10 + 0.03 * _smooth_noise(self.rng, self.shape, 3 * u), 0.0)

        od = haem[..., None] * np.array(self.p.haematoxylin)
        od += eosin[..., None] * np.array(self.p.eosin)
        light = 1.0 - self.p.vignette * ((self.xx / self.shape[1] - 0.5) ** 2 + (self.yy / self.shape[0] - 0.5) ** 2)
        rgb = 250.0 * _exp(-od) * light[..., None]
        rgb = _blur(rgb, self.p.blur * self.res * float(_lognormal(self.rng, 0.15)))
        rgb += self.p.noise * self.rng.standard_normal(rgb.shape)
        return np.floor(np.clip(rgb, 0, 255)).astype(np.uint8)


def _render(patient: _Patient, mag: int, seq: int, config: SynthConfig) -> np.ndarray:
    # The random stream depends only on (seed, patient, magnification, sequence): any worker
    # order gives the same bytes.
    rng = np.random.default_rng([config.seed, 2, patient.number, mag, seq])
    return _Renderer(patient, mag, config, rng).render()


def render(config: SynthConfig, name: ImageName) -> np.ndarray:
    """The RGB image `generate` writes under `name` (one of `image_names(config)`)."""
    patient = next((p for p in _cohort(config) if p.name == name.patient and p.subtype == name.subtype), None)
    if patient is None or name not in patient.image_names():
        raise UserError(f"{name.filename()} is not an image of the synthetic dataset {config.slug()}")
    return _render(patient, name.magnification, name.seq, config)


def _write_patient(patient: _Patient, config: SynthConfig, slides: Path) -> int:
    cv2.setNumThreads(1)  # one process per core already
    names = patient.image_names()
    for name in names:
        path = slides / name.relpath()
        path.parent.mkdir(parents=True, exist_ok=True)
        rgb = _render(patient, name.magnification, name.seq, config)
        if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {path}")
    return len(names)


def generate(root: Path, config: SynthConfig, progress: Callable[[int], None] | None = None) -> Path:
    """Write the synthetic tree under `root` and return its `BreaKHis_v1` folder.

    Patients are rendered in parallel, one process per core. `progress(n)` is called once per
    patient with the number of images just written; the calls add up to `len(image_names(config))`.
    """
    top = Path(root) / "BreaKHis_v1"
    if top.is_dir() and any(top.iterdir()):
        raise UserError(f"{top} already exists and is not empty; generate into an empty folder")
    slides = top / "histology_slides"
    slides.mkdir(parents=True, exist_ok=True)
    # joblib's loky workers are fresh interpreters (a forked child of a parent whose OpenCV threads
    # hold locks can hang) that, unlike multiprocessing's spawn, do not re-run the caller's script.
    workers = min(2, cpu_count())
    jobs = (delayed(_write_patient)(patient, config, slides) for patient in _cohort(config))
    for written in Parallel(n_jobs=workers, return_as="generator_unordered")(jobs):
        if progress is not None:
            progress(written)
    # Marks the tree as generated, so it is named "synthetic" wherever it is indexed from.
    (top / SYNTHETIC_MARKER).write_text(f"bhbench synthetic BreaKHis-like data, not real tissue: {config}\n")
    return top


def default_root(config: SynthConfig = SynthConfig(), progress: Callable[[int], None] | None = None) -> Path:
    """The cached tree for `config` (generated on first use), as its `BreaKHis_v1` folder.

    Generation goes to a temporary folder that is renamed into place when complete, so an
    interrupted run leaves nothing that looks finished and is simply redone.
    """
    home = cache_dir("synthetic", config.slug())
    top = home / "BreaKHis_v1"
    if top.is_dir():
        return top
    scratch = Path(tempfile.mkdtemp(prefix=".partial-", dir=home))
    try:
        built = generate(scratch, config, progress)
        try:
            built.rename(top)
        except OSError:
            if not top.is_dir():  # not a concurrent run that finished first
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return top


# A private cohort (`--synthetic-seed`): the same distribution drawn from another seed, so no method can
# know its images in advance. A drawn seed has 128 bits: past guessing, and far from any public seed.
PRIVATE_SEED_BITS = 128


def draw_private_seed() -> int:
    return secrets.randbits(PRIVATE_SEED_BITS)


def seed_commitment(seed: int) -> str:
    """What is printed before a private run (commit) and checked against the seed revealed after it."""
    return "sha256:" + hashlib.sha256(f"bhbench-private-cohort:{seed}".encode()).hexdigest()


def config_of(top: Path) -> SynthConfig | None:
    """The config a generated tree was made with (its marker names it), or None when it does not say."""
    try:
        text = (Path(top) / SYNTHETIC_MARKER).read_text()
    except OSError:
        return None
    found = dict(re.findall(r"(\w+)=(\w+)", text.partition("SynthConfig(")[2]))
    try:
        return SynthConfig(
            seed=int(found["seed"]),
            width=int(found["width"]),
            height=int(found["height"]),
            images_per_patient=int(found["images_per_patient"]),
            breakhis_counts=found["breakhis_counts"] == "True",
        )
    except (KeyError, ValueError, UserError):
        return None


def generate_private(config: SynthConfig, progress: Callable[[int], None] | None = None) -> Path:
    """A private cohort's tree in a fresh folder only the harness's user can read, never in the cache:
    nothing a method's sandbox shows (its `/tmp` is its own) and no later run's cache lookup finds it.
    The caller removes the folder when done."""
    scratch = Path(tempfile.mkdtemp(prefix="bhbench-private-"))  # mode 0700
    top = generate(scratch, config, progress)
    (top / SYNTHETIC_MARKER).write_text("bhbench synthetic BreaKHis-like data, not real tissue: a private cohort\n")
    return top


# What the default config generates, committed so any machine can tell whether it makes the same
# dataset: the id it indexes to (file bytes, so it also pins the PNG encoder) and a digest of the
# raw pixels of `coverage_names` (seconds to recompute; tests do).
DEFAULT_DATASET_ID = "synthetic-fd7a3515"
DEFAULT_COVERAGE_SHA256 = "37e86ec91c9b465313cc5a531d70005304def577675786b0e6f4255ddf92bac2"


def coverage_names(config: SynthConfig) -> list[ImageName]:
    """One image per subtype and magnification: every drawing path of the renderer."""
    first = {p.subtype: p for p in reversed(_cohort(config))}
    return [ImageName(p.tumor_class, p.subtype, p.name, mag, 1) for p in first.values() for mag in MAGNIFICATIONS]


def coverage_digest(config: SynthConfig) -> str:
    digest = hashlib.sha256()
    for name in coverage_names(config):
        digest.update(np.ascontiguousarray(render(config, name)).tobytes())
    return digest.hexdigest()
