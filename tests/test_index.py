"""Indexing BreaKHis trees: real material, the accepted root forms, and the image cache."""

from pathlib import Path

import numpy as np
import pytest
from conftest import MINI, needs_real

from bhbench.data.images import ImageStore, content_key, decode
from bhbench.data.index import index_tree, resolve_root, stage
from bhbench.errors import DataError


@needs_real
def test_mini_has_283_images_22_patients_all_subtypes():
    dataset = index_tree(MINI)
    table = dataset.table
    assert len(table) == 283
    assert table["patient"].nunique() == 22
    assert sorted(table["subtype"].unique()) == sorted(["A", "F", "PT", "TA", "DC", "LC", "MC", "PC"])
    assert dataset.problems == []
    # nothing assumes 700x460: sizes come from the files
    assert set(table["width"]) == {700}


@needs_real
def test_index_agrees_with_the_manifest():
    import pandas as pd

    manifest = pd.read_csv(MINI / "MANIFEST.csv")
    table = index_tree(MINI).table.set_index("filename")
    for row in manifest.itertuples():
        got = table.loc[row.filename]
        assert (got.patient, got.subtype, got.magnification, got.seq) == (
            row.patient,
            row.tumor_type,
            row.mag,
            row.seq,
        )
        assert (got.width, got.height) == (row.width, row.height)


def test_root_forms_are_accepted(tiny_tree: Path):
    slides = tiny_tree / "histology_slides"
    assert resolve_root(tiny_tree) == slides
    assert resolve_root(slides) == slides
    assert resolve_root(tiny_tree.parent) == slides


def test_non_breakhis_folder_is_refused(tmp_path: Path):
    with pytest.raises(DataError, match="not a BreaKHis tree"):
        resolve_root(tmp_path)
    with pytest.raises(DataError, match="no such folder"):
        resolve_root(tmp_path / "missing")


def test_tiny_synthetic_tree_indexes_cleanly(tiny_tree: Path):
    dataset = index_tree(tiny_tree, "synthetic")
    assert dataset.problems == []
    assert dataset.table["patient"].nunique() == 82
    assert dataset.id.startswith("synthetic-")


def test_image_cache_decodes_once_and_serves_resized_copies(tiny_tree: Path, tmp_path: Path):
    dataset = index_tree(tiny_tree, "synthetic")
    store = ImageStore(tmp_path / "images")
    head = dataset.table.head(3).copy()
    dataset.table = head
    assert stage(dataset, store) == []
    key = head["key"].iloc[0]
    full = store.load(key)
    assert full.shape == (head["height"].iloc[0], head["width"].iloc[0], 3) and full.dtype == np.uint8
    small = store.load(key, (20, 30))
    assert small.shape == (20, 30, 3)
    assert (tmp_path / "images" / key[:2] / f"{key}_20x30.npy").exists()
    square = store.load(key, (16, 16), square=True)
    assert square.shape == (16, 16, 3)
    # the content key is the file's bytes, not its name
    assert content_key(dataset.path(head["relpath"].iloc[0])) == key


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA", "LA"])
def test_decoding_gives_pillows_rgb_pixels_for_every_8_bit_png_kind(mode, tmp_path: Path):
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (23, 37, 3), dtype=np.uint8)
    path = tmp_path / f"{mode}.png"
    Image.fromarray(rgb).convert(mode).save(path)
    with Image.open(path) as img:
        expected = np.asarray(img.convert("RGB"))
    assert np.array_equal(decode(path), expected)
    assert np.array_equal(decode(path.read_bytes()), expected)
