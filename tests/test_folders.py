"""OS errors on the cache, results or data folder name the folder, the setting that chose it and what
to do; a full disk's error, which names no file, gets the file it was writing."""

from __future__ import annotations

import argparse
import errno

import pytest

from bhbench import util
from bhbench.cli import main
from bhbench.cli.folders import explain, folders


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**kw)


def test_a_read_only_cache_names_the_variable_that_chose_it(tmp_path, monkeypatch):
    monkeypatch.setenv("BHBENCH_CACHE", str(tmp_path / "ro"))
    exc = OSError(errno.EROFS, "Read-only file system", str(tmp_path / "ro" / "index"))
    line = explain(exc, folders(_args(results=None, data=None)))
    assert line.startswith("[Errno 30] Read-only file system")
    assert f"in the cache folder {tmp_path / 'ro'}" in line and "writable folder with BHBENCH_CACHE" in line


def test_the_innermost_folder_is_named_and_the_flag_that_chose_it(tmp_path, monkeypatch):
    monkeypatch.setenv("BHBENCH_CACHE", str(tmp_path))
    results = tmp_path / "runs"  # a results folder inside the cache: the results folder is meant
    exc = OSError(errno.ENOSPC, "No space left on device", str(results / "a" / "fold0.json"))
    line = explain(exc, folders(_args(results=[results], data=None)))
    assert f"in the results folder {results}: its disk is full" in line and "with --results" in line


def test_an_error_elsewhere_is_left_as_it_is(tmp_path, monkeypatch):
    monkeypatch.setenv("BHBENCH_CACHE", str(tmp_path / "cache"))
    exc = OSError(errno.EACCES, "Permission denied", "/etc/shadow")
    assert explain(exc, folders(_args(data=tmp_path / "data"))) == str(exc)


def test_a_full_disk_names_the_file_being_written(tmp_path, monkeypatch):
    def full(fd: int) -> None:  # where a full disk shows on a delayed-allocation file system
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.fsync", full)
    target = tmp_path / "results" / "fold0.json"
    with pytest.raises(OSError) as caught:
        util.atomic_write(target, b"x", fsync=True)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    monkeypatch.undo()
    assert not list(target.parent.iterdir())  # no temporary file left behind


def test_an_unusable_cache_ends_the_command_in_one_line(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("BHBENCH_CACHE", str(blocker / "cache"))
    assert main(["run", "--method", "majority", "--sandbox", "off", "--results", str(tmp_path / "out")]) == 2
    err = capsys.readouterr()
    text = err.out + err.err
    assert "Not a directory" in text and f"in the cache folder {blocker / 'cache'}: check BHBENCH_CACHE" in text
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1
