"""Descriptor features of an image set: computed once per (image, descriptor spec), in parallel,
and kept on disk for every later classifier and run.

Layout: `<cache>/features/<spec id>/<key[:2]>/<key>.npy`, one small vector per image key
(`cache_keys`), plus `spec.json` saying what the folder holds. A changed parameter, code version or
library version gives a new spec id (a new folder). In the harness's jobs the keys are handles and
`<cache>` is the fold's own cache (see `bhbench.blind`): every classifier and rerun of a fold
shares its features, and each fold computes its own, since a key shared across folds would let a
method carry a label from the fold where an image is trained on to the one where it is tested.
Image sets without keys (the harness timing FPS) bypass the cache entirely.

Extraction runs on threads, one image per task: the descriptors spend most of their time in numpy
and OpenCV code that releases the GIL (scikit-image's LBP and mahotas' Haralick features hold it),
and threads also work inside the harness's worker process, which, being daemonic, may not start
processes of its own.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

from bhbench import TestSet, TrainSet, cache_dir
from bhbench.util import atomic_write, thread_budget
from bhbench_baselines.handcrafted.descriptors import DescriptorSpec


class FeatureCache:
    """Vectors of one descriptor spec, keyed by image key."""

    def __init__(self, spec: DescriptorSpec):
        self.spec = spec
        self.root = cache_dir("features", spec.id)
        about = self.root / "spec.json"
        if not about.exists():
            atomic_write(about, json.dumps(spec.as_dict(), indent=1))

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def load(self, key: str) -> np.ndarray | None:
        """The cached vector, or None when absent or unreadable (then it is recomputed)."""
        try:
            vector = np.load(self.path(key))
        except (OSError, ValueError):
            return None
        return vector if vector.shape == (self.spec.dim,) else None

    def save(self, key: str, vector: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, vector)
        atomic_write(self.path(key), buffer.getvalue())


@dataclass
class Extraction:
    features: list[np.ndarray]  # one (n_images, dim) matrix per spec, in the order asked
    computed: int  # descriptor evaluations done (cache misses); 0 on a warm cache


def extract(images: TrainSet | TestSet, specs: Sequence[DescriptorSpec], jobs: int | None = None) -> Extraction:
    """Feature matrices of `images` for each spec: cached vectors are read, the others computed
    (every missing descriptor of an image from one load of its pixels) and cached."""
    keys = images.cache_keys
    caches = [FeatureCache(s) for s in specs] if keys is not None else []
    matrices = [np.empty((len(images), s.dim)) for s in specs]
    todo: dict[int, list[int]] = {}  # image index -> specs to compute
    for i in range(len(images)):
        for j in range(len(specs)):
            vector = caches[j].load(keys[i]) if keys is not None else None
            if vector is None:
                todo.setdefault(i, []).append(j)
            else:
                matrices[j][i] = vector

    def work(i: int) -> tuple[int, list[np.ndarray]]:
        rgb = images.image(i)
        return i, [specs[j].compute(rgb) for j in todo[i]]

    if not todo:
        return Extraction(matrices, 0)
    workers = max(1, min(jobs or thread_budget(), len(todo)))
    with _single_threaded_libraries(), _progress(len(todo), specs) as bump, ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(work, i) for i in todo]
        try:
            for future in as_completed(futures):
                i, vectors = future.result()
                for j, vector in zip(todo[i], vectors, strict=True):
                    matrices[j][i] = vector
                    if keys is not None:
                        caches[j].save(keys[i], vector)
                bump()
        except BaseException:  # a bad image or Ctrl-C: do not finish the queue first
            for future in futures:
                future.cancel()
            raise
    return Extraction(matrices, sum(len(v) for v in todo.values()))


@contextmanager
def _single_threaded_libraries() -> Iterator[None]:
    """One BLAS and one OpenCV thread per extraction thread: nested pools oversubscribe the cores
    (OpenBLAS spinning on a busy machine made Haralick features 15x slower in measurements)."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        cv2.setNumThreads(previous)


@contextmanager
def _progress(total: int, specs: Sequence[DescriptorSpec]) -> Iterator[Callable[[], None]]:
    """A transient rich bar on an interactive stderr for jobs worth watching; silent otherwise."""
    if total < 16 or not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import Progress

    label = f"extracting {', '.join(s.name for s in specs)}"
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)
