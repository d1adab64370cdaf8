"""Where bhbench keeps its caches and records; one place so every module agrees."""

from __future__ import annotations

import os
from pathlib import Path

# Installed packages provide methods through this entry-point group (bhbench's own baselines too).
ENTRY_POINT_GROUP = "bhbench.methods"
# The committed leaderboard's records. A run writes here only when told `--results leaderboard/results`.
COMMITTED_RESULTS = Path("leaderboard") / "results"
# A user's own records, ignored by git: experiments never touch the committed leaderboard.
SCRATCH_RESULTS = Path("bhbench-results")


def results_dir() -> Path:
    """`BHBENCH_RESULTS`, else `./bhbench-results`: where `run`, `tune` and `reproduce` write by default."""
    env = os.environ.get("BHBENCH_RESULTS")
    return Path(env).expanduser() if env else SCRATCH_RESULTS


def cache_location() -> Path:
    """`BHBENCH_CACHE`, else `~/.cache/bhbench`: synthetic data, decoded images, features, studies."""
    env = os.environ.get("BHBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bhbench"


def cache_root() -> Path:
    """The cache folder, created when missing."""
    root = cache_location()
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir(*parts: str) -> Path:
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
