"""Where bhbench keeps its caches and records; one place so every module agrees."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_RESULTS = Path("leaderboard") / "results"


def cache_root() -> Path:
    """`BHBENCH_CACHE`, else `~/.cache/bhbench`: synthetic data, decoded images, features, studies."""
    env = os.environ.get("BHBENCH_CACHE")
    root = Path(env) if env else Path.home() / ".cache" / "bhbench"
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir(*parts: str) -> Path:
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
