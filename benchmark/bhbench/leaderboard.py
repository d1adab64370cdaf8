"""Build the Markdown leaderboard and CSV from records alone, verifying every record first.

Every metric is recomputed from the stored per-image predictions and the labels the file names
carry; a record whose numbers, split, dataset fingerprint or predicted images do not match what
is stored beside it is refused with the reason.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from bhbench import results
from bhbench.data.index import fingerprint
from bhbench.data.names import parse_name
from bhbench.method import MAGNIFICATIONS, TASK_CLASSES
from bhbench.metrics import METRICS, mean_std, score_all

PUBLISHED = [
    # (method, 40X, 100X, 200X, 400X, source) — patient recognition rate, %, DESIGN.md section 7
    ("PFTAS, best of 1-NN/QDA/SVM/RF", "83.8 ± 2.0", "82.1 ± 4.9", "85.1 ± 3.1", "82.3 ± 3.8",
     "Spanhol et al. 2016, as quoted by later work"),
    ("single-task CNN, magnification-independent", "83.08 ± 2.08", "83.17 ± 3.51", "84.63 ± 2.72",
     "82.10 ± 4.42", "Bayramoglu et al. 2016, as quoted by later work"),
    ("single-task CNN, mean over magnifications", "83.25", "", "", "", "Bayramoglu et al. 2016"),
    ("multi-task CNN, malignancy / magnification, mean", "82.13 / 80.10", "", "", "", "Bayramoglu et al. 2016"),
    ("InceptionV3 + Fast BCNN, image accuracy, binary / 8-class", "99.24 / 95.95", "", "", "",
     "Liu et al. 2020, image-level 5-fold (leaky protocol)"),
]  # fmt: skip
TOLERANCE = 1e-6


@dataclass
class Checked:
    path: Path
    record: dict | None
    problems: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.record is not None and not self.problems


def _labels(filenames: list[str], task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    names = [parse_name(f) for f in filenames]
    if task == "binary":
        y = np.array([n.tumor_class == "M" for n in names], dtype=int)
    else:
        y = np.array([TASK_CLASSES["subtype"].index(n.subtype) for n in names], dtype=int)
    return y, np.array([n.patient for n in names]), np.array([n.magnification for n in names])


def _differs(a: object, b: object, where: str = "") -> str | None:
    """First path at which two metric trees differ beyond rounding, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{where}{key}"
            found = _differs(a[key], b[key], f"{where}{key}.")
            if found:
                return found
        return None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) and math.isnan(b):
            return None
        return None if abs(a - b) <= TOLERANCE else where.rstrip(".")
    return None if a == b else where.rstrip(".")


def verify(path: Path, record: dict | None, root: Path) -> Checked:
    """Check one record against its predictions, split file and dataset manifest."""
    if record is None:
        return Checked(path, None, ["unreadable record (not JSON of this schema)"])
    if record.get("status") != "ok":
        return Checked(path, record)
    problems: list[str] = []
    try:
        blob = (path.parent / record["predictions"]["file"]).read_bytes()
    except (OSError, KeyError, TypeError):
        return Checked(path, record, ["predictions file is missing"])
    if hashlib.sha256(blob).hexdigest() != record["predictions"]["sha256"]:
        problems.append("predictions file does not match the hash in the record")
    frame = pd.read_csv(io.BytesIO(blob))  # the bytes just hashed, not a second read
    dataset_dir = root / record["dataset"]["id"]
    split_file = dataset_dir / "splits" / record["split"]["file"]
    try:
        split = json.loads(split_file.read_text())
        split_hash = hashlib.sha256(json.dumps(split, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    except (OSError, json.JSONDecodeError):
        split, split_hash = None, None
    if split is None:
        problems.append(f"split file {split_file.name} is missing")
    elif split_hash != record["split"]["hash"]:
        problems.append(f"split hash does not match the split file {split_file.name}")
    elif split is not None:
        fold = next((f for f in split["folds"] if f["fold"] == record["split"]["fold"]), None)
        if fold is None or sorted(fold["test"]) != sorted(frame["filename"]):
            problems.append("predictions do not cover exactly the test images of the fold")
    try:
        manifest = pd.read_csv(dataset_dir / "manifest.csv")
        if fingerprint(manifest) != record["dataset"]["fingerprint"]:
            problems.append("dataset fingerprint does not match the dataset manifest")
    except OSError:
        problems.append("dataset manifest is missing")
    task = record["protocol"]["task"]
    classes = TASK_CLASSES[task]
    try:
        proba = frame[[f"p_{c}" for c in classes]].to_numpy(dtype=float)
        y, patients, mags = _labels(frame["filename"].tolist(), task)
        aux_cols = [c for c in frame.columns if c.startswith("aux_magnification_")]
        aux = {"magnification": frame[aux_cols].to_numpy(dtype=float)} if aux_cols else None
        recomputed = score_all(y, proba, patients, mags, aux)
    except (KeyError, ValueError) as exc:
        return Checked(path, record, [*problems, f"predictions cannot be scored ({exc})"])
    where = _differs(recomputed, record.get("metrics"))
    if where:
        problems.append(f"stored metric {where} differs from the one recomputed from the predictions")
    return Checked(path, record, problems)


def check_all(root: Path) -> list[Checked]:
    return [verify(p, r, root) for p, r in results.all_records(root)]


def pct(values: list[float]) -> str:
    mean, std = mean_std(values)
    if math.isnan(mean):
        return "–"
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if len(values) > 1 else f"{100 * mean:.1f}"


def _num(values: list[float | None]) -> str:
    mean, _ = mean_std([v for v in values if v is not None])
    return "–" if math.isnan(mean) else f"{mean:.1f}"


def _dataset_title(desc: dict) -> str:
    if desc["synthetic"]:
        return f"Synthetic BreaKHis-like data (generated, not real tissue; {desc['images']} images)"
    return f"BreaKHis ({desc['images']} images, {desc['patients']} patients, fingerprint {desc['fingerprint'][:8]})"


def _protocol_title(p: dict) -> str:
    regime = {"mi": "magnification-independent", "ms": "magnification-specific"}[p["regime"]]
    liu = {
        ("mi", "binary"): "MIBC",
        ("ms", "binary"): "MSBC",
        ("mi", "subtype"): "MIFC",
        ("ms", "subtype"): "MSFC",
    }
    mag = f", {p['magnification']}X only" if p.get("magnification") else ""
    return f"{liu[(p['regime'], p['task'])]} — {p['task']} task, {regime}, {p['split']} split{mag}"


def aggregate(method: str, recs: list[dict]) -> dict:
    """Per-fold values of every metric of one method's successful records, ready for mean ± std."""
    overall = [r["metrics"]["overall"] for r in recs]
    row: dict = {"method": method, "folds": len(recs)}
    row["patient_rr"] = [o["patient_rr"] for o in overall]
    for mag in MAGNIFICATIONS:
        row[f"{mag}X"] = [
            r["metrics"]["by_magnification"][str(mag)]["patient_rr"]
            for r in recs
            if str(mag) in r["metrics"]["by_magnification"]
        ]
    for metric in METRICS[1:]:
        row[metric] = [o[metric] for o in overall]
    row["magnification_accuracy"] = [o["magnification_accuracy"] for o in overall if "magnification_accuracy" in o]
    row["fps_model"] = [(r.get("timing") or {}).get("fps_model") for r in recs]
    row["fps_end_to_end"] = [(r.get("timing") or {}).get("fps_end_to_end") for r in recs]
    info = recs[0]["method"].get("fit_info")
    info = info[0] if isinstance(info, list) and info else info
    row["profile"] = (info or {}).get("profile", "") if isinstance(info, dict) else ""
    row["tuned"] = bool(recs[0]["method"].get("tuned"))
    return row


def build(root: Path) -> tuple[str, pd.DataFrame, list[Checked]]:
    """Markdown text, CSV table and the verification of every record under `root`."""
    checked = check_all(root)
    groups: dict[tuple[str, str], dict[tuple[str, str], list[dict]]] = defaultdict(lambda: defaultdict(list))
    failed: dict[tuple[str, str], list[dict]] = defaultdict(list)
    meta: dict[tuple[str, str], tuple[dict, dict, dict]] = {}
    for c in checked:
        if not c.accepted:
            continue
        r = c.record
        assert r is not None
        key = (r["dataset"]["id"], r["protocol"]["id"])
        meta[key] = (r["dataset"], r["protocol"], r["split"])
        if r["status"] == "ok":
            groups[key][(r["method"]["name"], r["method"]["params_hash"])].append(r)
        else:
            failed[key].append(r)

    lines = [
        "# bhbench leaderboard",
        "",
        "Generated by `bhbench leaderboard` from the records in `leaderboard/results/`; do not edit by hand.",
        "Every number is recomputed from stored per-image predictions. Patient recognition rate (PRR) is",
        "the mean over test patients of the fraction of their images classified correctly; values are",
        "mean ± std over folds, in %. FPS is images per second on the recorded machine (model: decoded",
        "images in; e2e: PNG files in).",
        "",
    ]
    csv_rows = []
    for key in sorted(meta, key=lambda k: (meta[k][0]["synthetic"], k)):
        dataset, protocol, split = meta[key]
        lines += [f"## {_dataset_title(dataset)}", "", f"### {_protocol_title(protocol)}", ""]
        if split.get("leaky"):
            lines += [
                "> **Leaky protocol:** some patients have images on both sides of the split "
                f"({'image-level folds' if split['kind'] == 'image-kfold' else 'patient token overlap'}); "
                "these numbers overstate what a model does on new patients.",
                "",
            ]
        rows = []
        entries = groups.get(key, {})
        multi = defaultdict(int)
        for name, _h in entries:
            multi[name] += 1
        for (name, phash), recs in entries.items():
            label = f"{name} [{phash[:6]}]" if multi[name] > 1 else name
            rows.append(aggregate(label, sorted(recs, key=lambda r: r["split"]["fold"])))
        rows.sort(key=lambda r: (-np.nanmean(r["patient_rr"]), r["method"]))
        show_mag_acc = any(r["magnification_accuracy"] for r in rows)
        table = []
        for rank, row in enumerate(rows, 1):
            cells = [
                rank,
                row["method"] + (" (tuned)" if row["tuned"] else ""),
                row["folds"],
                pct(row["patient_rr"]),
            ]
            cells += [pct(row[f"{m}X"]) for m in MAGNIFICATIONS]
            cells += [pct(row[m]) for m in METRICS[1:]]
            if show_mag_acc:
                cells.append(pct(row["magnification_accuracy"]))
            cells += [_num(row["fps_model"]), _num(row["fps_end_to_end"]), row["profile"]]
            table.append(cells)
            csv_rows.append(
                {
                    "dataset": key[0],
                    "protocol": key[1],
                    "method": row["method"],
                    "folds": row["folds"],
                    **{
                        f"{m}_{stat}": v
                        for m in ("patient_rr", *(f"{x}X" for x in MAGNIFICATIONS), *METRICS[1:])
                        for stat, v in zip(("mean", "std"), mean_std(row[m]), strict=True)
                    },
                    "fps_model": mean_std([v for v in row["fps_model"] if v is not None])[0],
                    "fps_end_to_end": mean_std([v for v in row["fps_end_to_end"] if v is not None])[0],
                    "profile": row["profile"],
                    "tuned": row["tuned"],
                }
            )
        headers = ["#", "method", "folds", "PRR", *(f"PRR {m}X" for m in MAGNIFICATIONS)]
        headers += ["accuracy", "balanced acc.", "AUC", "macro F1"]
        headers += ["magnification acc."] if show_mag_acc else []
        headers += ["FPS model", "FPS e2e", "profile"]
        if table:
            lines += [tabulate(table, headers, tablefmt="github", disable_numparse=True), ""]
        if failed.get(key):
            lines += ["Failed runs (not ranked):", ""]
            fails = sorted(failed[key], key=lambda r: (r["method"]["name"], r["split"]["fold"]))
            lines += [
                tabulate(
                    [[r["method"]["name"], r["split"]["fold"], r["error"]] for r in fails],
                    ["method", "fold", "reason"],
                    tablefmt="github",
                ),
                "",
            ]
    lines += [
        "## Published reference numbers (not measured by bhbench)",
        "",
        "Patient recognition rate in %, as published, under each paper's own protocol; shown for",
        "orientation only and never ranked with the measured rows above.",
        "",
        tabulate(PUBLISHED, ["method", "40X", "100X", "200X", "400X", "source"], tablefmt="github"),
        "",
    ]
    return "\n".join(lines), pd.DataFrame(csv_rows), checked


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, float_format="%.6g")


def write(root: Path, output: Path) -> list[Checked]:
    text, frame, checked = build(root)
    results.atomic_write(output / "README.md", text.encode())
    results.atomic_write(output / "leaderboard.csv", _csv(frame).encode())
    return checked


def stale(root: Path, output: Path) -> list[str]:
    """Reasons the committed leaderboard is not what the records produce (empty when current)."""
    text, frame, checked = build(root)
    reasons = [f"{c.path}: {p}" for c in checked for p in c.problems]
    for name, expected in (
        ("README.md", text),
        ("leaderboard.csv", _csv(frame)),
    ):
        path = output / name
        if not path.exists() or path.read_text() != expected:
            reasons.append(f"{path} is not what the records produce; run `bhbench leaderboard`")
    return reasons
