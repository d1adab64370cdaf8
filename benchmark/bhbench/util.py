"""Three things every part of bhbench (and the built-in methods) must do the same way: write a file
atomically, hash a JSON-able value, count the CPUs this process may use. Standard library only."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def atomic_write(path: Path, data: bytes | str | Callable[[BinaryIO], None], fsync: bool = False) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename, so a reader
    (another process, a rerun after a kill) sees the old file or the new one, never half of one.
    `data` may be a function writing into the open file (an array streamed, with no copy in memory).
    `fsync` also makes it survive a power cut: records want that, caches that can be recomputed do
    not need the cost. Creates the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes 0600; a shared results folder needs the user's umask
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode() if isinstance(data, str) else data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None:  # a full disk fails the write itself, which names no file
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@functools.cache
def umask() -> int:
    """The process umask, read without changing it where Linux shows it (setting it to read it
    would briefly affect every thread's new files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def digest(value: Any) -> str:
    """SHA-256 (hex) of `value` as canonical JSON: keys sorted, json's default separators, anything
    not JSON-able by its `str`. Stable across runs and machines; truncate it for short ids."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def cpu_count() -> int:
    """CPUs this process may run on: its affinity mask where the OS has one (a Slurm or container
    limit), else the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


THREADS_ENV = "BHBENCH_THREADS"  # the harness sets it to each worker's share when several share the cores


def thread_budget() -> int:
    """Threads a method may use: its share when the harness runs several workers side by side (they
    would oversubscribe the machine each taking every core), else every CPU it may run on."""
    share = os.environ.get(THREADS_ENV, "")
    return max(1, int(share)) if share.isdigit() else cpu_count()


def jsonable(value: Any) -> Any:
    """`json.dumps(default=...)` for what methods put in parameters and fit_info: numpy values, paths."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # a numpy scalar
        return value.item()
    if hasattr(value, "tolist"):  # a numpy array
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
