"""What keeps a test set blind: secret order, opaque handles, one area per train/test partition.

A method is untrusted code, so nothing it is handed may be joined to a table that names images
(their file names spell out class, subtype and patient):

- **Handles.** A method addresses images by handle = HMAC(installation secret, partition, content
  hash). Without the secret (kept in the harness's cache folder, which the sandbox does not mount) a
  handle matches nothing the harness writes: manifests and index tables hold content hashes and
  file names, never handles.
- **Areas.** A partition is one fold's exact (training images, test images) pair. Its area
  `<cache>/blind/<id>/` holds `pixels/` (hardlinks into the image store, named by handle; read-only
  to the method under the sandbox) and `cache/` (the method's writable cache: resized images,
  features). Same partition, same handles and area: reruns and every method of that fold share
  derived data. Another partition (another fold, split, or tuning's inner split) gets other handles
  and another area, so what a method stored while an image was a training image (its label) cannot
  be looked up where that image is a test image.
- **Order.** The harness draws a fresh permutation per (run, fold) from the operating system's
  randomness, hands the test images over in that order, and undoes it before scoring; the
  permutation lives only in the harness's memory.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bhbench.config import cache_dir, cache_root
from bhbench.data.images import ImageStore, parse_variant
from bhbench.data.index import Dataset
from bhbench.data.sources import PrivateCohort

if TYPE_CHECKING:
    from bhbench.splits import Fold

SECRET_FILE = "secret"
_SECRET_BYTES = 32
_HANDLE_HEX = 32  # 128 bits: collisions are out of reach for any dataset


def installation_secret() -> bytes:
    """The key of every handle, created once per cache folder (mode 0600)."""
    path = cache_root() / SECRET_FILE
    if not path.exists():
        # Written whole under a temporary name, then linked: a concurrent run reads all or nothing.
        tmp = path.with_name(f"{SECRET_FILE}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(_SECRET_BYTES))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another run created it first; use theirs
        finally:
            tmp.unlink()
    return path.read_bytes()


def partition_id(train: Iterable[str], test: Iterable[str]) -> str:
    """Identity of one train/test partition: the hash of its sorted file names."""
    blob = json.dumps([sorted(train), sorted(test)], separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def unshuffle(rows: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Rows handed over in `order` (row j is item `order[j]`) put back in the items' own order."""
    out = np.empty_like(rows)
    out[order] = rows
    return out


def secret_rng() -> np.random.Generator:
    """A generator seeded from the operating system, never from the run's seed: nothing written
    anywhere (record, split file, command line) lets a method recompute what it drew."""
    return np.random.default_rng(secrets.randbits(128))


class Area:
    """The blind area of one partition: handles for its images and the folders a worker reads."""

    def __init__(self, partition: str, secret: bytes | None = None):
        self._secret = secret if secret is not None else installation_secret()
        self._partition = partition
        self.root = cache_dir("blind", self._mac("area")[:_HANDLE_HEX])
        self.pixels = self.root / "pixels"
        self.cache = self.root / "cache"
        self._keys: dict[str, str] = {}  # handle -> content key of what was staged

    def _mac(self, *parts: str) -> str:
        message = "|".join((self._partition, *parts)).encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def handle(self, content_key: str) -> str:
        return self._mac("image", content_key)[:_HANDLE_HEX]

    @property
    def store(self) -> ImageStore:
        """The worker's view: full-resolution pixels by handle, resized copies in its own cache."""
        return ImageStore(self.pixels, derived=self.cache / "images")

    def stage(self, content_keys: Sequence[str], source: ImageStore) -> list[str]:
        """Handles of the images with these content keys, their pixels and the resized copies the
        harness holds linked into the area."""
        target = self.store
        variants = source.variants(content_keys)
        handles = []
        for key in content_keys:
            handle = self.handle(key)
            self._keys[handle] = key
            path = target.path(handle)
            if not path.exists():
                _link(source.path(key), path)
            for size, square in variants.get(key, ()):
                shared = target.shared_path(handle, size, square)
                if not shared.exists():
                    _link(source.shared_path(key, size, square), shared)
            handles.append(handle)
        return handles

    def harvest(self, source: ImageStore) -> int:
        """Make, in the harness's store, the resized copies the method made in this area, so the
        next folds' areas link them instead of resizing again (1315 synthetic images: ~3.5 s per
        fold). Made anew from the harness's own arrays, never copied from the method's files."""
        made = 0
        for path in self.store.derived.glob("*/*.npy"):
            parsed = parse_variant(path.name)
            key = self._keys.get(parsed[0]) if parsed else None
            if parsed is None or key is None or source.shared_path(key, *parsed[1:]).exists():
                continue
            source.load(key, *parsed[1:])
            made += 1
        return made


def _link(src: Path, dst: Path) -> None:
    """A hardlink costs no space; a copy where the file system refuses one."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f"{dst.name}.{secrets.token_hex(8)}.tmp")
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)  # concurrent stagers of one partition link the same file: last one wins


def forget(dataset: Dataset, folds: Iterable[Fold]) -> None:
    """Remove what a private cohort left in the cache once its run is over: its decoded images and
    resized copies in the image store, the blind areas of its `folds` (links to those images and
    the methods' caches) and its index table. Nothing of it is then left for a later run (or disk)
    to find; its tree goes with the dataset object."""
    if not isinstance(dataset, PrivateCohort):
        return
    for fold in folds:
        shutil.rmtree(Area(partition_id(fold.train, fold.test)).root, ignore_errors=True)
    store = ImageStore()
    for key in dataset.table["key"]:
        for path in (store.root / key[:2]).glob(f"{key}*.npy"):
            path.unlink(missing_ok=True)
    digest = hashlib.sha256(str(dataset.root.resolve()).encode()).hexdigest()[:16]
    (cache_dir("index") / f"{digest}.csv").unlink(missing_ok=True)
