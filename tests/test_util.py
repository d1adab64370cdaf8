"""The shared helpers: atomic writes, the canonical JSON digest, the CPU count."""

import os
from pathlib import Path

import pytest

from bhbench.util import THREADS_ENV, atomic_write, cpu_count, digest, thread_budget


def test_atomic_write_replaces_whole_files_and_creates_the_folder(tmp_path: Path):
    path = tmp_path / "new" / "record.json"
    atomic_write(path, "first")
    atomic_write(path, b"second", fsync=True)
    assert path.read_bytes() == b"second"
    assert [p.name for p in path.parent.iterdir()] == ["record.json"]  # no temporary file left


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path):
    path = tmp_path / "record.json"
    atomic_write(path, "old")
    with pytest.raises(TypeError):
        atomic_write(path, 42)  # type: ignore[arg-type]  (not bytes: fails after the temp file exists)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_digest_is_the_hash_committed_records_are_filed_under():
    # lbp_svm's default parameters; the committed records live in folders named by digest[:10].
    params = {"P": 8, "R": 1, "C": None, "gamma": None, "seed": 0, "cv_folds": 3}
    assert digest(params)[:10] == "92c865c315"
    assert digest(dict(reversed(list(params.items())))) == digest(params)  # key order does not matter
    assert digest({"path": Path("/x")}) == digest({"path": "/x"})  # non-JSON values by their str


def test_cpu_count_is_what_this_process_may_use():
    assert 1 <= cpu_count() <= (os.cpu_count() or 1)


def test_thread_budget_is_the_harness_share_when_set(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(THREADS_ENV, "3")
    assert thread_budget() == 3
    monkeypatch.setenv(THREADS_ENV, "0")
    assert thread_budget() == 1
    monkeypatch.delenv(THREADS_ENV)
    assert thread_budget() == cpu_count()
