"""The synthetic BreaKHis-like generator: layout, cohort, determinism, and that it carries signal."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from skimage.color import rgb2hed
from sklearn.metrics import roc_auc_score

from bhbench.data import breakhis, synthetic
from bhbench.data.names import ImageName, folder_disagreements, parse_name
from bhbench.data.synthetic import TINY, SynthConfig, default_root, generate, image_names, render
from bhbench.errors import UserError


def _read(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)


def _digests(top: Path) -> dict[str, str]:
    return {str(f.relative_to(top)): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(top.rglob("*.png"))}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    calls: list[int] = []
    top = generate(tmp_path_factory.mktemp("synth"), TINY, progress=calls.append)
    return top, calls


@pytest.fixture(scope="module")
def images(tree: tuple[Path, list[int]]) -> list[tuple[ImageName, np.ndarray]]:
    top, _ = tree
    return [(parse_name(f.name), _read(f)) for f in sorted(top.rglob("*.png"))]


def test_tree_has_breakhis_layout_and_names(tree: tuple[Path, list[int]]) -> None:
    top, _ = tree
    slides = top / "histology_slides"
    files = sorted(top.rglob("*.png"))
    assert top.name == "BreaKHis_v1" and files
    for f in files:
        name = parse_name(f.name)
        rel = f.relative_to(slides)
        assert folder_disagreements(rel.parts, name) == []
        assert rel.as_posix() == name.relpath()
    assert {f.relative_to(slides).as_posix() for f in files} == {n.relpath() for n in image_names(TINY)}


def test_progress_adds_up_to_the_image_count(tree: tuple[Path, list[int]]) -> None:
    top, calls = tree
    assert len(calls) == 82  # once per patient
    assert sum(calls) == len(list(top.rglob("*.png"))) == len(image_names(TINY))


def test_cohort_has_breakhis_class_and_subtype_mix() -> None:
    names = image_names(TINY)
    patients = {(n.patient, n.tumor_class, n.subtype) for n in names}
    assert len({p for p, _, _ in patients}) == 82
    assert Counter(c for _, c, _ in patients) == {"B": 24, "M": 58}
    assert Counter(s for _, _, s in patients) == {
        "A": 4, "F": 10, "PT": 3, "TA": 7, "DC": 38, "LC": 5, "MC": 9, "PC": 6,
    }  # fmt: skip
    mags = defaultdict(set)
    for n in names:
        mags[n.patient].add(n.magnification)
    assert all(m == {40, 100, 200, 400} for m in mags.values())
    # Real BreaKHis patient numbers are below 30000; synthetic ones must never be mistaken for them.
    assert all(int(p.split("-")[1]) > 90000 for p, _, _ in patients)


def test_images_per_patient_varies_around_the_configured_mean() -> None:
    counts = Counter((n.patient, n.magnification) for n in image_names(SynthConfig(images_per_patient=8)))
    values = np.array(list(counts.values()))
    assert values.min() >= 6 and values.max() <= 10 and len(set(values)) > 1
    assert abs(values.mean() - 8) < 0.5
    assert set(Counter((n.patient, n.magnification) for n in image_names(TINY)).values()) == {1}


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tree: tuple[Path, list[int]], tmp_path: Path) -> None:
    top, _ = tree
    again = generate(tmp_path / "again", TINY)
    assert _digests(again) == _digests(top)
    other = generate(
        tmp_path / "other", SynthConfig(seed=1, width=TINY.width, height=TINY.height, images_per_patient=1)
    )
    assert not set(_digests(other).values()) & set(_digests(top).values())


def test_render_matches_the_written_file(tree: tuple[Path, list[int]]) -> None:
    top, _ = tree
    name = image_names(TINY)[7]
    assert np.array_equal(render(TINY, name), _read(top / "histology_slides" / name.relpath()))


def test_images_have_the_configured_size(images: list[tuple[ImageName, np.ndarray]]) -> None:
    assert {img.shape for _, img in images} == {(TINY.height, TINY.width, 3)}
    assert {img.dtype for _, img in images} == {np.dtype(np.uint8)}
    config = SynthConfig(width=200, height=90, images_per_patient=1)
    assert render(config, image_names(config)[0]).shape == (90, 200, 3)


def test_stain_varies_between_patients_far_more_than_within(images: list[tuple[ImageName, np.ndarray]]) -> None:
    # Optical-density direction of the darkest pixels (nuclei): the haematoxylin's hue, whatever
    # its amount. Without per-patient stain vectors the ratio below stays near 20.
    by_patient = defaultdict(list)
    for name, img in images:
        od = -np.log((img.reshape(-1, 3).astype(float) + 1) / 256)
        density = od.sum(axis=1)
        dark = od[density >= np.quantile(density, 0.95)]
        by_patient[name.patient].append((dark / np.linalg.norm(dark, axis=1, keepdims=True)).mean(axis=0))
    groups = [np.array(v) for v in by_patient.values()]
    between = np.var([g.mean(axis=0) for g in groups], axis=0)
    within = np.mean([g.var(axis=0) for g in groups], axis=0)
    assert np.all(between > 40 * within)


def test_nuclei_grow_with_magnification(images: list[tuple[ImageName, np.ndarray]]) -> None:
    blob_area = defaultdict(list)
    for name, img in images:
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        _, dark = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
        _, _, stats, _ = cv2.connectedComponentsWithStats(dark)
        blob_area[name.magnification].append(np.median(stats[1:, cv2.CC_STAT_AREA]))
    median = {mag: np.mean(areas) for mag, areas in blob_area.items()}
    assert median[40] < median[100] < median[200] < median[400]
    assert median[400] > 3 * median[100]


def test_class_signal_exists_but_classes_overlap(images: list[tuple[ImageName, np.ndarray]]) -> None:
    # Haematoxylin per patient (nuclear load): higher in carcinoma on average, but some benign
    # patients exceed some malignant ones, so one simple statistic cannot separate the classes.
    haem = defaultdict(list)
    malignant = {}
    for name, img in images:
        haem[name.patient].append(rgb2hed(img)[..., 0].mean())
        malignant[name.patient] = name.tumor_class == "M"
    patients = sorted(haem)
    auc = roc_auc_score([malignant[p] for p in patients], [np.mean(haem[p]) for p in patients])
    assert 0.7 < auc < 0.97


def test_bad_config_is_a_user_error() -> None:
    with pytest.raises(UserError, match="10x230"):
        SynthConfig(width=10)
    with pytest.raises(UserError, match="images_per_patient=0"):
        SynthConfig(images_per_patient=0)
    with pytest.raises(UserError, match="not an image of the synthetic dataset"):
        render(TINY, parse_name("SOB_B_A-14-22549AB-40-001.png"))


def test_generate_refuses_to_mix_with_an_existing_tree(tree: tuple[Path, list[int]]) -> None:
    top, _ = tree
    with pytest.raises(UserError, match="not empty"):
        generate(top.parent, TINY)


def test_slug_names_every_setting_and_the_generator_version() -> None:
    slugs = {
        SynthConfig().slug(),
        SynthConfig(seed=1).slug(),
        SynthConfig(width=351).slug(),
        SynthConfig(height=231).slug(),
        SynthConfig(images_per_patient=5).slug(),
    }
    assert len(slugs) == 5
    assert SynthConfig().slug().endswith(f"-v{synthetic.GENERATOR_VERSION}")


def test_default_root_generates_once_and_never_keeps_a_partial_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BHBENCH_CACHE", str(tmp_path))
    calls = []

    def fake_generate(root: Path, config: SynthConfig, progress: object = None) -> Path:
        calls.append(config)
        top = root / "BreaKHis_v1"
        (top / "histology_slides").mkdir(parents=True)
        if len(calls) == 1:
            raise KeyboardInterrupt  # interrupted half-way
        return top

    monkeypatch.setattr(synthetic, "generate", fake_generate)
    with pytest.raises(KeyboardInterrupt):
        default_root(TINY)
    home = tmp_path / "synthetic" / TINY.slug()
    assert list(home.iterdir()) == []  # nothing that looks finished, no scratch left behind

    top = default_root(TINY)
    assert top == home / "BreaKHis_v1" and (top / "histology_slides").is_dir()
    assert default_root(TINY) == top
    assert len(calls) == 2  # the finished tree is reused


def test_exp_sin_cos_from_basic_operations_match_libm() -> None:
    x = np.linspace(-3000.0, 3000.0, 200_001)
    assert np.abs(synthetic._sin(x) - np.sin(x)).max() < 1e-12
    assert np.abs(synthetic._cos(x) - np.cos(x)).max() < 1e-12
    y = np.linspace(-40.0, 40.0, 200_001)
    assert np.abs(synthetic._exp(y) / np.exp(y) - 1).max() < 1e-14


def test_blur_and_upsample_match_opencv_where_kernels_agree() -> None:
    # Written out in fixed order for determinism; still the same operations as OpenCV's.
    img = np.random.default_rng(0).random((40, 50, 3))
    assert np.abs(synthetic._blur(img, 1.3) - cv2.GaussianBlur(img, (0, 0), 1.3)).max() < 1e-12
    ramp = np.add.outer(np.arange(6.0), 2 * np.arange(7.0))  # cubic resampling keeps a linear ramp linear
    inner = synthetic._upsample(ramp, 30, 35)[8:-8, 8:-8]  # away from the clamped edges
    assert np.allclose(np.diff(inner, 2, axis=0), 0) and np.allclose(np.diff(inner, 2, axis=1), 0)
    assert np.allclose(np.diff(inner, axis=0), 0.2) and np.allclose(np.diff(inner, axis=1), 0.4)


def test_coverage_slice_reaches_every_subtype_and_magnification() -> None:
    names = synthetic.coverage_names(SynthConfig())
    assert {(n.subtype, n.magnification) for n in names} == {
        (s, m) for s in synthetic.SUBTYPE_PATIENTS for m in synthetic.MAGNIFICATIONS
    }
    assert set(names) <= set(image_names(SynthConfig()))


def test_default_pixels_match_the_committed_digest() -> None:
    # Same bytes on every machine: if this fails after a deliberate change to the generator, bump
    # GENERATOR_VERSION and commit the new digest and dataset id; otherwise something platform-
    # dependent crept into the pixel arithmetic.
    assert synthetic.coverage_digest(SynthConfig()) == synthetic.DEFAULT_COVERAGE_SHA256


@pytest.mark.slow
def test_default_dataset_has_the_committed_id(tmp_path: Path) -> None:
    from bhbench.data.index import index_tree

    top = generate(tmp_path, SynthConfig())
    assert index_tree(top, "synthetic").id == synthetic.DEFAULT_DATASET_ID


def test_a_default_set_that_differs_from_the_committed_one_is_a_warning(
    tree: tuple[Path, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bhbench.data.sources import open_dataset

    top, _ = tree
    monkeypatch.setattr(synthetic, "default_root", lambda progress=None: top)  # as if generated otherwise
    dataset = open_dataset()
    warnings = [p for p in dataset.problems if p.kind == "synthetic-drift"]
    assert len(warnings) == 1 and warnings[0].severity == "warning"
    assert dataset.id in warnings[0].message and synthetic.DEFAULT_DATASET_ID in warnings[0].message


def test_breakhis_sized_preset_has_breakhis_counts_per_subtype_and_magnification() -> None:
    names = image_names(synthetic.BREAKHIS_SIZED)
    table = pd.DataFrame(
        {"tumor_class": n.tumor_class, "subtype": n.subtype, "patient": n.patient, "magnification": n.magnification}
        for n in names
    )
    counts = breakhis.observed(table)
    assert {k: v for k, v in counts.items() if k != "patient tokens"} == {
        k: v for k, v in breakhis.expected().items() if k != "patient tokens"
    }  # 82 patients; the synthetic cohort has no token shared by two subtypes, BreaKHis has one
    assert synthetic.BREAKHIS_SIZED.slug() != SynthConfig(width=700, height=460).slug()
