"""Index a BreaKHis tree into a table, checking every name against its folders.

Header-level checks (names, folders, empty or unreadable files, sizes) happen here; a full
decode of every image happens when images are staged into the image cache (`stage`), so a
truncated PNG is caught before any training starts.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from bhbench.config import cache_dir
from bhbench.data import breakhis
from bhbench.data.images import ImageStore, content_key
from bhbench.data.names import ImageName, folder_disagreements, parse_name
from bhbench.errors import DataError
from bhbench.util import atomic_write, cpu_count

COLUMNS = [
    "relpath", "filename", "tumor_class", "subtype", "patient",
    "magnification", "seq", "width", "height", "key",
]  # fmt: skip
MIN_SIDE = 32  # smaller images cannot carry tissue texture at any magnification


@dataclass(frozen=True)
class Problem:
    path: str  # relative to the dataset root where possible
    message: str
    kind: str  # short category, counted by `bhbench data check`
    severity: str = "error"  # "error" stops a run (unless --skip-bad); "warning" is reported only
    count: int = 1  # files or lines this one message stands for (summaries count these)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Dataset:
    name: str  # "synthetic" or "breakhis"
    root: Path  # the histology_slides folder
    table: pd.DataFrame  # one row per usable image, COLUMNS
    problems: list[Problem] = field(default_factory=list)

    @property
    def synthetic(self) -> bool:
        return self.name == "synthetic"

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.table)

    @property
    def id(self) -> str:
        return f"{self.name}-{self.fingerprint[:8]}"

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def describe(self) -> dict:
        return {
            "name": self.name,
            "synthetic": self.synthetic,
            "images": int(len(self.table)),
            "patients": int(self.table["patient"].nunique()),
            # False: a real tree lacking (or exceeding) BreaKHis_v1's published counts; None: synthetic
            "complete": None if self.synthetic else breakhis.is_complete(self.table),
            "fingerprint": self.fingerprint,
            "id": self.id,
        }

    def path(self, relpath: str) -> Path:
        return self.root / relpath

    def drop(self, relpaths: set[str]) -> None:
        """Remove images (e.g. ones that failed to decode) from the table."""
        self.table = self.table[~self.table["relpath"].isin(relpaths)].reset_index(drop=True)


def fingerprint(table: pd.DataFrame) -> str:
    """Hash of the sorted (file name, content key) pairs: same images, same fingerprint."""
    digest = hashlib.sha256()
    for name, key in sorted(zip(table["filename"], table["key"], strict=True)):
        digest.update(f"{name}:{key}\n".encode())
    return digest.hexdigest()


def resolve_root(path: Path) -> Path:
    """Accept `BreaKHis_v1/`, its `histology_slides/`, or a folder holding either."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such folder")
    if not path.is_dir():
        raise DataError(f"{path}: is a file, not a BreaKHis folder")
    for candidate in (path, path / "histology_slides", path / "BreaKHis_v1" / "histology_slides"):
        if (candidate / "breast").is_dir():
            return candidate
    raise DataError(
        f"{path}: not a BreaKHis tree (expected BreaKHis_v1/histology_slides/breast/... "
        "or histology_slides/breast/... inside)"
    )


def _header(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def _row(relpath: str, name: ImageName, width: int, height: int, key: str) -> dict:
    return {
        "relpath": relpath,
        "filename": name.filename(),
        "tumor_class": name.tumor_class,
        "subtype": name.subtype,
        "patient": name.patient,
        "magnification": name.magnification,
        "seq": name.seq,
        "width": width,
        "height": height,
        "key": key,
    }


def _scan(root: Path, relpath: str, stat: os.stat_result) -> tuple[dict | None, list[Problem]]:
    path = root / relpath
    parts = tuple(Path(relpath).parts)
    try:
        name = parse_name(parts[-1])
    except ValueError as exc:
        return None, [Problem(relpath, str(exc), "unparseable name")]
    problems = [Problem(relpath, msg, "name/folder mismatch") for msg in folder_disagreements(parts, name)]
    if stat.st_size == 0:
        return None, [*problems, Problem(relpath, "empty file (0 bytes)", "empty file")]
    try:
        width, height = _header(path)
    except Exception as exc:  # PIL raises many types for garbage headers
        return None, [
            *problems,
            Problem(relpath, f"not a readable PNG image ({type(exc).__name__})", "unreadable image"),
        ]
    if min(width, height) < MIN_SIDE:
        problems.append(Problem(relpath, f"image is only {width}x{height} px (minimum side {MIN_SIDE})", "bad size"))
    if problems:
        return None, problems
    return _row(relpath, name, width, height, content_key(path)), []


class _IndexCache:
    """Per-tree memo of header reads and content hashes, reused while size and mtime match."""

    FIELDS = ["relpath", "size", "mtime_ns", "width", "height", "key"]

    def __init__(self, root: Path):
        digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
        self.path = cache_dir("index") / f"{digest}.csv"
        self.rows: dict[str, dict] = {}
        if self.path.exists():
            with open(self.path, newline="") as fh:
                self.rows = {r["relpath"]: r for r in csv.DictReader(fh)}

    def get(self, relpath: str, stat: os.stat_result) -> dict | None:
        row = self.rows.get(relpath)
        if row and int(row["size"]) == stat.st_size and int(row["mtime_ns"]) == stat.st_mtime_ns:
            return row
        return None

    def save(self, entries: list[tuple[dict, os.stat_result]]) -> None:
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, self.FIELDS)
        writer.writeheader()
        for row, stat in entries:
            writer.writerow(
                {
                    "relpath": row["relpath"],
                    "size": stat.st_size,
                    "mtime_ns": stat.st_mtime_ns,
                    "width": row["width"],
                    "height": row["height"],
                    "key": row["key"],
                }
            )
        atomic_write(self.path, text.getvalue())  # processes indexing one tree at once


def index_tree(path: Path, name: str = "breakhis", progress: Callable[[int], None] | None = None) -> Dataset:
    """Index every `*.png` below a BreaKHis tree; bad files become Problems, not exceptions."""
    root = resolve_root(path)
    relpaths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png") if p.is_file())
    if not relpaths:
        raise DataError(f"{root}: no PNG images found")
    memo = _IndexCache(root)

    def one(relpath: str) -> tuple[dict | None, list[Problem], os.stat_result]:
        stat = (root / relpath).stat()
        cached = memo.get(relpath, stat)
        if cached is not None:
            parsed = parse_name(Path(relpath).name)
            if not folder_disagreements(tuple(Path(relpath).parts), parsed):
                return (
                    _row(relpath, parsed, int(cached["width"]), int(cached["height"]), cached["key"]),
                    [],
                    stat,
                )
        row, problems = _scan(root, relpath, stat)
        if progress is not None:
            progress(1)
        return row, problems, stat

    rows, problems, good = [], [], []
    with ThreadPoolExecutor(cpu_count()) as pool:
        for row, found, stat in pool.map(one, relpaths):
            problems.extend(found)
            if row is not None:
                rows.append(row)
                good.append((row, stat))
    memo.save(good)
    table = pd.DataFrame(rows, columns=COLUMNS)
    problems.extend(_duplicates(table))
    problems.extend(_size_warnings(table))
    return Dataset(name, root, table, problems)


def _duplicates(table: pd.DataFrame) -> list[Problem]:
    dup = table[table["filename"].duplicated(keep=False)]
    return [Problem(r, "file name occurs more than once in the tree", "duplicate name") for r in dup["relpath"]]


def _size_warnings(table: pd.DataFrame) -> list[Problem]:
    """Sizes vary in real BreaKHis; flag only images far from the tree's usual size."""
    if table.empty:
        return []
    (mode_w, mode_h), _ = Counter(zip(table["width"], table["height"], strict=True)).most_common(1)[0]
    off = (np.abs(table["width"] - mode_w) > 0.1 * mode_w) | (np.abs(table["height"] - mode_h) > 0.1 * mode_h)
    return [
        Problem(
            r.relpath,
            f"unexpected size {r.width}x{r.height} (most are {mode_w}x{mode_h})",
            "unexpected size",
            "warning",
        )
        for r in table[off].itertuples()
    ]


def stage(dataset: Dataset, store: ImageStore, progress: Callable[[int], None] | None = None) -> list[Problem]:
    """Decode every image into the image cache (once); returns a Problem per image that fails."""
    items = [(k, dataset.path(r)) for k, r in zip(dataset.table["key"], dataset.table["relpath"], strict=True)]
    failures = store.ensure(items, progress)
    return [
        Problem(Path(p).relative_to(dataset.root).as_posix(), msg.split(": ", 1)[-1], "undecodable image")
        for p, msg in failures
    ]
