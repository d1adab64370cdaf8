"""What the cache folder holds, what clearing each part would free, and clearing the parts a run
can make again. Nothing prunes them on its own: blind areas are kept so that reruns and the other
methods of a fold reuse their features, and a day of runs can leave tens of GB."""

from __future__ import annotations

import os
import shutil
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bhbench.config import cache_location
from bhbench.errors import UserError

# Parts the next run that needs them makes again; `bhbench cache --clear` removes only these.
DERIVED = {
    "blind": "blind areas, one per fold: links to staged pixels, the methods' own caches (features, resized images)",
    "images": "decoded pixels and resized copies of every image read",
    "synthetic": "generated synthetic datasets (the default data)",
    "tables": "leaderboard tables kept by their records' hashes",
    "index": "dataset index tables",
    "stain-vectors": "per-image stain vectors (cross-stain split)",
    "checks": "scratch space of `bhbench check`",
}
# Never cleared here: the key of every blind handle, and tuning studies (work, not derived data).
KEPT = {
    "secret": "the installation secret that keys blind handles",
    "tuning": "optuna studies of `bhbench tune` (resumed by the next tune)",
}


@dataclass(frozen=True)
class Part:
    name: str
    about: str
    frees: int  # bytes freed by removing this part alone (files linked from elsewhere stay)
    files: int
    clearable: bool


def _files(path: Path) -> list[os.stat_result]:
    """Regular files under `path` (or `path` itself), not following symbolic links."""
    if not path.is_dir() or path.is_symlink():
        try:
            st = path.lstat()
        except FileNotFoundError:  # a part no run has made yet
            return []
        return [st] if stat.S_ISREG(st.st_mode) else []
    found = []
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                st = os.lstat(os.path.join(folder, name))
            except FileNotFoundError:  # removed by a concurrent run while we walked
                continue
            if stat.S_ISREG(st.st_mode):
                found.append(st)
    return found


def _exclusive_bytes(stats: list[os.stat_result]) -> int:
    """Bytes of the files all of whose hard links are among `stats`, each file counted once."""
    links = Counter((st.st_dev, st.st_ino) for st in stats)
    sizes = {(st.st_dev, st.st_ino): (st.st_size, st.st_nlink) for st in stats}
    return sum(size for inode, (size, nlink) in sizes.items() if links[inode] >= nlink)


def usage(root: Path | None = None) -> tuple[list[Part], int]:
    """Each part of the cache folder and the folder's total size (each file counted once: blind
    areas link into `images`, so the parts' `frees` need not add up to it)."""
    root = root or cache_location()
    entries = sorted(root.iterdir()) if root.is_dir() else []
    parts, everything = [], []
    for entry in entries:
        stats = _files(entry)
        everything += stats
        about = DERIVED.get(entry.name) or KEPT.get(entry.name) or "not made by bhbench"
        parts.append(Part(entry.name, about, _exclusive_bytes(stats), len(stats), entry.name in DERIVED))
    total = sum(size for size in {(st.st_dev, st.st_ino): st.st_size for st in everything}.values())
    return parts, total


def clear(names: list[str], root: Path | None = None) -> int:
    """Remove the named derived parts; bytes freed. A run using one of them at the time fails the
    folds it was on (rerunning redoes them): clear while no run is going."""
    root = root or cache_location()
    names = list(dict.fromkeys(names))  # a part named twice is walked once, its links counted once
    for name in names:
        if name not in DERIVED:
            why = KEPT.get(name, "not a part bhbench makes")
            raise UserError(f"cache part {name!r} is kept, not cleared: {why}. Clearable: {', '.join(DERIVED)}")
    stats = [st for name in names for st in _files(root / name)]
    for name in names:
        if (root / name).is_dir():
            shutil.rmtree(root / name)
    return _exclusive_bytes(stats)
