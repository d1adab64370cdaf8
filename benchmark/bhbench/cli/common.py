"""Argument helpers shared by several commands."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bhbench.cli.output import Render
from bhbench.errors import UserError
from bhbench.protocol import MAGNIFICATIONS, SPLIT_KINDS, STAIN_NORMS


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


def api_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The `bhbench.api` keywords of `protocol_args` and `sandbox_arg` (run, tune, audit), and the renderer."""
    from bhbench.session import Where

    protocol = (args.task, args.regime, args.split, args.mag, args.seed, args.synthetic_seed, args.stain_norm)
    where = Where(args.data, args.folds, *protocol, args.train_fraction, args.train_mags, args.test_mags)
    return {
        "where": where,
        "params": parse_sets(args.set),
        "device": args.device,
        "timeout": args.timeout,
        "memory_gb": args.memory,
        "skip_bad": args.skip_bad,
        "sandbox": args.sandbox,
        "submissions": args.submissions,
        "progress": Render(),
    }


def _gigabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of GB, got {text!r}") from None
    if not value > 0.25:
        raise argparse.ArgumentTypeError(f"{text} GB is too little for a Python worker (at least 0.25)")
    return value


def _magnifications(text: str) -> tuple[int, ...]:
    """--train-mags / --test-mags: magnifications separated by commas ("40,100" or "40X,100X"); the
    protocol checks which are known."""
    try:
        return tuple(int(item.strip().upper().removesuffix("X")) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected magnifications such as 40,100, got {text!r}") from None


def path_arg(text: str) -> Path:
    return Path(text).expanduser()


def protocol_args(p: argparse.ArgumentParser) -> None:
    """What to run on and how (shared by run and tune)."""
    p.add_argument("--task", choices=["binary", "subtype"], default="binary")
    p.add_argument("--regime", choices=["mi", "ms"], default="mi",
                   help="mi: one model over all magnifications; ms: one model per magnification")  # fmt: skip
    p.add_argument("--split", choices=SPLIT_KINDS, default=None,
                   help="default: official if fold files are given or beside the data, else patient")  # fmt: skip
    p.add_argument("--mag", type=int, choices=MAGNIFICATIONS, default=None, help="use one magnification only")
    p.add_argument("--data", type=path_arg, default=None,
                   help="BreaKHis_v1, its histology_slides, or a folder holding them (default: $BHBENCH_DATA, "
                        "else the synthetic dataset)")  # fmt: skip
    p.add_argument("--folds", type=path_arg, default=None, help="official dsfold1..5.txt folder or Folds.csv")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="set a method parameter")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None, help="for deep methods")
    timeout_arg(p, "seconds one (method, fold) job may take (default: by the method's family, see README)")
    p.add_argument("--verbose", "-v", action="store_true", help="print the whole traceback of each failed job")
    memory_arg(p)
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable or misnamed images (listed in records)")
    p.add_argument("--seed", type=int, default=0, help="seed of generated splits")
    p.add_argument("--stain-norm", choices=STAIN_NORMS, default="none",
                   help="normalise every image a method is handed to a stain target fitted on its fold's "
                        "training images (torchstain's estimators; a protocol of its own)")  # fmt: skip
    p.add_argument("--train-fraction", type=float, default=1.0, metavar="F",
                   help="train on this share of each fold's training patients (whole patients, stratified by "
                        "class, seeded); test patients unchanged: a point of a learning curve")  # fmt: skip
    p.add_argument("--train-mags", type=_magnifications, default=None, metavar="40,100",
                   help="train at these magnifications only (mi regime; default all)")  # fmt: skip
    p.add_argument("--test-mags", type=_magnifications, default=None, metavar="400",
                   help="score at these magnifications only (mi regime; default all): with --train-mags, "
                        "cross-magnification transfer")  # fmt: skip
    p.add_argument("--synthetic-seed", default=None, metavar="SEED|secret",
                   help="a private synthetic cohort: the synthetic default's distribution (or that of the generated "
                        "tree --data names) from another seed; 'secret' draws 128 bits from the OS, commits to "
                        "them before the run and reveals them after")  # fmt: skip


def _seconds(text: str) -> float:
    """--timeout: seconds, or 0 / none for no limit."""
    if text.strip().lower() == "none":
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, 0 or none, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text}: a time limit cannot be negative (0 or none: no limit)")
    return value


def timeout_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS", help=f"{what}; 0 or none: no limit")


def sandbox_arg(p: argparse.ArgumentParser) -> None:
    from bhbench.sandbox import MODES

    p.add_argument("--sandbox", choices=MODES, default=None,
                   help="run each method's worker in a bubblewrap sandbox: no network, nothing visible but its "
                        "code and its fold's images (on: refuse without one; auto: when bwrap works here; "
                        "default $BHBENCH_SANDBOX, else auto)")  # fmt: skip


def memory_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--memory", type=_gigabytes, default=None, metavar="GB",
                   help="memory (address space) one method's worker may use (default: 80%% of RAM shared "
                        "among the workers, at least 2 GB)")  # fmt: skip
