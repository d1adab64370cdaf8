"""Two rows side by side on the same folds, and tables of chosen rows for papers."""

from __future__ import annotations

import fnmatch

import pandas as pd
from tabulate import tabulate

from bhbench.errors import UserError
from bhbench.leaderboard.aggregate import Section, find_rows, frame, patient_table, uncertainty
from bhbench.leaderboard.render import protocol_title
from bhbench.metrics import paired_difference


def compare(found: list[Section], a: str, b: str) -> pd.DataFrame:
    """Per section holding both rows: their headlines, the paired difference a - b over the folds
    both have, its 95% bootstrap interval and two-sided p-value (one comparison: unadjusted)."""
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
                    "section": protocol_title(section.protocol),
                    "a": x.label, "b": y.label,
                    "common_folds": len(set(x.folds) & set(y.folds)),
                    "a_headline": boot.mean("headline")[0], "b_headline": boot.mean("headline")[1],
                    "difference": diff, "lo": lo, "hi": hi, "p": p,
                })  # fmt: skip
    if not lines:
        raise UserError(f"no section of the results holds accepted records of both {a!r} and {b!r}")
    return pd.DataFrame(lines)


def _chosen(found: list[Section], patterns: list[str]) -> list[tuple[Section, str]]:
    out = []
    for section in found:
        for row in section.rows:
            if any(fnmatch.fnmatchcase(n, p) for p in patterns for n in (row.name, row.label)):
                out.append((section, row.label))
    if not out:
        raise UserError(f"no accepted record matches {', '.join(patterns)}")
    return out


def export(found: list[Section], patterns: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The leaderboard lines of the chosen rows (with the rank they have in their section) and
    their per-patient scores."""
    chosen = _chosen(found, patterns)
    labels: dict[str, set[str]] = {}
    for section, label in chosen:
        labels.setdefault(section.slug, set()).add(label)
    tables = [(s.slug, frame(s)) for s in found if s.slug in labels]
    rows = pd.concat([t[t["method"].isin(labels[slug])] for slug, t in tables], ignore_index=True)
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
    """A LaTeX tabular: dataset, protocol, rank, method, PRR mean ± std with its 95% interval,
    accuracy, AUC (rank as in the row's leaderboard section)."""

    def pm(r: pd.Series, stat: str) -> str:
        return f"{100 * r[f'{stat}_mean']:.1f} $\\pm$ {100 * r[f'{stat}_std']:.1f}"

    body = [
        [r["dataset"], r["protocol"], "" if pd.isna(r["rank"]) else int(r["rank"]), r["method"].replace("_", r"\_"),
         pm(r, "headline"), f"[{100 * r['headline_lo']:.1f}, {100 * r['headline_hi']:.1f}]",
         pm(r, "accuracy"), pm(r, "auc")]
        for _, r in rows.iterrows()
    ]  # fmt: skip
    headers = ["dataset", "protocol", "rank", "method", "PRR (\\%)", "95\\% CI", "accuracy (\\%)", "AUC (\\%)"]
    return tabulate(body, headers, tablefmt="latex_raw", disable_numparse=True) + "\n"
