"""A Markdown page per method: its leaderboard line in each section (to cite), per-fold table, what
inner searches chose, ROC, confusion matrix, reliability diagram with
expected calibration error, which patients it gets wrong at each magnification, and training
curves where the record keeps a history (deep methods)."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from bhbench.errors import UserError
from bhbench.leaderboard import figures
from bhbench.leaderboard.aggregate import Row, Section, find_rows, patient_table, pooled, uncertainty
from bhbench.leaderboard.render import FIGURES, REPORTS, dataset_title
from bhbench.metric import ECE_BINS, METRICS, PATIENT_RR, PERCENT
from bhbench.protocol import MAGNIFICATIONS, TASK_CLASSES
from bhbench.scoring import BY_MAGNIFICATION, HEADLINE, STATISTICS, Bootstrap, mean_std
from bhbench.util import atomic_write

# The patient recognition rates of each fold, as the bootstrap computes them (headline, pooled, per magnification).
PRR_COLUMNS = (HEADLINE.name, PATIENT_RR.name, *(s.name for s in BY_MAGNIFICATION))


def _fold_table(row: Row, boot: Bootstrap) -> str:
    """Per fold: its size, the patient recognition rates, and the metrics the declarations put in this table."""
    shown = [m for m in METRICS if m.fold_table and m is not PATIENT_RR]
    lines = []
    for j, fold in enumerate(sorted(row.folds)):
        scored = row.folds[fold].scored
        assert scored is not None and scored.metrics is not None  # an accepted record is scored
        m = scored.metrics.overall
        rates = [PERCENT.text(boot.folds[name][0, j]) for name in PRR_COLUMNS]
        lines.append([fold, m.n_patients, m.n_images, *rates, *(x.unit.text(getattr(m, x.name)) for x in shown)])
    labels = [HEADLINE.label, PATIENT_RR.label, *(s.label for s in BY_MAGNIFICATION), *(x.label for x in shown)]
    return tabulate(lines, ["fold", "patients", "images", *labels], tablefmt="github", disable_numparse=True)


def _statistics_table(row: Row, boot: Bootstrap) -> str:
    """Every bootstrapped statistic of the row: mean ± std over folds and its 95% interval."""
    lines = []
    for s in STATISTICS:
        unit = s.metric.unit
        mean, std = mean_std(list(boot.folds[s.name][0]))
        lo, hi = boot.interval(s.name)
        title = s.label + (f" ({unit.symbol})" if unit.symbol else "")
        better = "higher" if s.metric.higher_is_better else "lower"
        lines.append([title, s.metric.level, unit.pm(mean, std, len(row.folds)), unit.interval(lo[0], hi[0]), better])
    headers = ["statistic", "per", "mean ± std over folds", "95% CI", "better"]
    return tabulate(lines, headers, tablefmt="github", disable_numparse=True)


def _patients(row: Row) -> str:
    """Patients by fold with their score at each magnification (worst first)."""
    table = patient_table(row)
    table["cell"] = [f"{100 * s:.0f}% of {n}" for s, n in zip(table["score"], table["images"], strict=True)]
    wide = table.pivot_table(index=["fold", "patient", "subtype"], columns="magnification", values="cell",
                             aggfunc="first").reset_index()  # fmt: skip
    overall = table.groupby(["fold", "patient"])[["correct", "images"]].sum()
    wide["score"] = [
        overall.loc[(f, p), "correct"] / overall.loc[(f, p), "images"]
        for f, p in zip(wide["fold"], wide["patient"], strict=True)
    ]
    wide = wide.sort_values(["score", "fold", "patient"])
    lines = []
    for _, r in wide.iterrows():
        mags = [r.get(m) if isinstance(r.get(m), str) else "" for m in MAGNIFICATIONS]
        lines.append([r["fold"], r["patient"], r["subtype"], PERCENT.text(r["score"]), *mags])
    headers = ["fold", "patient", "class/subtype", "all images", *(f"{m}X" for m in MAGNIFICATIONS)]
    return tabulate(lines, headers, tablefmt="github", disable_numparse=True)


def _summary(matches: list[tuple[Section, Row]], tables: dict[str, pd.DataFrame]) -> str:
    """The row's leaderboard line in each section, to cite: PRR mean ± std over folds, its 95%
    interval and rank (ranked block only; tied ranks as on the board)."""
    lines = []
    for section, row in matches:
        table = tables[section.slug]
        line = table[table["method"] == row.label].iloc[0]
        ranked = table[table["block"] == "ranked"]
        rank = f"{int(line['rank'])} of {len(ranked)}" if line["block"] == "ranked" else f"not ranked ({line['block']})"
        head, unit = HEADLINE.name, HEADLINE.metric.unit
        lines.append([
            f"{dataset_title(section.dataset)}: {section.protocol.title}", row.label,
            unit.pm(line[f"{head}_mean"], line[f"{head}_std"], int(line["folds"])),
            unit.interval(line[f"{head}_lo"], line[f"{head}_hi"]), rank,
        ])  # fmt: skip
    headers = ["section", "row", f"{HEADLINE.label} mean ± std", "95% CI", "rank"]
    return tabulate(lines, headers, tablefmt="github", disable_numparse=True)


def _searched(row: Row) -> str:
    """Per fold, the settings the method's inner search chose (what its fit_info stores as `search`
    and `settings`; one line per part in the ms regime), or "" when the method searched nothing."""
    lines = []
    for fold in sorted(row.folds):
        record = row.folds[fold].record
        assert record is not None
        info = record.method.fit_info
        for part, fit in enumerate(info if isinstance(info, list) else [info]):
            search = fit.get("search") if isinstance(fit, dict) else None
            if isinstance(search, dict) and isinstance(fit.get("settings"), dict):
                chosen = {k: fit["settings"].get(k) for k in search.get("grid", {})}
                lines.append([fold, part + 1 if isinstance(info, list) else "", _settings(chosen)])
    return tabulate(lines, ["fold", "part", "chosen"], tablefmt="github", disable_numparse=True) if lines else ""


def _settings(chosen: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in chosen.items())


def _histories(row: Row) -> list[list[dict]]:
    out = []
    for fold in sorted(row.folds):
        record = row.folds[fold].record
        history = record.method.first_fit_info.get("history") if record else None
        if isinstance(history, list) and history and all(isinstance(h, dict) for h in history):
            out.append(history)
    return out


def page(
    found: list[Section], name: str, tables: dict[str, pd.DataFrame], pool: Executor | None = None
) -> dict[str, bytes]:
    """Files of the method page, relative to the leaderboard folder (its sections drawn in `pool`'s
    workers, when given); `tables` are the sections' leaderboard lines (`aggregate.frame`), whose
    numbers and rank the page opens with."""
    matches = find_rows(found, name)
    if not matches:
        raise UserError(f"no accepted record of method {name!r} in the results folder")
    lines = [
        f"# {name}",
        "",
        "Generated by bhbench from the records; values in %. PRR is the mean of the per-magnification",
        "patient recognition rates; figures pool the test images of all folds.",
        "",
        _summary(matches, tables),
        "",
    ]
    # each part gets its section with this row alone: what it reads, not every row's predictions
    alone = [replace(section, rows=[row], failed=[]) for section, row in matches]
    parts = pool.map(_part, [name] * len(alone), alone) if pool else map(_part, [name] * len(alone), alone)
    files: dict[str, bytes] = {}
    for part_lines, part_files in parts:
        lines += part_lines
        files.update(part_files)
    files[f"{REPORTS}/{name}.md"] = "\n".join(lines).encode()
    return files


def _part(name: str, section: Section) -> tuple[list[str], dict[str, bytes]]:
    """The lines and figures of the page for the one row of `section`."""
    (row,) = section.rows
    first = row.first.method
    slug = f"{name}-{section.slug}" + (f"-{row.params_hash[:6]}" if row.label != row.name else "")
    lines = [f"## {dataset_title(section.dataset)}", "", f"### {section.protocol.title}: {row.label}", ""]
    if section.leaky:
        lines += ["> Leaky protocol: patients on both sides of the split.", ""]
    lines += [f"Parameters: `{first.params}`; reference: {first.reference or '–'}.", ""]
    boot = uncertainty([row])
    assert boot is not None
    lines += [_fold_table(row, boot), ""]
    searched = _searched(row)
    if searched:
        lines += ["What the inner search chose on each fold's training patients:", "", searched, ""]
    lines += ["Every statistic, with its patient-level bootstrap interval:", "", _statistics_table(row, boot), ""]
    s = pooled(row)
    drawn: dict[str, tuple[bytes, str]] = {}
    if section.protocol.task == "binary" and len(np.unique(s.y)) == 2:
        drawn["roc"] = (figures.roc([(row.label, s.y, s.proba[:, 1])], row.label), "ROC curve")
    classes = TASK_CLASSES[section.protocol.task]
    drawn["confusion"] = (figures.confusion(s.y, s.proba.argmax(1), classes, row.label), "confusion matrix")
    blob, ece = figures.reliability(s.y, s.proba)
    drawn["reliability"] = (blob, f"reliability diagram, expected calibration error {100 * ece:.1f}%")
    histories = _histories(row)
    if histories:
        drawn["curves"] = (figures.curves(histories, f"{row.label}: training curves"), "training curves")
    files = {}
    for kind, (blob, caption) in drawn.items():
        file = f"{FIGURES}/{slug}-{kind}.svg"
        files[f"{REPORTS}/{file}"] = blob
        lines += [f"![{caption}]({file})", ""]
    lines += [f"Expected calibration error ({ECE_BINS} bins, top-class confidence): {100 * ece:.1f}%.", ""]
    if not histories and first.family == "deep":
        lines += ["No training history in these records.", ""]
    lines += ["Per-patient scores (fraction of images right; worst patients first):", "", _patients(row), ""]
    return lines, files


def write(
    found: list[Section], name: str, tables: dict[str, pd.DataFrame], output: Path, pool: Executor | None = None
) -> Path:
    for rel, blob in page(found, name, tables, pool).items():
        atomic_write(output / rel, blob)
    return output / REPORTS / f"{name}.md"
