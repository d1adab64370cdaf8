"""Which dataset a command works on: `--data`, else `BHBENCH_DATA`, else the synthetic default; or,
with `--synthetic-seed`, a private synthetic cohort."""

from __future__ import annotations

import dataclasses
import os
import shutil
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bhbench.data import synthetic
from bhbench.data.index import Dataset, Problem, index_tree, resolve_root
from bhbench.errors import UserError

FOLD_FILES = ("dsfold1.txt", "Folds.csv")
PRIVATE_NAME = "synthetic-private"  # dataset ids `synthetic-private-<fingerprint>`: never a public id


def open_dataset(
    data: Path | None = None,
    progress: Callable[[int], None] | None = None,
    synthetic_seed: str | None = None,
) -> Dataset:
    if synthetic_seed is not None:
        return private_cohort(synthetic_seed, data, progress)
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


@dataclass
class PrivateCohort(Dataset):
    """A synthetic cohort drawn from a seed other than the public one (`--synthetic-seed`): the same
    distribution as the public set, images no method can know in advance. Its tree lives in a
    temporary folder removed when the dataset is (or at exit); it is never cached."""

    seed: int = 0
    drawn: bool = False  # the seed was drawn from the operating system here (`secret`), not given

    @property
    def synthetic(self) -> bool:
        return True

    @property
    def commitment(self) -> str:
        return synthetic.seed_commitment(self.seed)


def parse_seed(text: str) -> tuple[int, bool]:
    """`--synthetic-seed`: a non-negative integer, or `secret` for a 128-bit draw from the OS."""
    if text.strip().lower() == "secret":
        return synthetic.draw_private_seed(), True
    try:
        seed = int(text, 0)
    except ValueError:
        raise UserError(f"--synthetic-seed {text!r}: expected a non-negative integer or 'secret'") from None
    if seed < 0 or seed.bit_length() > synthetic.PRIVATE_SEED_BITS:
        raise UserError(f"--synthetic-seed {text!r}: expected 0 to 2**{synthetic.PRIVATE_SEED_BITS} - 1")
    return seed, False


def private_cohort(
    seed_text: str, data: Path | None = None, progress: Callable[[int], None] | None = None
) -> PrivateCohort:
    """A private cohort of the synthetic default's distribution, or of the generated tree `data` names
    (its size and image counts, from its marker: tests use the tiny one)."""
    seed, drawn = parse_seed(seed_text)
    base = synthetic.SynthConfig()
    if data is not None:
        base = synthetic.config_of(resolve_root(data).parent)  # type: ignore[assignment]
        if base is None:
            raise UserError(
                f"--synthetic-seed draws a synthetic cohort; {data} is not a tree the generator made "
                "(leave out --data for the synthetic default's distribution)"
            )
    top = synthetic.generate_private(dataclasses.replace(base, seed=seed), progress)
    try:
        found = index_tree(top, PRIVATE_NAME)
    except BaseException:
        shutil.rmtree(top.parent, ignore_errors=True)
        raise
    cohort = PrivateCohort(found.name, found.root, found.table, found.problems, seed=seed, drawn=drawn)
    weakref.finalize(cohort, shutil.rmtree, str(top.parent), True)
    return cohort
