"""The six hand-crafted descriptors: sizes, determinism, invariances, and agreement with the
libraries and with independent computations written out here."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import cv2
import mahotas
import numpy as np
import pytest
from conftest import MINI, needs_real
from scipy.ndimage import gaussian_filter
from skimage.feature import local_binary_pattern

from bhbench.errors import UserError
from bhbench_baselines.handcrafted import binary_patterns
from bhbench_baselines.handcrafted import counts as counts_module
from bhbench_baselines.handcrafted import glcm as glcm_module
from bhbench_baselines.handcrafted import pftas as pftas_module
from bhbench_baselines.handcrafted.binary_patterns import clbp_codes, lbp_codes
from bhbench_baselines.handcrafted.descriptors import DESCRIPTORS
from bhbench_baselines.handcrafted.lpq import stft_kernels, whitened_parts, whitening
from bhbench_baselines.handcrafted.pftas import pftas

PERF_SCRIPT = Path(__file__).resolve().parents[1] / "perf" / "handcrafted.py"
SPANHOL_DIMS = {"lbp": 10, "clbp": 1352, "lpq": 256, "glcm": 13, "orb": 32, "pftas": 162}


def grey_rgb(grey: np.ndarray) -> np.ndarray:
    """RGB with equal channels: OpenCV's luma of it is `grey` exactly."""
    return np.repeat(np.asarray(grey, np.uint8)[..., None], 3, axis=2)


def texture(seed: int, shape: tuple[int, int] = (48, 64), flat: bool = True) -> np.ndarray:
    """Smooth random texture in 0..255 with, if `flat`, constant patches (ties d_p == 0 everywhere
    in them, the case where interpolation rounding decides LBP bits)."""
    rng = np.random.default_rng(seed)
    x = gaussian_filter(rng.normal(size=shape), 1.5)
    x = 255 * (x - x.min()) / (x.max() - x.min())
    if flat:
        x[5:17, 7:25] = 120
        x[30:44, 40:60] = 255
    return np.round(x).astype(np.uint8)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    stained = np.dstack([texture(1), texture(2, flat=False), texture(3)])
    return [noise, stained, grey_rgb(texture(4))]


@pytest.mark.parametrize("name", sorted(SPANHOL_DIMS))
def test_default_dimension_matches_spanhol_and_output_is_finite(name, images):
    spec = DESCRIPTORS[name].spec()
    assert spec.dim == SPANHOL_DIMS[name]
    for rgb in images:
        vector = spec.compute(rgb)
        assert vector.shape == (SPANHOL_DIMS[name],) and vector.dtype == np.float64
        assert np.isfinite(vector).all()


@pytest.mark.parametrize("name", sorted(SPANHOL_DIMS))
def test_descriptors_are_deterministic(name, images):
    spec = DESCRIPTORS[name].spec()
    for rgb in images:
        assert np.array_equal(spec.compute(rgb), spec.compute(rgb.copy()))


@pytest.mark.parametrize("name", ["lbp", "clbp", "lpq", "pftas"])
def test_histograms_are_normalised(name, images):
    vector = DESCRIPTORS[name].spec().compute(images[1])
    histograms = 18 if name == "pftas" else 1  # pftas: six 9-bin histograms per channel
    assert (vector >= 0).all()
    assert vector.sum() == pytest.approx(histograms)


@pytest.mark.parametrize("name", ["lbp", "clbp"])
def test_riu2_histograms_unchanged_by_90_degree_rotation(name):
    spec = DESCRIPTORS[name].spec()
    rgb = np.dstack([texture(5, flat=False)] * 3)
    reference = spec.compute(rgb)
    for k in (1, 2, 3):
        assert np.allclose(spec.compute(np.ascontiguousarray(np.rot90(rgb, k))), reference, atol=1e-12)
    shuffled = np.random.default_rng(0).permutation(rgb.reshape(-1, 3)).reshape(rgb.shape)
    assert not np.allclose(spec.compute(shuffled), reference)  # it does look at the texture


@pytest.mark.parametrize(("P", "R"), [(8, 1), (16, 2), (8, 2.5)])
def test_lbp_codes_equal_scikit_image_on_every_pixel_border_included(P, R):
    for grey in (texture(6), np.random.default_rng(P).integers(0, 256, (30, 41)).astype(np.uint8)):
        codes = lbp_codes(grey, P, R)
        reference = local_binary_pattern(grey, P, R, "uniform")
        assert np.array_equal(codes, reference)
    hist = DESCRIPTORS["lbp"].spec(P=P, R=R).compute(grey_rgb(grey))
    assert np.array_equal(hist, np.bincount(reference.astype(int).ravel(), minlength=P + 2) / reference.size)


@pytest.mark.parametrize(("P", "R"), [(8, 1), (16, 2), (24, 3)])
def test_clbp_sign_code_is_scikit_image_uniform_lbp(P, R):
    for seed in (6, 7):
        grey = texture(seed)  # flat patches make ties, the rounding-sensitive case
        s, _, _ = clbp_codes(grey, P, R)
        reference = local_binary_pattern(grey, P, R, "uniform")[R:-R, R:-R]
        assert np.array_equal(s, reference)


def test_clbp_is_the_normalised_joint_histogram_of_its_three_codes():
    rgb = np.dstack([texture(9)] * 3)
    s, m, c = clbp_codes(texture(9), 24, 3)
    counts: dict[tuple[int, int, int], int] = {}
    for key in zip(s.ravel().tolist(), m.ravel().tolist(), c.ravel().tolist(), strict=True):
        counts[key] = counts.get(key, 0) + 1
    expected = np.zeros((26, 26, 2))
    for (si, mi, ci), count in counts.items():
        expected[si, mi, ci] = count / s.size
    assert len(counts) > 20  # many distinct (S, M, C) triples, large S and M codes among them
    assert np.array_equal(DESCRIPTORS["clbp"].spec().compute(rgb), expected.ravel())


def test_clbp_magnitude_and_centre_follow_their_image_mean_thresholds():
    grey = texture(8)
    s, m, c = clbp_codes(grey, 8, 1)
    inner = grey[1:-1, 1:-1].astype(float)
    assert np.array_equal(c, inner >= grey.mean())
    # Fully flat neighbourhoods: every |d_p| = 0 is below the mean magnitude, so M is 0 (all zeros).
    flat = np.zeros_like(inner, dtype=bool)
    flat[5:14, 7:22] = True  # inside the constant patch [5:17, 7:25], minus the 1-pixel ring
    assert (m[flat] == 0).all() and (s[flat] == 8).all()
    assert set(np.unique(m)) <= set(range(10)) and len(np.unique(m)) > 3


def test_lpq_codes_flat_regions_as_zero_whatever_the_rounding():
    flat = DESCRIPTORS["lpq"].spec().compute(np.full((20, 30, 3), 97, np.uint8))
    assert flat[0] == 1.0
    half = np.full((20, 30), 40, np.uint8)
    half[:, 15:] = 200
    vector = DESCRIPTORS["lpq"].spec(window=5).compute(grey_rgb(half)) * (16 * 26)  # in pixels
    assert vector[0] == 16 * 22  # windows inside either half: columns 2..12 and 17..27
    assert vector.sum() - vector[0] == 16 * 4  # those across the edge see it: nonzero codes


def test_lpq_is_less_changed_by_a_symmetric_blur_than_by_noise_of_the_same_size():
    spec = DESCRIPTORS["lpq"].spec()
    rng = np.random.default_rng(0)
    for seed in (10, 11, 12):
        x = texture(seed, (96, 128), flat=False).astype(float)
        blurred = gaussian_filter(x, 1.0)
        noisy = x + rng.normal(size=x.shape) * np.std(blurred - x)
        base = spec.compute(grey_rgb(x))
        to_blur = np.abs(spec.compute(grey_rgb(np.round(blurred))) - base).sum()
        to_noise = np.abs(spec.compute(grey_rgb(np.clip(np.round(noisy), 0, 255))) - base).sum()
        assert to_blur < 0.6 * to_noise


def _bilinear_zero_padded(g: np.ndarray, r: float, c: float) -> float:
    def pixel(i: int, j: int) -> float:
        inside = 0 <= i < g.shape[0] and 0 <= j < g.shape[1]
        return float(g[i, j]) if inside else 0.0

    r0, c0 = int(np.floor(r)), int(np.floor(c))
    fr, fc = r - r0, c - c0
    top = (1 - fc) * pixel(r0, c0) + fc * pixel(r0, c0 + 1)
    bottom = (1 - fc) * pixel(r0 + 1, c0) + fc * pixel(r0 + 1, c0 + 1)
    return (1 - fr) * top + fr * bottom


def _riu2_reference(bits: list[bool]) -> int:
    transitions = sum(bits[i] != bits[i - 1] for i in range(len(bits)))
    return sum(bits) if transitions <= 2 else len(bits) + 1


def test_clbp_codes_equal_a_pixel_by_pixel_computation():
    """S and M of every pixel from scikit-image's interpolation written out per pixel, M against the
    mean of all |d_p| taken as one (P, h, w) array; the image holds flat patches, where ties
    d_p == 0 decide bits."""
    P, R, m = 8, 1.5, 2
    grey = texture(13, (29, 17))
    offsets = binary_patterns.circle_offsets(P, R)
    h, w = grey.shape[0] - 2 * m, grey.shape[1] - 2 * m
    d = np.empty((P, h, w))
    for r, c in itertools.product(range(h), range(w)):
        for p, (dy, dx) in enumerate(zip(*offsets, strict=True)):
            d[p, r, c] = _bilinear_zero_padded(grey, r + m + dy, c + m + dx) - grey[r + m, c + m]
    threshold = np.abs(d).mean()
    s, mm, _ = clbp_codes(grey, P, R)
    for r, c in itertools.product(range(h), range(w)):
        assert s[r, c] == _riu2_reference(list(d[:, r, c] >= 0))
        assert mm[r, c] == _riu2_reference(list(np.abs(d[:, r, c]) >= threshold))
    assert (d == 0).any() and len(np.unique(mm)) > 3


def test_lbp_matches_a_pixel_by_pixel_riu2_histogram():
    grey = np.random.default_rng(1).integers(0, 256, (12, 10)).astype(np.uint8)
    P, R = 8, 1
    angles = 2 * np.pi * np.arange(P) / P
    offsets = np.round(-R * np.sin(angles), 5), np.round(R * np.cos(angles), 5)  # on-grid points exact
    counts = np.zeros(P + 2)
    for r, c in itertools.product(range(grey.shape[0]), range(grey.shape[1])):
        bits = [_bilinear_zero_padded(grey, r + dy, c + dx) >= grey[r, c] for dy, dx in zip(*offsets, strict=True)]
        counts[_riu2_reference(bits)] += 1
    assert np.allclose(DESCRIPTORS["lbp"].spec().compute(grey_rgb(grey)), counts / counts.sum())


def _haralick_reference(grey: np.ndarray) -> np.ndarray:
    """Haralick's 13 features from a symmetric co-occurrence matrix, averaged over 0, 45, 90 and
    135 degrees; levels 0..max(grey), logarithms base 2, f10 the variance of |i - j|."""
    n = int(grey.max()) + 1
    feats = []
    for dy, dx in [(0, 1), (1, 1), (1, 0), (1, -1)]:
        counts = np.zeros((n, n))
        h, w = grey.shape
        for r, c in itertools.product(range(h), range(w)):
            if 0 <= r + dy < h and 0 <= c + dx < w:
                counts[grey[r, c], grey[r + dy, c + dx]] += 1
        counts += counts.T
        p = counts / counts.sum()
        i, j = np.indices(p.shape)
        px, py = p.sum(1), p.sum(0)
        mean_x, mean_y = (i * p).sum(), (j * p).sum()
        sd_x, sd_y = np.sqrt(((i - mean_x) ** 2 * p).sum()), np.sqrt(((j - mean_y) ** 2 * p).sum())
        p_sum = np.bincount((i + j).ravel(), p.ravel(), minlength=2 * n)
        p_diff = np.bincount(np.abs(i - j).ravel(), p.ravel(), minlength=n)
        k_sum, k_diff = np.arange(2 * n), np.arange(n)

        def entropy(q: np.ndarray) -> float:
            q = q[q > 0]
            return float(-(q * np.log2(q)).sum())

        hxy = entropy(p)
        outer = np.outer(px, py)
        hxy1 = float(-(p[outer > 0] * np.log2(outer[outer > 0])).sum())
        hxy2 = entropy(outer)
        sum_average = (k_sum * p_sum).sum()
        diff_mean = (k_diff * p_diff).sum()
        feats.append(
            [
                (p**2).sum(),
                (k_diff**2 * p_diff).sum(),
                ((i * j * p).sum() - mean_x * mean_y) / (sd_x * sd_y),
                ((i - mean_x) ** 2 * p).sum(),
                (p / (1 + (i - j) ** 2)).sum(),
                sum_average,
                ((k_sum - sum_average) ** 2 * p_sum).sum(),
                entropy(p_sum),
                hxy,
                ((k_diff - diff_mean) ** 2 * p_diff).sum(),
                entropy(p_diff),
                (hxy - hxy1) / max(entropy(px), entropy(py)),
                np.sqrt(1 - np.exp(-2 * (hxy2 - hxy))),
            ]
        )
    return np.mean(feats, axis=0)


def test_glcm_matches_haralick_features_written_out():
    for seed in (0, 1):
        grey = np.random.default_rng(seed).integers(0, 8, (14, 11)).astype(np.uint8)
        assert np.allclose(DESCRIPTORS["glcm"].spec().compute(grey_rgb(grey)), _haralick_reference(grey))


def _otsu_reference(channel: np.ndarray) -> int:
    """Threshold t maximising the between-class variance of {<= t} and {> t} (first maximum)."""
    best, best_t = -1.0, 0
    values = channel.ravel().astype(float)
    for t in range(int(channel.max())):
        low, high = values[values <= t], values[values > t]
        if len(low) == 0 or len(high) == 0:
            continue
        between = len(low) * len(high) * (low.mean() - high.mean()) ** 2
        if between > best + 1e-9:
            best, best_t = between, t
    return best_t


def _tas_reference(binary: np.ndarray) -> list[np.ndarray]:
    """Over the unset pixels, the histogram of set 8-neighbours (edge-mirrored border), normalised;
    then the same for the complement."""
    out = []
    for b in (binary, ~binary):
        padded = np.pad(b, 1, mode="symmetric").astype(int)
        neighbours = sum(
            padded[1 + dy : padded.shape[0] - 1 + dy, 1 + dx : padded.shape[1] - 1 + dx]
            for dy, dx in itertools.product((-1, 0, 1), repeat=2)
            if (dy, dx) != (0, 0)
        )
        hist = np.bincount(neighbours[~b], minlength=9).astype(float)
        out.append(hist / hist.sum() if hist.sum() else hist)
    return out


def _pftas_reference(rgb: np.ndarray) -> np.ndarray:
    per_channel = []
    for ch in np.moveaxis(rgb, 2, 0):
        t = _otsu_reference(ch)
        above = ch[ch > t].astype(float)
        mu, spread = above.mean(), above.std()
        binaries = [(ch > mu - spread) & (ch < mu + spread), ch > mu - spread, ch > mu]
        pairs = [_tas_reference(b) for b in binaries]
        per_channel.append(np.concatenate([p[0] for p in pairs] + [p[1] for p in pairs]))
    return np.concatenate(per_channel)


def test_pftas_matches_threshold_adjacency_statistics_written_out(images):
    small = [rgb[:20, :24] for rgb in images]
    for rgb in small:
        assert np.allclose(pftas(rgb), _pftas_reference(rgb))


def test_pftas_equals_mahotas_per_channel(images):
    rng = np.random.default_rng(3)
    cases = [*images, rng.integers(0, 3, (21, 17, 3), dtype=np.uint8), np.full((9, 9, 3), 7, np.uint8)]
    for rgb in cases:
        expected = np.concatenate([mahotas.features.pftas(np.ascontiguousarray(rgb[..., c])) for c in range(3)])
        assert np.array_equal(pftas(rgb), expected)


@pytest.mark.parametrize("name", ["lbp", "clbp", "lpq", "glcm", "pftas"])
def test_descriptors_count_the_same_with_either_histogram(name, images, monkeypatch):
    spec = DESCRIPTORS[name].spec()
    expected = [spec.compute(rgb) for rgb in images]
    monkeypatch.setattr(counts_module, "FLOAT32_EXACT", 0)  # every image takes the large-image path
    assert all(np.array_equal(spec.compute(rgb), e) for rgb, e in zip(images, expected, strict=True))


def test_orb_pools_byte_means_and_gives_zeros_without_keypoints():
    spec = DESCRIPTORS["orb"].spec()
    assert np.array_equal(spec.compute(np.full((64, 64, 3), 128, np.uint8)), np.zeros(32))
    rng = np.random.default_rng(0)
    blobs = gaussian_filter(rng.normal(size=(160, 200)), 2)
    vector = spec.compute(grey_rgb(255 * (blobs > 0)))
    assert vector.any() and (vector >= 0).all() and (vector <= 255).all()


def test_spec_names_every_parameter_and_versions():
    spec = DESCRIPTORS["lpq"].spec(window=5)
    assert spec.as_dict()["params"] == {"window": 5, "rho": 0.9}
    assert spec.code.startswith("2+numpy==")  # code version 2, then the library's
    assert spec.id != DESCRIPTORS["lpq"].spec().id
    assert spec.id == DESCRIPTORS["lpq"].spec(window=5, rho=0.9).id
    assert DESCRIPTORS["clbp"].spec(P=8, R=1).dim == 2 * 10 * 10


def test_an_unknown_parameter_is_a_user_error_naming_it():
    """Values are checked against the methods' declarations before any job (test_handcrafted)."""
    with pytest.raises(UserError, match="orb has no parameter .*nfeatures"):
        DESCRIPTORS["orb"].spec(nfeatures=10)


def test_too_small_or_non_rgb_image_is_a_user_error():
    with pytest.raises(UserError, match="too small"):
        DESCRIPTORS["clbp"].spec().compute(np.zeros((5, 40, 3), np.uint8))
    with pytest.raises(UserError, match="RGB uint8"):
        DESCRIPTORS["lbp"].spec().compute(np.zeros((20, 20), np.uint8))


@pytest.mark.parametrize("window", [3, 5])
def test_lpq_parts_are_whitened_windowed_fourier_sums_at_the_four_lowest_frequencies(window):
    grey = np.random.default_rng(2).integers(0, 256, (9, 11)).astype(float)
    parts = np.stack(list(whitened_parts(grey, window, 0.9)))
    r = window // 2
    offsets = np.arange(-r, r + 1)
    for row, col in [(0, 0), (2, 3), (grey.shape[0] - window, grey.shape[1] - window)]:
        centre = (row + r, col + r)
        stft = []
        for u, v in [(1, 0), (0, 1), (1, 1), (1, -1)]:  # (horizontal, vertical), cycles per window
            coefficient = sum(
                grey[centre[0] - y, centre[1] - x] * np.exp(-2j * np.pi * (u * x + v * y) / window)
                for y, x in itertools.product(offsets, offsets)
            )
            stft += [coefficient.real, coefficient.imag]
        assert np.allclose(parts[:, row, col], whitening(window, 0.9) @ stft)


def test_lpq_whitening_decorrelates_the_parts_under_the_pixel_correlation_model():
    window, rho = 3, 0.9
    # Covariance of the eight parts when pixel covariance is rho ** distance, from their kernels.
    basis = stft_kernels(window).reshape(8, -1)
    yy, xx = np.divmod(np.arange(window * window), window)
    pixel_cov = rho ** np.hypot(yy[:, None] - yy, xx[:, None] - xx)
    white = whitening(window, rho)
    cov = white @ basis @ pixel_cov @ basis.T @ white.T
    off_diagonal = cov - np.diag(np.diag(cov))
    assert np.abs(off_diagonal).max() < 1e-3 * np.diag(cov).max()
    assert np.allclose(white @ white.T, np.eye(8))  # a rotation: no part is dropped or scaled
    assert (np.diff(np.diag(cov)) <= 1e-9).all()  # bits ordered by decreasing variance


# --- The fast paths against their reference definitions, on real BreaKHis images and on synthetic
# images that force each of CLBP's threshold paths. A changed value fails here.

# The first: one of the 10 mini images where some float32 |d_p| equals float32(mean |d_p|), so CLBP
# decides those 14 M bits again in float64.
REAL_IMAGES = [
    "benign/SOB/fibroadenoma/SOB_B_F_14-23060CD/100X/SOB_B_F-14-23060CD-100-006.png",
    "malignant/SOB/ductal_carcinoma/SOB_M_DC_14-11031/100X/SOB_M_DC-14-11031-100-014.png",
    "benign/SOB/adenosis/SOB_B_A_14-22549AB/40X/SOB_B_A-14-22549AB-40-001.png",
]


@pytest.fixture(scope="module")
def real_images() -> list[np.ndarray]:
    from PIL import Image

    root = MINI / "histology_slides" / "breast"
    return [np.asarray(Image.open(root / name).convert("RGB")) for name in REAL_IMAGES]


def _clbp_reference(rgb: np.ndarray, P: int = 24, R: float = 3) -> np.ndarray:
    """CLBP as the definition reads, in whole-image planes (the speed script's composition side):
    scikit-image's interpolation, the mean of the whole float64 |d_p| array as M's threshold."""
    spec = importlib.util.spec_from_file_location("perf_handcrafted", PERF_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.clbp_reference(rgb, P, R)


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


@needs_real
def test_fast_descriptors_equal_their_references_on_real_breakhis_images(real_images):
    for rgb in real_images:
        grey = _grey(rgb)
        codes = local_binary_pattern(grey, 8, 1, "uniform").astype(int)
        expected = np.bincount(codes.ravel(), minlength=10) / codes.size
        assert np.array_equal(DESCRIPTORS["lbp"].spec().compute(rgb), expected)
        assert np.array_equal(DESCRIPTORS["clbp"].spec().compute(rgb), _clbp_reference(rgb))
        expected = np.concatenate([mahotas.features.pftas(np.ascontiguousarray(rgb[..., c])) for c in range(3)])
        assert np.array_equal(DESCRIPTORS["pftas"].spec().compute(rgb), expected)
        expected = mahotas.features.haralick(grey, return_mean=True, use_x_minus_y_variance=True)
        assert np.array_equal(DESCRIPTORS["glcm"].spec().compute(rgb), expected)


def _spy(monkeypatch, owner, name: str) -> list[tuple]:
    """Record the arguments of every call of owner.name (which still runs)."""
    calls: list[tuple] = []
    original = getattr(owner, name)

    def spy(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(owner, name, spy)
    return calls


@needs_real
def test_clbp_decides_float32_ties_with_the_mean_again_in_float64(real_images, monkeypatch):
    kernel, again = binary_patterns._magnitude_codes, []

    def counting(*args):
        codes, n = kernel(*args)
        again.append(n)
        return codes, n

    monkeypatch.setattr(binary_patterns, "_magnitude_codes", counting)
    rgb = real_images[0]
    assert np.array_equal(DESCRIPTORS["clbp"].spec().compute(rgb), _clbp_reference(rgb))
    assert again[0] > 0  # some |d_p| were computed again: the tie path ran


def test_clbp_equals_its_definition_on_synthetic_images(images):
    for rgb in images:
        for P, R in [(24, 3), (8, 1), (16, 2.5)]:
            assert np.array_equal(DESCRIPTORS["clbp"].spec(P=P, R=R).compute(rgb), _clbp_reference(rgb, P, R))


def test_clbp_takes_the_whole_float64_mean_where_a_magnitude_sits_on_it(monkeypatch):
    # A 0/2 checkerboard: every |d_p| is 2, the mean exactly, which the row sums cannot place
    grey = (np.indices((20, 24)).sum(axis=0) % 2 * 2).astype(np.uint8)
    whole = _spy(monkeypatch, binary_patterns, "_magnitude_code")
    _, m, _ = clbp_codes(grey, 4, 1)
    assert len(whole) == 1 and (m == 4).all()  # every |d_p| >= the mean: all four bits set
    rgb = grey_rgb(grey)
    assert np.array_equal(DESCRIPTORS["clbp"].spec(P=4, R=1).compute(rgb), _clbp_reference(rgb, 4, 1))


def test_clbp_takes_the_whole_float64_mean_when_the_row_sums_cannot_place_it(images, monkeypatch):
    monkeypatch.setattr(binary_patterns, "MEAN_SLACK", 1e-3)  # [lo, hi] spans many float32 values
    whole = _spy(monkeypatch, binary_patterns, "_magnitude_code")
    for rgb in images:
        assert np.array_equal(DESCRIPTORS["clbp"].spec().compute(rgb), _clbp_reference(rgb))
    assert len(whole) == len(images)


def test_counts_equal_bincount_for_both_histogram_paths(monkeypatch):
    rng = np.random.default_rng(5)
    runs = np.repeat(rng.integers(0, 20, 300), 40).reshape(120, 100).astype(np.uint8)  # long runs of a value
    cases = [(rng.integers(0, 256, (37, 53)).astype(np.uint8), 256), (runs, 20)]
    cases.append((rng.integers(0, 1352, (41, 29)).astype(np.uint16), 1352))
    for codes, bins in cases:
        assert np.array_equal(counts_module.counts(codes, bins), np.bincount(codes.ravel(), minlength=bins))
    three = [runs, runs[::-1].copy(), np.ascontiguousarray(runs.T).reshape(runs.shape)]
    expected = [np.bincount(c.ravel(), minlength=20) for c in three]
    for large in (False, True):
        if large:
            monkeypatch.setattr(counts_module, "FLOAT32_EXACT", 0)
        assert all(np.array_equal(a, b) for a, b in zip(counts_module.counts_each(three, 20), expected, strict=True))


@pytest.mark.parametrize("distance", [1, 2])
def test_cooccurrences_equal_mahotas_in_every_direction(distance):
    rng = np.random.default_rng(distance)
    for grey in (rng.integers(0, 256, (23, 31)).astype(np.uint8), texture(14)):
        levels = int(grey.max()) + 1
        for direction, (dy, dx) in enumerate(glcm_module.DIRECTIONS):
            expected = np.empty((levels, levels), np.int32)  # as haralick passes it (its own uint8 max + 1 wraps)
            mahotas.features.texture.cooccurence(grey, direction, expected, symmetric=True, distance=distance)
            got = counts_module.cooccurrences(grey, dy * distance, dx * distance, levels)
            assert got.dtype == np.int32 and np.array_equal(got, expected)


def test_pftas_takes_numpys_spread_where_a_threshold_is_an_integer():
    # Above Otsu's threshold: 1000 pixels at 10 and 1000 at 20, so mean - spread = 15 - 5 = 10 (up
    # to the 1e-8 in mahotas' mean), exactly a grey level: the histogram's spread is not trusted there.
    channel = np.zeros((60, 60), np.uint8)
    channel.flat[1600:2600], channel.flat[2600:] = 10, 20
    threshold = mahotas.thresholding.otsu(channel)
    mean, spread = pftas_module._above(channel, threshold)
    assert threshold < 10 and abs(mean - spread - 10) < pftas_module.SPREAD_SLACK
    rgb = np.dstack([channel, channel.T.copy(), np.roll(channel, 7)])
    expected = np.concatenate([mahotas.features.pftas(np.ascontiguousarray(rgb[..., c])) for c in range(3)])
    assert np.array_equal(pftas(rgb), expected)
