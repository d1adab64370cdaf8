"""Which dataset a command works on: `--data`, else `BHBENCH_DATA`, else the synthetic default; or,
with `--synthetic-seed`, a private synthetic cohort."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bhbench.data import synthetic
from bhbench.data.index import Dataset, Problem, index_tree, resolve_root
from bhbench.errors import DataError, UserError

FOLD_FILES = ("dsfold1.txt", "Folds.csv")
PRIVATE_NAME = "synthetic-private"  # dataset ids `synthetic-private-<fingerprint>`: never a public id
UNION_MARKER = "UNION.txt"  # beside a union's histology_slides/: names its sources, lets a rerun replace it


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


def link_union(out: Path, sources: Sequence[Path], folds: Path | None = None) -> Path:
    """One BreaKHis tree at `out` holding every image of the real trees `sources` as a symbolic link under
    its original relative path, with the fold files of `folds` linked beside it (so runs find them):
    several trees as one `--data`, nothing copied. Its dataset id is its images', wherever they lie."""
    out = out.expanduser().absolute()
    _check_replaceable(out)
    links = _image_links(sources)
    from bhbench.splits import find_fold_files  # here: splits loads scikit-learn, which `bhbench list` must not

    fold_links = {_fold_link_name(f): f.resolve() for f in find_fold_files(folds)} if folds is not None else {}
    out.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        build.chmod(0o755)  # mkdtemp's 0700 would hide the union from other users
        _write_union(build, links, fold_links, sources)
        if out.exists():
            shutil.rmtree(out)  # a union bhbench made (checked above): links and folders only
        build.rename(out)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return out


def _write_union(build: Path, links: dict[str, Path], fold_links: dict[str, Path], sources: Sequence[Path]) -> None:
    for relpath, target in links.items():
        (build / "histology_slides" / relpath).parent.mkdir(parents=True, exist_ok=True)
        (build / "histology_slides" / relpath).symlink_to(target)
    for name, target in fold_links.items():
        (build / name).symlink_to(target)
    named = "".join(f"  {Path(s).expanduser().resolve()}\n" for s in sources)
    (build / UNION_MARKER).write_text(f"Made by `bhbench data union`: symbolic links to the images of\n{named}")


def _check_replaceable(out: Path) -> None:
    if out.is_dir() and any(out.iterdir()) and not (out / UNION_MARKER).is_file():
        raise UserError(f"{out}: a folder that is not empty and not a union bhbench made; choose another")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file, not a folder for the union")


def _image_links(sources: Sequence[Path]) -> dict[str, Path]:
    """Relative path in the union -> the real file, for every PNG of every source; a file name found twice
    (the folds address images by name) is an error naming both files."""
    links: dict[str, Path] = {}
    seen: dict[str, Path] = {}
    for source in sources:
        root = resolve_root(source)
        if (root.parent / synthetic.SYNTHETIC_MARKER).is_file():
            raise UserError(f"{source}: a generated synthetic tree; a union joins real BreaKHis trees")
        for path in sorted(root.rglob("*.png")):
            if path.name in seen:
                raise DataError(f"{path.name} is in two sources: {seen[path.name]} and {path}")
            seen[path.name] = path
            links[path.relative_to(root).as_posix()] = path.resolve()
    return links


def _fold_link_name(file: Path) -> str:
    """dsfoldN.txt keep their names; a Folds.csv form is linked as Folds.csv, the name runs look for."""
    return "Folds.csv" if file.suffix.lower() == ".csv" else file.name


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
