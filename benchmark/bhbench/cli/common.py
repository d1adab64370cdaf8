"""Argument helpers shared by several commands."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bhbench.cli.output import console, progress_bar
from bhbench.errors import UserError
from bhbench.protocol import MAGNIFICATIONS


def parse_value(text: str) -> Any:
    """`--set` values: JSON where it parses (numbers, true/false, null, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"True": True, "False": False, "None": None}.get(text, text)


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    sets = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected key=value")
        sets[key.strip()] = parse_value(value.strip())
    return sets


def discover(args: argparse.Namespace) -> None:
    """Register the methods: bhbench's baselines imported, every other plugin's and submission's card
    read from its source. No submission code runs in this (the harness's) process."""
    from bhbench import registry

    registry.discover(args.submissions)
    for err in registry.discovery_errors():
        # A card error already begins with `file:line:`.
        where = "" if err.message.startswith(err.source) else f"{err.source}: "
        console.print(f"[yellow]warning:[/] skipped {where}{err.message}", markup=True, highlight=False)


def prepare(args: argparse.Namespace, options: Any) -> Any:
    """Open the dataset, stage its images and build the split, saying what was found (run, tune)."""
    from bhbench import runner
    from bhbench.data.sources import folds_beside, open_dataset
    from bhbench.protocol import Protocol

    given = args.data or os.environ.get("BHBENCH_DATA")
    step = f"indexing the images in {given}" if given else "preparing the synthetic dataset (generated on first use)"
    private = getattr(args, "synthetic_seed", None)
    if private is not None:
        step = "drawing a private synthetic cohort (generated for this run, never cached)"
    with progress_bar(step) as bump:
        dataset = open_dataset(args.data, bump, private)
    folds = args.folds or folds_beside(dataset)
    split = args.split or ("official" if folds else "patient")
    protocol = Protocol(args.task, args.regime, split, args.mag, args.seed)
    label = "synthetic (generated BreaKHis-like data)" if dataset.synthetic else f"BreaKHis at {dataset.root}"
    if private is not None:  # commit now, reveal after the run (`reveal`)
        label = f"synthetic, private cohort {dataset.id} (seed commitment {dataset.commitment})"
    console.print(f"dataset: {label}: {len(dataset.table)} images, {dataset.table['patient'].nunique()} patients")
    for p in dataset.problems:
        if p.severity == "warning":
            console.print(f"[yellow]warning:[/] {p}")
    with progress_bar("decoding images into the cache", len(dataset.table)) as bump:
        plan = runner.make_plan(dataset, protocol, folds, options, bump)
    console.print(f"protocol: {protocol.title} ({len(plan.split.folds)} folds, {plan.split.source})")
    for p in plan.skipped:
        console.print(f"[yellow]skipped (--skip-bad):[/] {p}")
    if plan.split.missing:
        console.print(
            f"[yellow]note:[/] the fold files name {len(plan.split.missing)} image(s) not in this data "
            f"(e.g. {plan.split.missing[0]}); folds use the {len(plan.dataset.table)} present"
        )
    for fold, patients in plan.leaks.items():
        console.print(f"[red]leak:[/] fold {fold}: patient(s) {', '.join(patients)} in both train and test")
    if plan.split.kind == "image-kfold":
        console.print("[red]leaky protocol:[/] image-level folds put images of one patient on both sides")
    return plan


def reveal(plan: Any) -> None:
    """After a run on a private cohort: its seed, which anyone can check against the commitment printed
    before the run and rerun to get the same cohort; what it left in the cache is removed."""
    from bhbench.blind import partition_id
    from bhbench.data.sources import PrivateCohort, forget

    dataset = plan.dataset
    if isinstance(dataset, PrivateCohort):
        forget(dataset, [partition_id(f.train, f.test) for f in plan.split.folds])
        how = "drawn from the operating system for this run" if dataset.drawn else "as given"
        console.print(
            f"synthetic, private cohort {dataset.id}: seed {dataset.seed} ({how}); "
            f"commitment {dataset.commitment} = sha256('bhbench-private-cohort:<seed>')"
        )


def _gigabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of GB, got {text!r}") from None
    if not value > 0.25:
        raise argparse.ArgumentTypeError(f"{text} GB is too little for a Python worker (at least 0.25)")
    return value


def path_arg(text: str) -> Path:
    return Path(text).expanduser()


def protocol_args(p: argparse.ArgumentParser) -> None:
    """What to run on and how (shared by run and tune)."""
    p.add_argument("--task", choices=["binary", "subtype"], default="binary")
    p.add_argument("--regime", choices=["mi", "ms"], default="mi",
                   help="mi: one model over all magnifications; ms: one model per magnification")  # fmt: skip
    p.add_argument("--split", choices=["official", "patient", "image-kfold"], default=None,
                   help="default: official if fold files are given or beside the data, else patient")  # fmt: skip
    p.add_argument("--mag", type=int, choices=MAGNIFICATIONS, default=None, help="use one magnification only")
    p.add_argument("--data", type=path_arg, default=None,
                   help="BreaKHis_v1, its histology_slides, or a folder holding them (default: $BHBENCH_DATA, "
                        "else the synthetic dataset)")  # fmt: skip
    p.add_argument("--folds", type=path_arg, default=None, help="official dsfold1..5.txt folder or Folds.csv")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="set a method parameter")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None, help="for deep methods")
    p.add_argument("--timeout", type=float, default=None, help="seconds one (method, fold) may take")
    memory_arg(p)
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable or misnamed images (listed in records)")
    p.add_argument("--seed", type=int, default=0, help="seed of generated splits")
    p.add_argument("--synthetic-seed", default=None, metavar="SEED|secret",
                   help="a private synthetic cohort: the synthetic default's distribution (or that of the generated "
                        "tree --data names) from another seed; 'secret' draws 128 bits from the OS, commits to "
                        "them before the run and reveals them after")  # fmt: skip


def sandbox_arg(p: argparse.ArgumentParser) -> None:
    from bhbench.sandbox import MODES

    p.add_argument("--sandbox", choices=MODES, default=None,
                   help="run each method's worker in a bubblewrap sandbox: no network, nothing visible but its "
                        "code and its fold's images (on: refuse without one; auto: when bwrap works here; "
                        "default $BHBENCH_SANDBOX, else auto)")  # fmt: skip


def sandbox_of(args: argparse.Namespace) -> str:
    """The worker launcher --sandbox asks for, checked once before any image is decoded."""
    from bhbench import sandbox

    launcher, notice = sandbox.choose(args.sandbox or sandbox.default_mode())
    if notice:
        console.print(f"[yellow]{notice}[/]")
    return launcher


def memory_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--memory", type=_gigabytes, default=None, metavar="GB",
                   help="memory (address space) one method's worker may use (default: 80%% of RAM shared "
                        "among the workers, at least 2 GB)")  # fmt: skip
