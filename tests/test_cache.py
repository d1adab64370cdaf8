"""`bhbench cache`: what each part would free (hard links counted where they live), and clearing
only the parts a run makes again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bhbench import cache
from bhbench.cli import main
from bhbench.errors import UserError


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    (root / "images" / "ab").mkdir(parents=True)
    (root / "images" / "ab" / "abc.npy").write_bytes(b"x" * 1000)
    area = root / "blind" / "area1"
    (area / "pixels").mkdir(parents=True)
    (area / "cache").mkdir()
    os.link(root / "images" / "ab" / "abc.npy", area / "pixels" / "h.npy")  # staged: a link, no space
    (area / "cache" / "features.npy").write_bytes(b"f" * 500)
    (root / "secret").write_bytes(b"k" * 32)
    (root / "tuning").mkdir()
    (root / "tuning" / "optuna.log").write_bytes(b"s" * 70)
    monkeypatch.setenv("BHBENCH_CACHE", str(root))
    return root


def test_a_part_frees_only_files_no_other_part_links(folder: Path):
    parts, total = cache.usage(folder)
    by_name = {p.name: p for p in parts}
    assert by_name["blind"].frees == 500 and by_name["blind"].files == 2  # the staged link frees nothing
    assert by_name["images"].frees == 0  # still linked from the blind area
    assert total == 1000 + 500 + 32 + 70  # each file once
    assert by_name["blind"].clearable and not by_name["secret"].clearable and not by_name["tuning"].clearable


def test_clearing_blind_and_images_frees_both_and_keeps_the_secret_and_studies(folder: Path):
    assert cache.clear(["blind", "images"], folder) == 1500
    assert not (folder / "blind").exists() and not (folder / "images").exists()
    assert (folder / "secret").is_file() and (folder / "tuning" / "optuna.log").is_file()
    assert cache.clear(["blind", "checks"], folder) == 0  # parts no run has made (again) yet


def test_a_kept_part_is_refused_before_anything_is_removed(folder: Path):
    with pytest.raises(UserError, match="'secret' is kept"):
        cache.clear(["blind", "secret"], folder)
    assert (folder / "blind" / "area1" / "cache" / "features.npy").is_file()


def test_the_command_lists_and_clears_with_one_line_on_a_bad_part(folder: Path, capsys):
    assert main(["cache"]) == 0
    listing = capsys.readouterr().out
    assert "blind" in listing and "tuning" in listing and str(folder) in listing
    assert main(["cache", "--clear", "tuning"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'tuning' is kept" in err[0]
    assert main(["cache", "--clear", "blind"]) == 0
    assert "0.0 MB freed" in capsys.readouterr().err  # 500 bytes
    assert not (folder / "blind").exists()
