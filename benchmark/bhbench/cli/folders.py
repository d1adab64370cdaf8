"""An OS error on a folder bhbench was told to use, said with that folder, the setting that chose it
and what to do: "[Errno 30] Read-only file system: '.../index'" alone does not say that the cache is
read-only because BHBENCH_CACHE points at a read-only mount."""

from __future__ import annotations

import argparse
import errno
import os
from dataclasses import dataclass
from pathlib import Path

from bhbench import config


@dataclass(frozen=True)
class Folder:
    role: str  # "cache folder", "results folder", "data folder"
    path: Path
    setting: str  # the flag or variable that chose it, as the user would change it


def _chosen(value: Path | None, flag: str, variable: str, default: Path | None) -> tuple[Path | None, str]:
    if value is not None:
        return value, flag
    if os.environ.get(variable):
        return Path(os.environ[variable]).expanduser(), variable
    return default, f"{flag} or {variable}"


def folders(args: argparse.Namespace) -> list[Folder]:
    """The folders this command line uses, with what chose each."""
    cache_setting = "BHBENCH_CACHE" if os.environ.get("BHBENCH_CACHE") else "BHBENCH_CACHE (unset: the default)"
    found = [Folder("cache folder", config.cache_location(), cache_setting)]
    results = getattr(args, "results", None)
    for path in results if isinstance(results, list) else [results]:
        where, setting = _chosen(path, "--results", "BHBENCH_RESULTS", config.results_dir())
        if where is not None:
            found.append(Folder("results folder", where, setting))
    data, setting = _chosen(getattr(args, "data", None), "--data", "BHBENCH_DATA", None)
    if data is not None:
        found.append(Folder("data folder", data, setting))
    return found


def _within(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


ADVICE = {
    errno.ENOSPC: "its disk is full: free space there, or choose a folder on another disk with {setting}",
    errno.EDQUOT: "your disk quota there is used up: free space, or choose another folder with {setting}",
    errno.EROFS: "it is on a read-only file system: choose a writable folder with {setting}",
    errno.EACCES: "this user may not use it: choose a folder you own with {setting}",
    errno.EPERM: "this user may not use it: choose a folder you own with {setting}",
    errno.ENOENT: "it does not exist: check {setting}",
}


def explain(exc: OSError, used: list[Folder]) -> str:
    """One line: the error, and when it hit one of `used`, which one, what chose it and what to do."""
    text = str(exc)
    if exc.filename is None:
        return text
    path = Path(os.fsdecode(exc.filename))
    # The innermost folder wins: a results folder inside the cache is the results folder.
    hit = [f for f in used if _within(path, f.path)]
    if not hit:
        return text
    folder = max(hit, key=lambda f: len(f.path.resolve().parts))
    advice = ADVICE.get(exc.errno or 0, "check {setting}").format(setting=folder.setting)
    return f"{text} — in the {folder.role} {folder.path}: {advice}"
