"""Train/test splits: the official folds, generated patient-level splits, image-level k-fold,
the cross-stain split and its size-matched random twin, and the patient-leak check every split
goes through.

A split is saved as JSON (fold -> train/test file names) and identified by the hash of that
file; records carry the hash so the leaderboard can verify what a number was measured on.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from bhbench import stain
from bhbench.config import cache_dir
from bhbench.data.names import parse_name
from bhbench.errors import DataError, UserError
from bhbench.protocol import Protocol
from bhbench.util import atomic_write

N_FOLDS = 5
TEST_FRACTION = 0.3
_FOLD_FILE = re.compile(r"dsfold(\d+)\.txt$")


@dataclass
class Fold:
    index: int  # 1-based
    train: list[str]  # file names
    test: list[str]
    leaked_patients: list[str] = field(default_factory=list)


@dataclass
class Split:
    kind: str
    folds: list[Fold]
    source: str  # where it came from (fold files, or the generator and its seed)
    missing: list[str] = field(default_factory=list)  # fold lines naming files absent from the data

    @property
    def leaky(self) -> bool:
        return self.kind == "image-kfold" or any(f.leaked_patients for f in self.folds)

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "source": self.source,
            "folds": [{"fold": f.index, "train": sorted(f.train), "test": sorted(f.test)} for f in self.folds],
        }

    @property
    def hash(self) -> str:
        return split_hash(self.to_json())

    def save(self, folder: Path) -> Path:
        """Write the split file once (content-addressed) and return its path."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.kind}-{self.hash[:16]}.json"
        if not path.exists():  # processes planning one split at once write the same bytes
            atomic_write(path, json.dumps(self.to_json(), sort_keys=True, indent=1))
        return path


def split_hash(doc: dict) -> str:
    """SHA-256 of a split file's content. Compact separators, unlike `util.digest`: every committed
    record names its split by this hash, so the recipe stays."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def patient_of(filename: str) -> str:
    return parse_name(filename).patient


def leaked_patients(train: list[str], test: list[str]) -> list[str]:
    """Patient tokens that have images on both sides of a split."""
    return sorted({patient_of(f) for f in train} & {patient_of(f) for f in test})


# --- official protocol -------------------------------------------------------------------------


def find_fold_files(path: Path) -> list[Path]:
    """dsfold*.txt files or a Folds.csv at `path` (a file or a folder)."""
    path = Path(path).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: no such fold file or folder")
    txt = sorted(path.glob("dsfold*.txt"), key=lambda p: int(_FOLD_FILE.search(p.name).group(1)))  # type: ignore[union-attr]
    if txt:
        return txt
    if (path / "Folds.csv").is_file():
        return [path / "Folds.csv"]
    raise DataError(f"{path}: no dsfold1..5.txt or Folds.csv in this folder")


def read_official(path: Path) -> pd.DataFrame:
    """Official fold assignments as a table (fold, filename, magnification, group); never altered."""
    files = find_fold_files(path)
    rows: list[tuple[int, str, int, str]] = []
    for file in files:
        rows.extend(_read_folds_csv(file) if file.suffix.lower() == ".csv" else _read_dsfold(file))
    table = pd.DataFrame(rows, columns=["fold", "filename", "magnification", "group"])
    if table.empty:
        raise DataError(f"{path}: the fold files hold no entries")
    return table


def _bad(file: Path, lineno: int, message: str) -> DataError:
    return DataError(f"{file}, line {lineno}: {message}")


def _check_entry(file: Path, lineno: int, filename: str, mag: str, group: str) -> tuple[str, int, str]:
    try:
        name = parse_name(filename)
    except ValueError as exc:
        raise _bad(file, lineno, str(exc)) from None
    if group not in ("train", "test"):
        raise _bad(file, lineno, f"group {group!r} is neither 'train' nor 'test'")
    if not mag.isdigit() or int(mag) != name.magnification:
        raise _bad(file, lineno, f"magnification {mag!r} disagrees with the file name {filename}")
    return filename, int(mag), group


def _read_dsfold(file: Path) -> list[tuple[int, str, int, str]]:
    match = _FOLD_FILE.search(file.name)
    rows = []
    with open(file, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            fields = line.split("|")
            if len(fields) != 4:
                raise _bad(file, lineno, f"expected <file>|<mag>|<fold>|<train|test>, got {line!r}")
            filename, mag, fold, group = fields
            if not fold.isdigit() or (match and int(fold) != int(match.group(1))):
                raise _bad(file, lineno, f"fold {fold!r} does not match the file name {file.name}")
            entry = _check_entry(file, lineno, filename, mag, group)
            rows.append((int(fold), entry[0], entry[1], entry[2]))
    return rows


def _read_folds_csv(file: Path) -> list[tuple[int, str, int, str]]:
    rows = []
    with open(file, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"fold", "mag", "grp", "filename"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{file}: missing column(s) {', '.join(sorted(missing))} (need fold,mag,grp,filename)")
        for lineno, rec in enumerate(reader, 2):
            if not rec["fold"].isdigit():
                raise _bad(file, lineno, f"fold {rec['fold']!r} is not a number")
            filename, mag, group = _check_entry(file, lineno, Path(rec["filename"]).name, rec["mag"], rec["grp"])
            rows.append((int(rec["fold"]), filename, mag, group))
    return rows


def official_split(folds: pd.DataFrame, filenames: list[str]) -> Split:
    """Apply the official folds to the images present; lines for absent files are listed, not used."""
    present = set(filenames)
    missing = sorted(set(folds["filename"]) - present)
    out = []
    for index, part in folds.groupby("fold", sort=True):
        part = part[part["filename"].isin(present)]
        train = part.loc[part["group"] == "train", "filename"].tolist()
        test = part.loc[part["group"] == "test", "filename"].tolist()
        out.append(Fold(int(index), train, test, leaked_patients(train, test)))
    return Split("official", out, "official fold files", missing)


def official_leaks(folds: pd.DataFrame) -> dict[int, list[str]]:
    """Patient tokens on both sides of each official fold (the whole protocol, no data needed)."""
    return {
        int(index): leaked_patients(
            part.loc[part["group"] == "train", "filename"].tolist(),
            part.loc[part["group"] == "test", "filename"].tolist(),
        )
        for index, part in folds.groupby("fold", sort=True)
    }


# --- generated splits --------------------------------------------------------------------------


def patient_split(table: pd.DataFrame, seed: int = 0) -> Split:
    """Five seeded, patient-disjoint 70/30 splits, stratified by subtype at the patient level."""
    patients = table.groupby("patient")["subtype"].agg(lambda s: s.value_counts().index[0])
    folds = []
    for k in range(N_FOLDS):
        rng = np.random.default_rng([seed, k])
        test_patients: set[str] = set()
        for _subtype, group in patients.groupby(patients):
            names = sorted(group.index)
            n_test = int(round(TEST_FRACTION * len(names)))
            if len(names) >= 2:
                n_test = min(max(n_test, 1), len(names) - 1)  # both sides see every subtype
            test_patients.update(rng.permutation(names)[:n_test])
        in_test = table["patient"].isin(test_patients)
        train, test = table.loc[~in_test, "filename"].tolist(), table.loc[in_test, "filename"].tolist()
        folds.append(Fold(k + 1, train, test, leaked_patients(train, test)))
    return Split("patient", folds, f"generated, seed {seed}")


def image_kfold(table: pd.DataFrame, seed: int = 0) -> Split:
    """Random image-level stratified 5-fold, as some papers did. Leaks patients by design."""
    labels = table["subtype"].to_numpy()
    n_splits = min(N_FOLDS, int(pd.Series(labels).value_counts().min()))
    if n_splits < 2:
        raise DataError("image-kfold needs at least two images of every subtype")
    skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    names = table["filename"].to_numpy()
    folds = []
    for k, (tr, te) in enumerate(skf.split(names, labels)):
        train, test = names[tr].tolist(), names[te].tolist()
        folds.append(Fold(k + 1, train, test, leaked_patients(train, test)))
    return Split("image-kfold", folds, f"generated, seed {seed}")


# --- stain-shift splits ------------------------------------------------------------------------

STAIN_SAMPLE = 8  # images per patient whose stain estimates are pooled
STAIN_PIXELS = 100_000  # a larger image is estimated on a regular grid of about this many of its pixels
# Per-image Macenko estimates, by content key; the folder names the estimator so a change starts afresh.
STAIN_CACHE = ("stain-vectors", "macenko-100k")
Loader = Callable[[str], np.ndarray]  # content key -> RGB uint8 pixels


def image_stain(pixels: np.ndarray) -> np.ndarray | None:
    """Macenko's H and E optical-density vectors and their 99th-percentile concentrations (8 numbers),
    or None when the image has too little stained tissue to estimate them."""
    step = max(1, round(np.sqrt(pixels.shape[0] * pixels.shape[1] / STAIN_PIXELS)))
    try:  # on every step-th pixel: 4x faster at BreaKHis's size, no colour mixed
        with stain.quiet():
            found = stain.fit("macenko", pixels[::step, ::step])
    except stain.StainError:
        return None
    return np.concatenate([np.ravel(value) for value in found.values()])


def _cached_stain(key: str, load: Loader, cache: Path) -> np.ndarray | None:
    path = cache / f"{key}.json"
    if path.exists():
        found = json.loads(path.read_text())
        return None if found is None else np.array(found)
    estimate = image_stain(load(key))
    atomic_write(path, json.dumps(None if estimate is None else estimate.tolist()))  # null: no estimate
    return estimate


def patient_stains(table: pd.DataFrame, load: Loader, seed: int = 0, cache: Path | None = None) -> pd.DataFrame:
    """Each patient's stain: the median of `image_stain` over a seeded sample of their images. Reads
    pixels only (content keys), never a label; one row per patient, sorted."""
    cache = cache if cache is not None else cache_dir(*STAIN_CACHE)
    rows = {}
    for number, (patient, part) in enumerate(table.sort_values("filename").groupby("patient", sort=True)):
        keys = part["key"].to_numpy()
        rng = np.random.default_rng([seed, number])
        sample = rng.permutation(len(keys))[:STAIN_SAMPLE]
        found = [s for s in (_cached_stain(keys[i], load, cache) for i in sample) if s is not None]
        if not found:
            raise DataError(f"patient {patient}: none of {len(sample)} sampled images yields stain vectors")
        rows[patient] = np.median(found, axis=0)
    return pd.DataFrame.from_dict(rows, orient="index")


def stain_groups(stains: pd.DataFrame, seed: int = 0) -> tuple[list[str], list[str]]:
    """Two groups of patients by stain: seeded k-means on standardised stain features. Group A is the
    larger one (on a tie, the one holding the first patient), so fold 1 trains on more patients."""
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    if len(stains) < 2:
        raise UserError(f"the cross-stain split needs at least two patients; the data has {len(stains)}")
    x = StandardScaler().fit_transform(stains.to_numpy())
    cluster = KMeans(n_clusters=2, n_init=10, random_state=seed).fit_predict(x)
    groups = [sorted(stains.index[cluster == c]) for c in (0, 1)]
    a, b = sorted(groups, key=lambda g: (-len(g), g[0]))
    return a, b


def _patient_classes(table: pd.DataFrame, protocol: Protocol) -> pd.Series:
    """Each patient's class for the protocol's task (their most frequent one)."""
    labels = pd.Series(protocol.labels(table), index=table["patient"].to_numpy())
    return labels.groupby(level=0).agg(lambda s: s.value_counts().index[0])


def _check_classes(a: list[str], b: list[str], classes: pd.Series, protocol: Protocol) -> None:
    """Both stain groups must hold every class the data has, or a fold would test an unseen class."""
    wanted = set(classes)
    held = [set(classes[g]) for g in (a, b)]
    if held[0] == wanted and held[1] == wanted:
        return

    def names(found: set[int]) -> str:
        return ", ".join(protocol.classes[c] for c in sorted(found)) or "none"

    raise UserError(
        f"cross-stain split ({protocol.task} task): stain group A ({len(a)} patients) holds {names(held[0])}, "
        f"group B ({len(b)} patients) holds {names(held[1])}; each group needs every class ({names(wanted)})"
    )


def _fold(table: pd.DataFrame, index: int, train_patients: list[str]) -> Fold:
    in_train = table["patient"].isin(train_patients)
    train, test = table.loc[in_train, "filename"].tolist(), table.loc[~in_train, "filename"].tolist()
    return Fold(index, train, test, leaked_patients(train, test))


def _groups(table: pd.DataFrame, protocol: Protocol, load: Loader, cache: Path | None) -> tuple[list[str], list[str]]:
    a, b = stain_groups(patient_stains(table, load, protocol.seed, cache), protocol.seed)
    _check_classes(a, b, _patient_classes(table, protocol), protocol)
    return a, b


def cross_stain_split(table: pd.DataFrame, protocol: Protocol, load: Loader, cache: Path | None = None) -> Split:
    """Train on one stain group, test on the other, both ways (fold 1: A -> B, fold 2: B -> A).

    The groups come from every patient's pixels at once (`patient_stains`, `stain_groups`): no
    label, no method and no score takes part, so the grouping leaks nothing a method could learn
    from a test patient, the way a seeded patient shuffle does not. Clustering only each fold's
    training patients is not possible here, since the clustering is what chooses them."""
    a, b = _groups(table, protocol, load, cache)
    source = f"generated, seed {protocol.seed}: Macenko stain groups A ({len(a)} patients), B ({len(b)})"
    return Split("cross-stain", [_fold(table, 1, a), _fold(table, 2, b)], source)


def stain_random_split(table: pd.DataFrame, protocol: Protocol, load: Loader, cache: Path | None = None) -> Split:
    """The cross-stain split's control: random patients, stratified by class, with the same number
    of training patients in each fold (|A|, then |B|). Its headline minus the cross-stain one is the
    stain-shift penalty (`bhbench.leaderboard.robustness.penalties`)."""
    from sklearn.model_selection import train_test_split

    a, b = _groups(table, protocol, load, cache)
    classes = _patient_classes(table, protocol)
    folds = []
    for k, size in enumerate((len(a), len(b))):
        state = int(np.random.default_rng([protocol.seed, k]).integers(2**31))
        try:
            train, _ = train_test_split(classes.index, train_size=size, stratify=classes, random_state=state)
        except ValueError as exc:
            raise UserError(f"stain-random split ({protocol.task} task), fold {k + 1}: {exc}") from None
        folds.append(_fold(table, k + 1, sorted(train)))
    return Split("stain-random", folds, f"generated, seed {protocol.seed}: {len(a)} and {len(b)} training patients")


STAIN_SPLITS: dict[str, Callable[[pd.DataFrame, Protocol, Loader], Split]] = {
    "cross-stain": cross_stain_split,
    "stain-random": stain_random_split,
}


def restrict(split: Split, filenames: set[str], test_filenames: set[str] | None = None) -> Split:
    """The same split over a subset of images (a magnification filter); `test_filenames`, when
    given, filters the test side instead (training at some magnifications, testing at others)."""
    tests = filenames if test_filenames is None else test_filenames
    folds = [
        Fold(
            f.index,
            [n for n in f.train if n in filenames],
            [n for n in f.test if n in tests],
        )
        for f in split.folds
    ]
    for f in folds:
        f.leaked_patients = leaked_patients(f.train, f.test)
    return Split(split.kind, folds, split.source, split.missing)


# --- the protocol's subsets: one magnification, training and test magnifications, fewer patients ----


def _at(table: pd.DataFrame, mags: tuple[int, ...] | None) -> set[str]:
    """File names at these magnifications (None: all)."""
    rows = table if mags is None else table[table["magnification"].isin(mags)]
    return set(rows["filename"])


def draw_patients(classes: pd.Series, fraction: float, rng: np.random.Generator) -> list[str]:
    """A seeded, class-stratified share of the patients (index: patient, value: class): round(fraction x
    n) of each class's n patients, and at least one of every class, so no class drops out of training."""
    drawn: list[str] = []
    for _class, group in classes.groupby(classes, sort=True):
        names = sorted(group.index)
        drawn.extend(rng.permutation(names)[: max(1, round(fraction * len(names)))])
    return sorted(drawn)


def fewer_patients(split: Split, table: pd.DataFrame, protocol: Protocol) -> Split:
    """Each fold's training images from a share of its training patients (whole patients, drawn by
    `draw_patients` from the protocol's seed and the fold's index); the test side is left as it is."""
    classes = _patient_classes(table, protocol)
    folds = []
    for f in split.folds:
        patients = sorted({patient_of(n) for n in f.train})
        rng = np.random.default_rng([protocol.seed, f.index])
        kept = set(draw_patients(classes[patients], protocol.train_fraction, rng))
        train = [n for n in f.train if patient_of(n) in kept]
        folds.append(Fold(f.index, train, f.test, leaked_patients(train, f.test)))
    share = f"{protocol.train_fraction:g} of each fold's training patients, stratified, seed {protocol.seed}"
    source = f"{split.source}; {share}"
    return Split(split.kind, folds, source, split.missing)


def protocol_subset(split: Split, table: pd.DataFrame, protocol: Protocol) -> Split:
    """The split narrowed to what the protocol trains and tests on: one magnification, or training and
    test magnifications, then a share of the training patients. A protocol choice: the dataset's
    identity stays whole."""
    if protocol.magnification is not None:
        split = restrict(split, _at(table, (protocol.magnification,)))
    elif protocol.train_mags is not None or protocol.test_mags is not None:
        split = restrict(split, _at(table, protocol.train_mags), _at(table, protocol.test_mags))
    if protocol.train_fraction != 1:
        split = fewer_patients(split, table, protocol)
    return split
