"""`bhbench data download|synth|union|index|check`: fetch, make, join, summarise or check a dataset tree."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from bhbench.cli.common import path_arg
from bhbench.cli.output import console, out, progress_bar
from bhbench.errors import UserError
from bhbench.protocol import MAGNIFICATIONS

if TYPE_CHECKING:
    from bhbench.data.index import Dataset


def add_parser(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="synthesise, index or check a dataset").add_subparsers(
        dest="data_command", required=True, metavar="ACTION"
    )
    p = data.add_parser("download", help="download BreaKHis_v1 from its authors (resumable) and unpack it safely")
    p.add_argument("--to", type=path_arg, default=Path("."), help="folder to put BreaKHis_v1 in (default: here)")
    p.add_argument(
        "--url",
        default=None,
        help="archive to fetch, e.g. from a mirror (default: $BHBENCH_BREAKHIS_URL if set, else the authors' archive)",
    )
    p.add_argument("--keep-archive", action="store_true", help="keep the .tar.gz after unpacking it")
    p.set_defaults(func=fetch)
    p = data.add_parser("synth", help="generate the synthetic BreaKHis-like tree")
    p.add_argument("--out", type=path_arg, default=None, help="folder to write (default: the cache used by run)")
    p.add_argument(
        "--size",
        choices=("default", "breakhis"),
        default="default",
        help="breakhis: 700x460 images in BreaKHis_v1's count per subtype and magnification (7,909; ~5 GB)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--images-per-patient", type=int, default=None, help="per magnification")
    p.set_defaults(func=synth)
    p = data.add_parser(
        "union", help="join real BreaKHis trees into one by symbolic links (nothing copied), with their fold files"
    )
    p.add_argument("out", type=path_arg, metavar="OUT", help="folder to make (a union made before is replaced)")
    p.add_argument("sources", type=path_arg, nargs="+", metavar="SRC", help="BreaKHis trees to join")
    p.add_argument("--folds", type=path_arg, default=None, help="fold files to link beside the union, found by runs")
    p.set_defaults(func=union)
    p = data.add_parser("index", help="index a tree and summarise it")
    p.add_argument("--data", type=path_arg, default=None)
    p.add_argument("--csv", type=path_arg, default=None, help="also write the index table here")
    p.set_defaults(func=index)
    p = data.add_parser("check", help="report every problem of a tree and/or fold files in one pass")
    p.add_argument("--data", type=path_arg, default=None)
    p.add_argument("--folds", type=path_arg, default=None)
    p.set_defaults(func=check)


def fetch(args: argparse.Namespace) -> int:
    from bhbench.data import breakhis, download

    got = download.fetch(args.to, args.url, progress_bar, args.keep_archive)
    where = "already in" if got.already else "unpacked into"
    console.print(f"BreaKHis_v1 {where} {got.data}: {got.images:,} images")
    for line in breakhis.verdict(got.differences):
        console.print(line)
    console.print("(counted from file names; `bhbench data check` also decodes every image)")
    folds = f" --folds {got.folds}" if got.folds else ""
    if not got.folds:
        console.print(
            "The official folds (dsfold1.txt .. dsfold5.txt) are not in the archive; the dataset authors hand them "
            "out separately. Put them in a folder and add --folds FOLDER; without them bhbench uses its own "
            "patient-level splits."
        )
    out.print(f"bhbench data check --data {got.data}{folds}")
    out.print(f"bhbench run --method pftas_svm --data {got.data}{folds}")
    out.print(f"export BHBENCH_DATA={got.data}   # instead of --data, for every command")
    return 0


def synth(args: argparse.Namespace) -> int:
    from bhbench.data import synthetic

    given = {"width": args.width, "height": args.height, "images_per_patient": args.images_per_patient}
    base = synthetic.BREAKHIS_SIZED if args.size == "breakhis" else synthetic.SynthConfig()
    config = replace(base, seed=args.seed, **{k: v for k, v in given.items() if v is not None})
    if args.out is None:
        with progress_bar("generating images") as bump:  # the cached tree is reused: no calls then
            root = synthetic.default_root(config, bump)
    else:
        with progress_bar("generating images") as bump:
            root = synthetic.generate(args.out, config, bump)
    from bhbench.data.index import index_tree

    dataset = index_tree(root, "synthetic")
    out.print(f"synthetic BreaKHis-like tree at {root}: dataset {dataset.id}, {len(dataset.table)} images")
    if config == synthetic.SynthConfig() and dataset.id != synthetic.DEFAULT_DATASET_ID:
        # Same bytes everywhere is the promise; name the break rather than let rows silently diverge.
        console.print(f"[red]differs from the committed synthetic default {synthetic.DEFAULT_DATASET_ID}[/]")
        return 1
    return 0


def union(args: argparse.Namespace) -> int:
    from bhbench.data.sources import link_union, open_dataset

    tree = link_union(args.out, args.sources, args.folds)
    status = summarise(open_dataset(tree))
    folds = f", with the fold files of {args.folds}" if args.folds else ""
    console.print(f"{tree}: symbolic links to the images of {len(args.sources)} trees{folds}")
    out.print(f"bhbench run --method lbp_svm --data {tree}")
    return status


def index(args: argparse.Namespace) -> int:
    from bhbench.data.sources import open_dataset

    dataset = open_dataset(args.data)
    if args.csv:
        dataset.table.to_csv(args.csv, index=False)
        console.print(f"wrote {len(dataset.table)} rows to {args.csv}")
    return summarise(dataset)


def summarise(dataset: Dataset) -> int:
    """Images per subtype and magnification, the id and every problem; 1 when any is an error."""
    table = dataset.table
    summary = Table("class", "subtype", "patients", "images", *(f"{m}X" for m in MAGNIFICATIONS))
    for (cls, sub), part in table.groupby(["tumor_class", "subtype"]):
        counts = part["magnification"].value_counts()
        summary.add_row(
            cls,
            sub,
            str(part["patient"].nunique()),
            str(len(part)),
            *(str(counts.get(m, 0)) for m in MAGNIFICATIONS),
        )
    out.print(summary)
    out.print(f"{dataset.name}: {len(table)} images, {table['patient'].nunique()} patients, id {dataset.id}")
    for p in dataset.problems:
        console.print(f"{p.severity}: {p}")
    return 1 if dataset.errors else 0


def check(args: argparse.Namespace) -> int:
    from bhbench import datacheck

    if args.data is None and args.folds is None and not os.environ.get("BHBENCH_DATA"):
        raise UserError("give --data PATH and/or --folds PATH (or set BHBENCH_DATA)")
    with progress_bar("checking images") as bump:
        report = datacheck.check(args.data, args.folds, bump)
    for line in report.lines():
        out.print(line)
    return 1 if report.errors else 0
