"""Embeddings of a frozen timm model, computed once per (weights, image, transform) and cached.

The cache is the hand-crafted features' one (`<cache>/features/<spec id>/...`, one vector per image
key): the spec id hashes the model name, its weights (`init`: imagenet, hub:<name>, random:seed=<n>
or file:<sha256>), the transform (size, resize, normalisation) and the library versions, so changed
weights or preprocessing never reuse stale vectors. Image sets without keys (the harness timing FPS)
bypass it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import timm
import torch
from timm.data import resolve_data_config

from bhbench import TestSet, TrainSet
from bhbench.errors import UserError
from bhbench.util import digest, thread_budget
from bhbench_baselines.deep.backbones import create_model, init_label
from bhbench_baselines.deep.training import Inputs, resolve_device
from bhbench_baselines.handcrafted.features import FeatureCache


def _classes_named(kwargs: dict[str, Any]) -> dict[str, Any]:
    """`--set model_kwargs=...` is JSON, which names classes only by name: a `*_layer` value naming a
    `timm.layers` class or layer factory becomes it (Virchow's and UNI2's `"mlp_layer": "SwiGLUPacked"`)."""
    import timm.layers

    def resolve(key: str, value: Any) -> Any:
        found = getattr(timm.layers, value, None) if key.endswith("_layer") and isinstance(value, str) else None
        return found if callable(found) else value  # SwiGLUPacked is a partial, not a class

    return {k: resolve(k, v) for k, v in kwargs.items()}


@dataclass(frozen=True)
class EmbeddingSpec:
    """What one cached embedding depends on (FeatureCache's spec: `id`, `dim`, `as_dict`)."""

    model: str
    init: str
    input_size: int
    square: bool  # centre-crop to a square before resizing (else the whole image is resized)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dim: int
    versions: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def id(self) -> str:
        return "embed-" + digest(self.as_dict())[:16]


@dataclass
class Embedding:
    matrix: np.ndarray  # (n_images, dim) float32
    computed: int  # images run through the model (cache misses)
    seconds: float  # spent computing them


class Embedder:
    """A frozen timm model in evaluation mode, with its own preprocessing (timm's data config)."""

    def __init__(
        self, model: str, weights: str, model_kwargs: dict[str, Any], device: str, batch_size: int, seed: int = 0
    ):
        torch.set_num_threads(thread_budget())
        self.name = model
        self.device = resolve_device(device)
        # Random weights are drawn from `seed`, not from wherever the process's generator happens to
        # be, and the cache names them by it: two probes of one model in one process (the check
        # battery) drew different networks, and the second read the first one's cached embeddings.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = create_model(model, weights, num_classes=0, **_classes_named(model_kwargs))
        self.model = self.model.eval().to(self.device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        cfg = resolve_data_config(model=self.model)
        height, width = cfg["input_size"][1:]
        if height != width:
            raise UserError(f"model {model!r} expects {height}x{width} inputs; the probe feeds square ones")
        self.inputs = Inputs(int(height), False, tuple(cfg["mean"]), tuple(cfg["std"]), self.device)
        self.batch_size = batch_size
        with torch.inference_mode():
            dim = self._forward(torch.zeros(1, 3, height, width, device=self.device)).shape[1]
        versions = f"timm {timm.__version__}, torch {torch.__version__.split('+')[0]}"
        self.init = init_label(model, weights)
        drawn = f"{self.init}:seed={seed}" if weights == "random" else self.init
        self.spec = EmbeddingSpec(
            model, drawn, int(height), False, self.inputs.mean, self.inputs.std, int(dim), versions
        )
        self.parameters = sum(p.numel() for p in self.model.parameters())

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 3, h, w) normalised images -> (n, dim) pooled embeddings."""
        out = self.model(x)
        if out.ndim != 2:
            raise UserError(f"model {self.name!r} gives outputs of shape {tuple(out.shape)}, not (n, dim)")
        return out

    def embed(self, images: TrainSet | TestSet) -> Embedding:
        """Embeddings of every image: cached vectors read, the others computed and cached."""
        keys = images.cache_keys
        cache = FeatureCache(self.spec) if keys is not None else None  # type: ignore[arg-type]
        matrix = np.empty((len(images), self.spec.dim), np.float32)
        todo = []
        for i in range(len(images)):
            vector = cache.load(keys[i]) if cache is not None and keys is not None else None
            if vector is None:
                todo.append(i)
            else:
                matrix[i] = vector
        started = time.perf_counter()
        with torch.inference_mode():
            for start in range(0, len(todo), self.batch_size):
                idx = todo[start : start + self.batch_size]
                out = self._forward(self.inputs.tensor(images, idx)).float().cpu().numpy()
                matrix[idx] = out
                if cache is not None and keys is not None:
                    for i, vector in zip(idx, out, strict=True):
                        cache.save(keys[i], vector)
        return Embedding(matrix, len(todo), time.perf_counter() - started)
