"""The real sample at every magnification: `mini/` and `more/` joined by `bhbench data union` into one
tree of symbolic links, with the official folds beside it."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from conftest import FOLDS, MINI, SHARED, needs_real

from bhbench.cli import main
from bhbench.data.sources import folds_beside, link_union, open_dataset
from bhbench.errors import DataError, UserError
from bhbench.protocol import MAGNIFICATIONS
from bhbench.splits import official_split, read_official

MORE = SHARED / "more"
needs_more = pytest.mark.skipif(
    not MORE.is_dir(), reason=f"real BreaKHis material not found at {MORE} (expected ../shared/breakhis/more)"
)
pytestmark = [needs_real, needs_more]


@pytest.fixture(scope="module")
def union(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return link_union(tmp_path_factory.mktemp("real") / "union", [MINI, MORE], FOLDS)


def test_union_holds_all_441_images_as_links_and_its_id_is_its_images(union: Path, tmp_path: Path):
    dataset = open_dataset(union)
    assert (len(dataset.table), dataset.table["patient"].nunique()) == (441, 42)
    assert dataset.problems == []
    files = [p for p in union.rglob("*") if not p.is_dir()]
    assert all(p.is_symlink() for p in files if p.name != "UNION.txt")  # nothing copied
    assert all(Path(os.readlink(p)).is_relative_to(SHARED.resolve()) for p in files if p.is_symlink())
    # the same images in another place, the sources in the other order: the same dataset
    again = open_dataset(link_union(tmp_path / "elsewhere", [MORE, MINI]))
    assert again.id == dataset.id
    assert again.id != open_dataset(MINI).id


def test_relpaths_are_the_original_layout(union: Path):
    got = open_dataset(union).table.set_index("filename")["relpath"]
    for source in (MINI, MORE):
        own = open_dataset(source).table.set_index("filename")["relpath"]
        assert (got[own.index] == own).all()  # records and reproduce address images as in the sources
        assert (union / "histology_slides" / own.iloc[0]).resolve() == (
            source / "histology_slides" / own.iloc[0]
        ).resolve()


def test_every_official_fold_tests_every_magnification(union: Path):
    dataset = open_dataset(union)
    assert folds_beside(dataset) == union  # linked beside: runs take the official split by default
    split = official_split(read_official(union), dataset.table["filename"].tolist())
    magnification = dict(zip(dataset.table["filename"], dataset.table["magnification"], strict=True))
    tested = [Counter(magnification[name] for name in fold.test) for fold in split.folds]
    assert len(tested) == 5
    assert all(counts[m] > 0 for counts in tested for m in MAGNIFICATIONS)
    assert [tested[0][m] for m in MAGNIFICATIONS] == [15, 103, 8, 4]  # the sample's README, fold 1


def test_a_file_name_in_two_sources_is_one_error_naming_both(tmp_path: Path):
    copy = tmp_path / "copy" / "histology_slides"
    first = next(MINI.rglob("*.png"))
    twin = copy / first.relative_to(MINI / "histology_slides")
    twin.parent.mkdir(parents=True)
    twin.symlink_to(first)
    with pytest.raises(DataError, match=f"{first.name} is in two sources: .*{MINI}.* and .*{tmp_path}"):
        link_union(tmp_path / "union", [MINI, tmp_path / "copy"])
    assert not (tmp_path / "union").exists()


def test_a_rerun_replaces_its_union_but_never_another_folder(union: Path, tmp_path: Path, capsys):
    first = open_dataset(union).id
    assert main(["data", "union", str(union), str(MINI), str(MORE), "--folds", str(FOLDS)]) == 0
    assert f"--data {union}" in capsys.readouterr().out
    assert open_dataset(union).id == first
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(UserError, match="not empty and not a union"):
        link_union(mine, [MINI])
    assert (mine / "notes.txt").read_text() == "keep"
