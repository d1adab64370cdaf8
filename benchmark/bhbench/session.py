"""The steps every command of `bhbench.api` shares: register the methods, check their parameters,
choose the sandbox, open the data and plan the folds, and, after a private cohort's run, reveal its
seed. Each reports through the caller's callback (`bhbench.events`), never prints."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bhbench.events import Level, Message, Progress, StillWorking, step
from bhbench.protocol import Protocol

if TYPE_CHECKING:  # `bhbench list` registers methods through here: the runner loads only to run
    from bhbench import runner


def say(progress: Progress, text: str, label: str = "", level: Level = "info") -> None:
    progress(Message(text, label, level))


def discover(submissions: Path | None, progress: Progress) -> None:
    """Register the methods: bhbench's baselines imported, every other plugin's and submission's card
    read from its source. No submission code runs in this (the harness's) process."""
    from bhbench import registry

    registry.discover(submissions)
    for err in registry.discovery_errors():
        # A card error already begins with `file:line:`.
        where = "" if err.message.startswith(err.source) else f"{err.source}: "
        say(progress, f"skipped {where}{err.message}", "warning", "warning")


def method_params(names: Sequence[str], params: Mapping[str, Any] | None, device: str | None) -> dict[str, dict]:
    """Each method's checked parameters (`params` as `--set` gives them: a key goes to every method that
    has it, and one no method has is an error). Every command checks them here, before any job."""
    from bhbench import params as declared

    return declared.resolve(names, params or {}, device)


def launcher(sandbox: str | None, progress: Progress) -> str:
    """The worker launcher a sandbox mode asks for (None: $BHBENCH_SANDBOX, else auto), checked once
    before any image is decoded."""
    from bhbench import sandbox as sandboxes

    chosen, notice = sandboxes.choose(sandbox or sandboxes.default_mode())
    if notice:
        say(progress, notice, level="warning")
    return chosen


@dataclass(frozen=True)
class Where:
    """What a run, tuning or audit works on: the data (a BreaKHis tree; None: $BHBENCH_DATA, else the
    synthetic default), its official fold files (None: found beside the data), and the protocol: task,
    regime ("mi": one model over all magnifications, "ms": one per magnification), split (None:
    official when there are fold files, else patient), one magnification only, the seed of generated
    splits; synthetic_seed draws a private synthetic cohort instead ("secret": a seed drawn here,
    committed to before the run and revealed after); stain_norm ("macenko", "reinhard") normalises
    every image a method is handed to a target fitted on its fold's training images; train_fraction
    trains on that share of each fold's training patients; train_mags and test_mags (None: all) train
    one model at some magnifications and test it at others."""

    data: Path | None = None
    folds: Path | None = None
    task: str = "binary"
    regime: str = "mi"
    split: str | None = None
    mag: int | None = None
    seed: int = 0
    synthetic_seed: str | None = None  # a private synthetic cohort ("secret": drawn here)
    stain_norm: str = "none"
    train_fraction: float = 1.0
    train_mags: tuple[int, ...] | None = None
    test_mags: tuple[int, ...] | None = None


def prepare(where: Where | None, options: runner.Options, progress: Progress) -> runner.Plan:
    """Open the dataset, stage its images and build the split (None: the synthetic default under the
    default protocol), saying what was found."""
    import os

    where = where or Where()
    from bhbench import runner
    from bhbench.data.sources import folds_beside, open_dataset

    given = where.data or os.environ.get("BHBENCH_DATA")
    label = f"indexing the images in {given}" if given else "preparing the synthetic dataset (generated on first use)"
    private = where.synthetic_seed
    if private is not None:
        label = "drawing a private synthetic cohort (generated for this run, never cached)"
    with step(progress, label) as bump:
        dataset = open_dataset(where.data, bump, private)
    folds = where.folds or folds_beside(dataset)
    protocol = Protocol(
        where.task,
        where.regime,
        where.split or ("official" if folds else "patient"),
        where.mag,
        where.seed,
        where.stain_norm,
        where.train_fraction,
        where.train_mags,
        where.test_mags,
    )
    name = "synthetic (generated BreaKHis-like data)" if dataset.synthetic else f"BreaKHis at {dataset.root}"
    if private is not None:  # commit now, reveal after the run (`reveal`)
        name = f"synthetic, private cohort {dataset.id} (seed commitment {dataset.commitment})"
    say(progress, f"dataset: {name}: {len(dataset.table)} images, {dataset.table['patient'].nunique()} patients")
    for p in dataset.problems:
        if p.severity == "warning":
            say(progress, str(p), "warning", "warning")
    with step(progress, "decoding images into the cache", len(dataset.table)) as bump:
        plan = runner.make_plan(dataset, protocol, folds, options, bump)
    say(progress, f"protocol: {protocol.title} ({len(plan.split.folds)} folds, {plan.split.source})")
    for p in plan.skipped:
        say(progress, str(p), "skipped (--skip-bad)", "warning")
    if plan.split.missing:
        say(
            progress,
            f"the fold files name {len(plan.split.missing)} image(s) not in this data "
            f"(e.g. {plan.split.missing[0]}); folds use the {len(plan.dataset.table)} present",
            "note",
            "warning",
        )
    for fold, patients in plan.leaks.items():
        say(progress, f"fold {fold}: patient(s) {', '.join(patients)} in both train and test", "leak", "error")
    if plan.split.kind == "image-kfold":
        say(progress, "image-level folds put images of one patient on both sides", "leaky protocol", "error")
    return plan


@dataclass(frozen=True)
class Revealed:
    """A private cohort's seed, told after its run: anyone can check it against the commitment told
    before the run, and rerun it to get the same cohort."""

    cohort: str
    seed: int
    drawn: bool  # drawn from the operating system for this run (else given)
    commitment: str

    def __str__(self) -> str:
        how = "drawn from the operating system for this run" if self.drawn else "as given"
        return (
            f"synthetic, private cohort {self.cohort}: seed {self.seed} ({how}); "
            f"commitment {self.commitment} = sha256('bhbench-private-cohort:<seed>')"
        )


def reveal(plan: runner.Plan) -> Revealed | None:
    """After a run on a private cohort: its seed, and what it left in the cache removed."""
    from bhbench.blind import forget
    from bhbench.data.sources import PrivateCohort

    dataset = plan.dataset
    if not isinstance(dataset, PrivateCohort):
        return None
    forget(dataset, plan.split.folds)
    return Revealed(dataset.id, dataset.seed, dataset.drawn, dataset.commitment)


HEARTBEAT_SECONDS = 30.0  # a fold may fit for minutes: say the run is alive when nothing finishes for this long


class Heartbeat:
    """Reports `StillWorking` while no (method, fold) job finishes, so a long fold is not mistaken
    for a hang. (Progress from inside a fold would need the worker to report it.)"""

    def __init__(self, total: int, progress: Progress):
        self.total, self.done, self.last, self.progress = total, 0, time.monotonic(), progress
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def beat(self, done: int) -> None:
        self.done, self.last = done, time.monotonic()

    def _watch(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            quiet = time.monotonic() - self.last
            if quiet >= HEARTBEAT_SECONDS:
                self.progress(StillWorking(self.done, self.total, quiet))

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


@contextmanager
def collected_warnings() -> Iterator[dict[str, None]]:
    """Library warnings raised here while the jobs run (scoring a fold that lacks a class...),
    collected to be shown once each at the end instead of once per fold (the usual filters apply)."""
    caught: dict[str, None] = {}
    with warnings.catch_warnings(record=True) as seen:
        yield caught
    caught.update(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in seen))
