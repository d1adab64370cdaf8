"""Which dataset a command works on: `--data`, else `BHBENCH_DATA`, else the synthetic default."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from bhbench.data import synthetic
from bhbench.data.index import Dataset, Problem, index_tree, resolve_root

FOLD_FILES = ("dsfold1.txt", "Folds.csv")


def open_dataset(data: Path | None = None, progress: Callable[[int], None] | None = None) -> Dataset:
    data = data or (Path(os.environ["BHBENCH_DATA"]) if os.environ.get("BHBENCH_DATA") else None)
    if data is not None:
        generated = (resolve_root(data).parent / synthetic.SYNTHETIC_MARKER).is_file()
        return index_tree(data, "synthetic" if generated else "breakhis", progress)
    return synthetic_default(progress)


def synthetic_default(progress: Callable[[int], None] | None = None) -> Dataset:
    """The embedded synthetic default, generated on first use; a warning when its bytes drifted."""
    # The bar counts generated images; indexing the cached tree takes about a second.
    dataset = index_tree(synthetic.default_root(progress=progress), "synthetic")
    if dataset.id != synthetic.DEFAULT_DATASET_ID:
        message = (
            f"generated {dataset.id}, not {synthetic.DEFAULT_DATASET_ID} as the committed leaderboard's "
            "synthetic default: the package versions that write its bytes (numpy, opencv-python-headless) "
            "differ from the ones in its records, so its rows cannot be compared"
        )
        dataset.problems.append(Problem(str(dataset.root), message, "synthetic-drift", "warning"))
    return dataset


def folds_beside(dataset: Dataset) -> Path | None:
    """Official fold files next to the data (in histology_slides, BreaKHis_v1 or the folder above)."""
    if dataset.synthetic:
        return None
    for folder in (dataset.root, dataset.root.parent, dataset.root.parent.parent):
        if any((folder / name).is_file() for name in FOLD_FILES):
            return folder
    return None
