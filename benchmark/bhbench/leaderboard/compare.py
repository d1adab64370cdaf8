"""Two rows side by side on the same folds, and tables of chosen rows for papers."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

import pandas as pd
from tabulate import tabulate

from bhbench.errors import UserError
from bhbench.leaderboard.aggregate import Section, find_rows, patient_table, uncertainty
from bhbench.metric import METRICS, Unit
from bhbench.scoring import HEADLINE, paired_difference


def compare(found: list[Section], a: str, b: str, folders: str = "the results folder") -> pd.DataFrame:
    """Per section holding both rows: their headlines, the paired difference a - b over the folds
    both have, its 95% bootstrap interval and two-sided p-value (one comparison: unadjusted).
    `folders` names what was read, for the message when no section holds both."""
    lines = []
    for section in found:
        left = [r for s, r in find_rows([section], a)]
        right = [r for s, r in find_rows([section], b)]
        for x in left:
            for y in right:
                boot = uncertainty([x, y])
                assert boot is not None
                diff, lo, hi, p = paired_difference(boot, 0, 1)
                lines.append({
                    "dataset": section.dataset.id,
                    "protocol": section.protocol.id,
                    "section": section.protocol.title,
                    "a": x.label, "b": y.label,
                    "common_folds": len(set(x.folds) & set(y.folds)),
                    "a_headline": boot.mean("headline")[0], "b_headline": boot.mean("headline")[1],
                    "difference": diff, "lo": lo, "hi": hi, "p": p,
                })  # fmt: skip
    if not lines:
        raise UserError(f"no section of the records in {folders} holds accepted records of both {a!r} and {b!r}")
    return pd.DataFrame(lines)


def matching(
    found: list[Section], patterns: Sequence[str], folders: str = "the results folder"
) -> list[tuple[Section, str]]:
    """(section, row label) of every row whose name or label matches one of `patterns` (wildcards)."""
    out = []
    for section in found:
        for row in section.rows:
            if any(fnmatch.fnmatchcase(n, p) for p in patterns for n in (row.name, row.label)):
                out.append((section, row.label))
    if not out:
        raise UserError(f"no accepted record in {folders} matches {', '.join(patterns)}")
    return out


def export(
    found: list[Section], patterns: Sequence[str], tables: dict[str, pd.DataFrame]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The leaderboard lines of the chosen rows (with the rank they have in their section) and
    their per-patient scores."""
    chosen = matching(found, patterns)
    labels: dict[str, set[str]] = {}
    for section, label in chosen:
        labels.setdefault(section.slug, set()).add(label)
    rows = pd.concat([tables[slug][tables[slug]["method"].isin(chosen)] for slug, chosen in labels.items()],
                     ignore_index=True)  # fmt: skip
    patients = []
    for section, label in chosen:
        row = next(r for r in section.rows if r.label == label)
        table = patient_table(row)
        table.insert(0, "method", label)
        table.insert(0, "protocol", section.protocol.id)
        table.insert(0, "dataset", section.dataset.id)
        patients.append(table)
    return rows, pd.concat(patients, ignore_index=True)


def latex(rows: pd.DataFrame) -> str:
    """A LaTeX tabular: dataset, protocol, rank, method, PRR mean ± std with its 95% interval, the
    metrics the leaderboard shows with intervals (rank as in the row's leaderboard section), and
    where the method comes from (its card's citation)."""
    shown = [m for m in METRICS if m.board == "interval"]
    head = HEADLINE.metric.unit

    def pm(r: pd.Series, name: str, unit: Unit) -> str:
        return unit.pm(r[f"{name}_mean"], r[f"{name}_std"], int(r["folds"]), sign=" $\\pm$ ")

    def title(label: str, unit: Unit) -> str:
        return f"{label} ({unit.symbol})".replace("%", "\\%") if unit.symbol else label

    body = [
        [r["dataset"], r["protocol"], "" if pd.isna(r["rank"]) else int(r["rank"]), _escaped(r["method"]),
         pm(r, HEADLINE.name, head), head.interval(r[f"{HEADLINE.name}_lo"], r[f"{HEADLINE.name}_hi"]),
         *(pm(r, m.name, m.unit) for m in shown), _escaped(r["citation"])]
        for _, r in rows.iterrows()
    ]  # fmt: skip
    headers = ["dataset", "protocol", "rank", "method", title(HEADLINE.label, head), "95\\% CI"]
    headers += [*(title(m.label, m.unit) for m in shown), "citation"]
    return tabulate(body, headers, tablefmt="latex_raw", disable_numparse=True) + "\n"


LATEX_SPECIAL = {c: f"\\{c}" for c in "&%$#_{}"} | {"\\": r"\textbackslash{}", "~": r"\textasciitilde{}",
                                                     "^": r"\textasciicircum{}"}  # fmt: skip


def _escaped(text: str) -> str:
    """Plain text in a LaTeX cell: the characters LaTeX reads as commands escaped, in one pass."""
    return re.sub(r"[&%$#_{}\\~^]", lambda m: LATEX_SPECIAL[m.group()], text)
