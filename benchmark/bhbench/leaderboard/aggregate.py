"""Group verified records into sections (dataset x protocol) and rows (method x parameters x code),
and compute one DataFrame with every number the Markdown, the CSV and the figures show.

Within a section rows are split into blocks that are never ranked together: measured inductive
rows with the harness's reference rows, smoke results (deep models trained by the CPU `quick`
recipe), incomplete rows (fewer folds than the section's fullest row: a run stopped part way, which
the same command resumes, or one with failed folds), and transductive methods (which see the whole
test set at once).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bhbench import registry
from bhbench.audit import read as read_audit
from bhbench.data.names import parse_name
from bhbench.leaderboard.verify import Checked, Scored
from bhbench.metric import METRICS, PERCENT
from bhbench.params import describe, non_default
from bhbench.protocol import MAGNIFICATIONS, Protocol
from bhbench.record import DatasetInfo, RunRecord, SplitInfo
from bhbench.scoring import (
    BY_MAGNIFICATION,
    HEADLINE,
    STATISTICS,
    Bootstrap,
    FoldOutcomes,
    bootstrap,
    mean_std,
    tied_ranks,
)

BLOCKS = ("ranked", "smoke", "incomplete", "transductive", "audit_failed")
REFERENCE_FAMILY = "reference"


def recipe_of(record: RunRecord) -> str:
    """The training recipe of a deep record (`quick`, `paper`...), empty for other methods."""
    for source in (record.method.first_fit_info, record.method.params):
        for key in ("recipe", "profile"):
            if isinstance(source.get(key), str):
                return source[key]
    return ""


def block_of(record: RunRecord) -> str:
    """The leaderboard block a method's records go in: a transductive method's and a quick-recipe
    (smoke) run's are shown apart, never ranked with the others."""
    if record.method.transductive:
        return "transductive"
    return "smoke" if recipe_of(record) == "quick" else "ranked"


@dataclass
class Row:
    name: str
    params_hash: str
    code: str | None
    folds: dict[int, Checked] = field(default_factory=dict)
    label: str = ""
    params: str = ""  # the non-default parameters, as `C=10, bins=16`
    audit: dict | None = None  # the row folder's audit.json (`bhbench audit`), when it audited this code
    complete: bool = True  # has every fold the section's rows have: a row of fewer folds is never ranked

    @property
    def audit_verdict(self) -> str:
        """pass | fail | inconclusive | error from the row's audit, "" when never audited. Reference rows
        are the harness's own and are not audited."""
        return "" if self.audit is None else str(self.audit.get("verdict", ""))

    @property
    def first(self) -> RunRecord:
        record = self.folds[min(self.folds)].record
        assert record is not None
        return record

    @property
    def reference(self) -> bool:
        return self.first.method.family == REFERENCE_FAMILY

    @property
    def block(self) -> str:
        # A failed audit outranks every other block rule: such a row is never ranked anywhere.
        if self.audit_verdict == "fail":
            return "audit_failed"
        return block_of(self.first) if self.complete else "incomplete"


@dataclass
class Section:
    dataset: DatasetInfo
    protocol: Protocol
    split: SplitInfo  # of the section's first record: what every fold shares (kind, leakiness)
    rows: list[Row] = field(default_factory=list)
    failed: list[RunRecord] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return f"{self.dataset.id}-{self.protocol.id}"

    @property
    def leaky(self) -> bool:
        return self.split.leaky

    def block(self, name: str) -> list[Row]:
        return [r for r in self.rows if r.block == name]


def sections(checked: list[Checked]) -> list[Section]:
    """Accepted records grouped; real data first, then synthetic; leak-free splits before leaky ones."""
    found: dict[tuple[str, str], Section] = {}
    rows: dict[tuple[str, str], dict[tuple, Row]] = defaultdict(dict)
    for c in checked:
        if not c.accepted or c.record is None:
            continue
        r = c.record
        key = (r.dataset.id, r.protocol.id)
        section = found.setdefault(key, Section(r.dataset, r.protocol, r.split))
        if not r.ok:
            section.failed.append(r)
            continue
        row_key = (r.method.name, r.method.params_hash, r.method.code_hash)
        row = rows[key].setdefault(row_key, Row(*row_key))
        row.folds[r.split.fold] = c
        if row.audit is None:
            row.audit = _audit_of(c.path.parent, r)
    for key, section in found.items():
        section.rows = list(rows[key].values())
        # The split's fold count, as the most folds a row has: the reference rows run on every fold.
        full = max((len(r.folds) for r in section.rows), default=0)
        for r in section.rows:
            r.complete = len(r.folds) == full
        _label(section.rows)
    return [found[k] for k in sorted(found, key=lambda k: (found[k].dataset.synthetic, k[0], found[k].leaky, k))]


def _audit_of(folder: Path, record: RunRecord) -> dict | None:
    """The row folder's audit when it audited this record's code and dataset (a row made by other
    code, or an audit of another cohort, counts as never audited)."""
    doc = read_audit(folder)
    if doc is None or doc.get("code") != record.method.code_hash or doc.get("dataset") != record.dataset.id:
        return None
    return doc


def _label(rows: list[Row]) -> None:
    """Method name with its non-default parameters (`lbp_svm [C=10]`; the parameter hash for a
    method not registered here, when one name has several variants), and the code fingerprint when
    records of one variant come from different code (they are never mixed). Read from the records
    alone: no plugin is imported, so the board is the same wherever it is built."""
    variants = defaultdict(set)
    codes = defaultdict(set)
    for r in rows:
        variants[r.name].add(r.params_hash)
        codes[(r.name, r.params_hash)].add(r.code)
    for r in rows:
        changed = changed_params(r)
        shown = None if changed is None else describe(r.name, changed, {})
        r.params = shown or ""
        if shown:
            label = f"{r.name} [{shown}]"
        else:
            label = r.name if len(variants[r.name]) == 1 or shown == "" else f"{r.name} [{r.params_hash[:6]}]"
        if len(codes[(r.name, r.params_hash)]) > 1:
            label += f" (code {(r.code or 'unrecorded')[:8]})"
        r.label = label


def changed_params(row: Row) -> dict[str, Any] | None:
    """The row's parameters that differ from its method's defaults ({} for the defaults; None when
    tuned, or when there are no defaults to compare with), from the records alone."""
    method = row.first.method
    # Records from before defaults were stored: bhbench's own baselines' defaults (this checkout's code).
    defaults = method.defaults if method.defaults is not None else registry.builtin_defaults(row.name)
    return None if method.tuned or defaults is None else non_default(row.name, method.params, defaults)


def outcomes(rows: list[Row]) -> list[FoldOutcomes]:
    """Each fold's test images (sorted by file name) with every row's probabilities for them."""
    folds = sorted({f for r in rows for f in r.folds})
    out = []
    for fold in folds:
        names = sorted({n for r in rows if fold in r.folds for n in _scored(r, fold).filenames})
        index = {n: i for i, n in enumerate(names)}
        parsed = [parse_name(n) for n in names]
        patients = np.unique([p.patient for p in parsed], return_inverse=True)[1]
        mags = np.array([MAGNIFICATIONS.index(p.magnification) for p in parsed])
        y = np.zeros(len(names), dtype=int)
        k = next(_scored(r, fold).proba.shape[1] for r in rows if fold in r.folds)
        proba = np.zeros((len(rows), len(names), k))  # a row without this fold keeps zeros, masked by `present`
        for i, r in enumerate(rows):
            if fold in r.folds:
                s = _scored(r, fold)
                at = np.array([index[n] for n in s.filenames])
                y[at] = s.y
                proba[i, at] = s.proba
        out.append(FoldOutcomes(patients, mags, y, proba, np.array([fold in r.folds for r in rows])))
    return out


def _scored(row: Row, fold: int) -> Scored:
    scored = row.folds[fold].scored
    assert scored is not None
    return scored


def pooled(row: Row) -> Scored:
    """The row's test predictions of all folds in one (for ROC curves and confusion matrices)."""
    parts = [_scored(row, f) for f in sorted(row.folds)]
    return Scored(
        [n for p in parts for n in p.filenames],
        np.concatenate([p.y for p in parts]),
        np.concatenate([p.proba for p in parts]),
        np.concatenate([p.patients for p in parts]),
        np.concatenate([p.magnifications for p in parts]),
        {},
        None,
    )


def uncertainty(rows: list[Row], seed: int = 0) -> Bootstrap | None:
    return bootstrap(outcomes(rows), seed=seed) if rows else None


def holdout_ratio(section: Section, rows: list[Row]) -> float:
    """n_test/n_train of the rows' folds, averaged, for the corrected t-test's variance factor. It is
    counted in the unit the split draws, as two folds' training sets overlap in it: patients for a
    patient-level split (the real sample's official folds: 0.50 on average, where the images give
    0.64, and 9/13 = 0.69 against 163/120 = 1.36 in fold 5), images for an image-level one."""
    ratios = []
    for fold in sorted({f for r in rows for f in r.folds}):
        row = next(r for r in rows if fold in r.folds)
        record = row.folds[fold].record
        assert record is not None
        split = record.split
        trained = _training_patients(section.dataset, split, len(np.unique(_scored(row, fold).patients)))
        ratios.append(split.n_test / split.n_train if trained is None else trained[0] / trained[1])
    return float(np.mean(ratios))


def _training_patients(dataset: DatasetInfo, split: SplitInfo, tested: int) -> tuple[int, float] | None:
    """(test patients, training patients) of a patient-level fold; None for an image-level split, or
    when the dataset's counts cannot hold the fold (a hand-built record). Records count images, so
    the training patients are the dataset's patients not tested (plus any on both sides), scaled by
    the share of the untested images the fold trained on (1 unless a training subsample was drawn)."""
    untested = dataset.patients - tested + len(split.leaked_patients)
    spare_images = dataset.images - split.n_test
    if split.kind == "image-kfold" or untested <= 0 or spare_images <= 0:
        return None
    return tested, untested * split.n_train / spare_images


def _metric_values(row: Row, metric: str) -> list[float]:
    """A metric's value recomputed from the predictions of each fold where the row has it (magnification
    metrics: only methods that predict magnification)."""
    values = [getattr(c.scored.metrics.overall, metric) for c in row.folds.values() if c.scored and c.scored.metrics]
    return [v for v in values if v is not None]


def _timing(row: Row, key: str) -> float:
    """A timing's mean over the folds that measured it (throughput: the first fold)."""
    values = [getattr(c.record.timing, key) for c in row.folds.values() if c.record and c.record.timing]
    return mean_std([v for v in values if v is not None])[0]


def frame(section: Section) -> pd.DataFrame:
    """One line per row of the section: rank (ranked block only), mean, std and 95% interval of
    every bootstrapped statistic, the other metrics' mean and std, speed and provenance."""
    lines = []
    for block in BLOCKS:
        rows = section.block(block)
        boot = uncertainty(rows)
        if boot is None:
            continue
        ranks = tied_ranks(boot, holdout_ratio(section, rows))[0] if block == "ranked" else [None] * len(rows)
        lo_hi = {s.name: boot.interval(s.name) for s in STATISTICS}
        for i, row in enumerate(rows):
            line: dict = {
                "dataset": section.dataset.id,
                "protocol": section.protocol.id,
                "block": block,
                "rank": ranks[i],
                "method": row.label,
                "name": row.name,
                "params_hash": row.params_hash,
                "params": row.params,
                "code": row.code or "",
                "reference_row": row.reference,  # the harness's own majority/stratified rows
                "citation": row.first.method.reference,  # where the method comes from, as its card cites it
                "folds": len(row.folds),
                "audit": row.audit_verdict,
            }
            for s in STATISTICS:
                mean, std = mean_std(list(boot.folds[s.name][i]))
                lo, hi = lo_hi[s.name][0][i], lo_hi[s.name][1][i]
                line.update({f"{s.name}_mean": mean, f"{s.name}_std": std, f"{s.name}_lo": lo, f"{s.name}_hi": hi})
            for m in METRICS:
                if m.draws is None:  # not bootstrapped (few methods predict magnification)
                    mean, std = mean_std(_metric_values(row, m.name))
                    line.update({f"{m.name}_mean": mean, f"{m.name}_std": std})
            line["fps_model"] = _timing(row, "fps_model")
            line["fps_end_to_end"] = _timing(row, "fps_end_to_end")
            line["recipe"] = recipe_of(row.first)
            line["init"] = str(row.first.method.first_fit_info.get("init") or "")
            line["weights_data"] = row.first.method.weights_data or ""  # what pretrained weights saw (the card)
            line["tuned"] = bool(row.first.method.tuned)
            lines.append(line)
    table = pd.DataFrame(lines)
    if len(table):
        order = table["block"].map(BLOCKS.index)
        rank = table["rank"].fillna(0)
        key = table[f"{HEADLINE.name}_mean"]  # best first within a rank, as the headline's metric says
        table = table.assign(_o=order, _r=rank, _h=(-key if HEADLINE.metric.higher_is_better else key).fillna(np.inf))
        table = table.sort_values(["_o", "_r", "_h", "method"]).drop(columns=["_o", "_r", "_h"])
        table["rank"] = table["rank"].astype("Int64")
    return table.reset_index(drop=True)


FEW_PATIENTS = 3  # fewer test patients per fold at a magnification: its rate moves in steps of a third or more


def holdings(section: Section) -> pd.DataFrame:
    """Per magnification the section tests at: distinct test images and patients over all folds, and
    the fewest and most test patients in one fold (what each per-magnification rate averages)."""
    tested: dict[int, set[tuple[str, str]]] = defaultdict(set)  # fold -> (file name, patient)
    mags: dict[str, int] = {}
    for row in section.rows:
        for fold in row.folds:
            s = _scored(row, fold)
            tested[fold].update(zip(s.filenames, map(str, s.patients), strict=True))
            mags.update(zip(s.filenames, map(int, s.magnifications), strict=True))
    lines = []
    for mag in MAGNIFICATIONS:
        per_fold = [{p for n, p in names if mags[n] == mag} for names in tested.values()]
        images = {n for names in tested.values() for n, _ in names if mags[n] == mag}
        if images:
            counts = [len(p) for p in per_fold]
            patients = set().union(*per_fold)
            lines.append({"magnification": mag, "images": len(images), "patients": len(patients),
                          "fold_min": min(counts), "fold_max": max(counts)})  # fmt: skip
    return pd.DataFrame(lines, columns=["magnification", "images", "patients", "fold_min", "fold_max"])


def failures(section: Section) -> list[tuple[str, int, int, str]]:
    """One line per failed method: (name, failed folds, folds with records, first reason)."""
    by_name: dict[str, list[RunRecord]] = defaultdict(list)
    for r in section.failed:
        by_name[r.method.name].append(r)
    out = []
    for name, recs in sorted(by_name.items()):
        ok = sum(len(r.folds) for r in section.rows if r.name == name)
        first = sorted(recs, key=lambda r: r.split.fold)[0]
        reason = (first.error or "").strip().splitlines()
        out.append((name, len(recs), len(recs) + ok, reason[-1] if reason else "no reason recorded"))
    return out


def audit_failures(section: Section) -> list[tuple[str, str]]:
    """(row label, the audit's reason) for each row of the section whose audit failed."""
    return [(r.label, str(r.audit.get("reason", "")) if r.audit else "") for r in section.block("audit_failed")]


def pct(values: list[float]) -> str:
    """Per-fold values as "mean ± std" in % (the run summary uses it too)."""
    return PERCENT.pm(*mean_std(values), len(values))


def aggregate(method: str, recs: list[RunRecord]) -> dict:
    """Per-fold values of a method's metrics from its successful records (the run summary)."""
    metrics = [r.metrics for r in recs if r.metrics]
    row: dict = {"method": method, "folds": len(recs), HEADLINE.name: [m.headline for m in metrics]}
    for stat, mag in zip(BY_MAGNIFICATION, MAGNIFICATIONS, strict=True):
        scores = [m.by_magnification[str(mag)] for m in metrics if str(mag) in m.by_magnification]
        row[stat.name] = [getattr(s, stat.metric.name) for s in scores]
    for metric in METRICS:
        row[metric.name] = [getattr(m.overall, metric.name) for m in metrics]
    return row


def patient_table(row: Row) -> pd.DataFrame:
    """Per fold, patient and magnification: images, correctly classified images and the score."""
    parts = []
    for fold in sorted(row.folds):
        s = _scored(row, fold)
        parsed = [parse_name(n) for n in s.filenames]
        parts.append(
            pd.DataFrame(
                {
                    "fold": fold,
                    "patient": s.patients,
                    "subtype": [f"{p.tumor_class}/{p.subtype}" for p in parsed],
                    "magnification": s.magnifications,
                    "correct": s.correct.astype(int),
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    table = frame.groupby(["fold", "patient", "subtype", "magnification"], as_index=False).agg(
        images=("correct", "size"), correct=("correct", "sum")
    )
    table["score"] = table["correct"] / table["images"]
    return table


def find_rows(found: list[Section], name: str) -> list[tuple[Section, Row]]:
    """Every (section, row) whose method name or label is `name`."""
    return [(s, r) for s in found for r in s.rows if name in (r.name, r.label)]
