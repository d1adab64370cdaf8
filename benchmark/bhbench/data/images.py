"""Image decoding and the decoded-image cache.

Decoded images live on disk under their content hash, so a method handed only hashes can load
pixels without learning the file name (which, in BreaKHis, spells out the label). Resized copies
are cached beside the full-resolution array, so epochs and reruns never decode a PNG again.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bhbench.config import cache_dir
from bhbench.errors import DataError
from bhbench.util import atomic_write, cpu_count

Size = tuple[int, int]  # (height, width)

# Decoding is C code that releases the GIL, so threads use every core without pickling arrays.
_WORKERS = cpu_count()


def content_key(path: Path) -> str:
    """Stable key of a file's bytes; caches of pixels and features are keyed on it."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def decode(source: Path | bytes, name: str | None = None) -> np.ndarray:
    """Decode a PNG (path or bytes) to an RGB uint8 array; a bad file raises DataError naming it.

    OpenCV decodes a 700x460 BreaKHis PNG in 7.2 ms against Pillow's 8.5 (one thread, the same
    pixels); grey, palette and alpha images become RGB as with Pillow, 16-bit ones keep their high
    byte. EXIF orientation is ignored: pixels are used as stored."""
    import cv2  # imported on first use: `bhbench list` stays fast

    label = name or str(source if isinstance(source, Path) else "<bytes>")
    if isinstance(source, Path):
        try:
            source = source.read_bytes()
        except FileNotFoundError as exc:
            raise DataError(f"{label}: file not found") from exc
        except OSError as exc:
            raise DataError(f"{label}: cannot read ({exc.strerror or exc})") from exc
    bgr = None
    if source:
        try:
            bgr = cv2.imdecode(np.frombuffer(source, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        except cv2.error as exc:
            raise DataError(f"{label}: cannot decode image ({exc.err})") from exc
    if bgr is None:
        raise DataError(f"{label}: not a readable image (empty, corrupt or not a PNG)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def resize(img: np.ndarray, size: Size, square: bool = False) -> np.ndarray:
    """Resize to (height, width); `square` centre-crops to a square first (no distortion)."""
    import cv2  # imported on first use: `bhbench list` stays fast

    if square:
        h, w = img.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        img = img[top : top + side, left : left + side]
    if img.shape[:2] == tuple(size):
        return np.ascontiguousarray(img)
    return cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def _atomic_save(path: Path, array: np.ndarray) -> None:
    # Streamed into the file: through a BytesIO, a 700x460 image took 1 ms more (of ~1.7). A strided
    # array (Macenko's output is a transposed view) is copied first: numpy streams those in small
    # pieces, 20 ms a 700x460 image.
    atomic_write(path, lambda fh: np.save(fh, np.ascontiguousarray(array)))


_VARIANT = re.compile(r"(?P<key>[0-9a-f]+)_(?P<h>[0-9]+)x(?P<w>[0-9]+)(?P<square>s?)\.npy")


def variant_name(key: str, size: Size, square: bool) -> str:
    return f"{key}_{size[0]}x{size[1]}{'s' if square else ''}.npy"


def parse_variant(name: str) -> tuple[str, Size, bool] | None:
    """(key, size, square) of a resized copy's file name, or None for any other file."""
    match = _VARIANT.fullmatch(name)
    if match is None:
        return None
    return match["key"], (int(match["h"]), int(match["w"])), bool(match["square"])


class ImageStore:
    """Decoded images by key: `<root>/<k[:2]>/<k>.npy` with resized copies beside them; copies made
    by `load` go under `derived` when given. The harness's own store is keyed by content hash. A
    job's blind area (`bhbench.blind`) is keyed by handle: its `root` (read-only to the method) holds
    links to the harness's arrays and resized copies, `derived` the copies the method made itself."""

    def __init__(self, root: Path | None = None, derived: Path | None = None):
        self.root = Path(root) if root is not None else cache_dir("images")
        self.derived = Path(derived) if derived is not None else self.root

    def path(self, key: str, size: Size | None = None, square: bool = False) -> Path:
        """Where `load` reads the image (size None) or writes a resized copy it makes."""
        if size is None:
            return self.root / key[:2] / f"{key}.npy"
        return self.derived / key[:2] / variant_name(key, size, square)

    def shared_path(self, key: str, size: Size, square: bool) -> Path:
        """Where a resized copy is found beside the full-resolution array."""
        return self.root / key[:2] / variant_name(key, size, square)

    def variants(self, keys: Iterable[str]) -> dict[str, list[tuple[Size, bool]]]:
        """The resized copies stored beside each key's array (one folder listing per prefix)."""
        wanted = set(keys)
        found: dict[str, list[tuple[Size, bool]]] = {}
        for prefix in {k[:2] for k in wanted}:
            try:
                names = os.listdir(self.root / prefix)
            except FileNotFoundError:
                continue
            for name in names:
                parsed = parse_variant(name)
                if parsed is not None and parsed[0] in wanted:
                    found.setdefault(parsed[0], []).append(parsed[1:])
        return found

    def has(self, key: str) -> bool:
        return self.path(key).exists()

    def put(self, key: str, source: Path) -> None:
        """Decode `source` into the store unless it is there already."""
        path = self.path(key)
        if not path.exists():
            _atomic_save(path, decode(source))

    def save(self, key: str, array: np.ndarray) -> None:
        """Store pixels made by the harness (a normalised image) under `key`."""
        _atomic_save(self.path(key), array)

    def ensure(
        self,
        items: Iterable[tuple[str, Path]],
        progress: Callable[[int], None] | None = None,
    ) -> list[tuple[Path, str]]:
        """Decode every (key, path) not yet stored, in parallel; returns [(path, error)] of failures."""
        missing = [(k, p) for k, p in items if not self.has(k)]
        failures: list[tuple[Path, str]] = []

        def work(item: tuple[str, Path]) -> tuple[Path, str] | None:
            try:
                self.put(*item)
            except DataError as exc:
                return item[1], str(exc)
            return None

        with ThreadPoolExecutor(_WORKERS) as pool:
            for result in pool.map(work, missing):
                if result is not None:
                    failures.append(result)
                if progress is not None:
                    progress(1)
        return failures

    def load(self, key: str, size: Size | None = None, square: bool = False) -> np.ndarray:
        """Pixels of a stored image, resized (and cached at that size) when `size` is given."""
        if size is None:
            try:
                return np.load(self.path(key))
            except FileNotFoundError:
                raise DataError(f"image {key} is not in the image cache {self.root}") from None
        path = self.path(key, size, square)
        for candidate in dict.fromkeys((self.shared_path(key, size, square), path)):
            try:
                return np.load(candidate)
            except FileNotFoundError:
                pass
        img = resize(self.load(key), size, square)
        _atomic_save(path, img)
        return img
