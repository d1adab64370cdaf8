"""A paper's claims as data: a manifest (bhbench/papers/NAME.toml) names the paper, its own protocol,
its published numbers, the experiments that re-measure them, each claim as a checkable comparison and
the figures its page draws; this module reads manifests, finds each experiment's row among the
leaderboard's sections, decides the claims from measured intervals and writes the page (one part per
dataset on the committed board, one for `bhbench paper`).

Verdicts follow the 95% interval: a claim holds or does not hold when the interval decides it, and
"cannot tell at this data size" when the interval straddles the line the claim draws."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from tabulate import tabulate

from bhbench.errors import UserError
from bhbench.leaderboard import curves
from bhbench.leaderboard.aggregate import Row, Section, changed_params, recipe_of, uncertainty
from bhbench.leaderboard.render import FIGURES, dataset_title
from bhbench.metric import BOOTSTRAPPED, METRICS, PER_SECOND
from bhbench.protocol import MAGNIFICATIONS, REGIMES, SPLIT_KINDS, TASKS
from bhbench.protocol import Protocol as RunProtocol
from bhbench.scoring import HEADLINE, STATISTICS, percentile_interval

MANIFESTS = Path(__file__).parent.parent / "papers"
PAGES = "papers"  # the board's folder of paper pages (`bhbench paper` writes there in its output too)
HOLDS, FAILS, UNSURE = "holds", "does not hold", "cannot tell at this data size"
PAPER, LEAK_FREE = "paper", "leak-free"
LEAK_FREE_SPLIT = "patient"  # bhbench's protocol: seeded patient-disjoint 70/30 splits
# Claim kinds: a difference of two rows against a margin, a row against all others, an interval
# against a band around a number (a published value, or a speed ratio).
KINDS = ("at_least", "best", "equals", "ratio")
FIGURE_KINDS = ("learning_curve", "transfer")
BOOTSTRAPPED_STATS = tuple(s.name for s in STATISTICS)
PER_FOLD_STATS = tuple(m.name for m in METRICS if m not in BOOTSTRAPPED)  # intervals over folds
TIMINGS = ("fps_model", "fps_end_to_end")
QUICK = "quick recipe, not the paper's"


@dataclass(frozen=True)
class Protocol:
    """The paper's own protocol, as it states it."""

    split: str
    task: str
    magnifications: tuple[int, ...]
    recipe: str  # how the paper trained, in words
    metric: str  # "image" or "patient": the level of the paper's headline numbers


@dataclass(frozen=True)
class Experiment:
    id: str  # what claims and published numbers call the row
    method: str
    regime: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Published:
    row: str
    statistic: str
    value: float
    std: float | None
    source: str  # table or figure of the paper
    verified: str  # how the number was checked ("as cited in ..., not re-verified")


@dataclass(frozen=True)
class Claim:
    text: str
    kind: str
    row: str
    statistics: tuple[str, ...]
    than: tuple[str, ...] = ()  # at_least and ratio: one row; best: the rows it beats
    value: float | None = None  # equals: the published number (%); ratio: the ratio claimed
    within: float = 0.0  # equals, ratio: half-width of the band; at_least: margin allowed (% points)


@dataclass(frozen=True)
class Figure:
    """A figure of the page, drawn from the leaderboard's rows of these methods (labels, e.g.
    `cnn [recipe=paper]`): their learning curve (`--train-fraction` protocols) or, for one method, the
    cross-magnification transfer matrix (`--train-mags X --test-mags Y` protocols)."""

    kind: str
    methods: tuple[str, ...]


@dataclass(frozen=True)
class Manifest:
    name: str
    path: Path
    citation: str
    protocol: Protocol
    experiments: tuple[Experiment, ...]
    published: tuple[Published, ...]
    claims: tuple[Claim, ...]
    figures: tuple[Figure, ...] = ()

    def experiment(self, row: str) -> Experiment:
        return next(e for e in self.experiments if e.id == row)


# --- reading manifests ---------------------------------------------------------------------------


def known() -> list[str]:
    return sorted(p.stem for p in MANIFESTS.glob("*.toml"))


def locate(name: str | Path) -> Path:
    """A manifest path: a shipped paper's name, or a .toml file."""
    path = Path(name)
    if path.suffix == ".toml":
        if not path.is_file():
            raise UserError(f"paper manifest {path} does not exist")
        return path
    if (MANIFESTS / f"{name}.toml").is_file():
        return MANIFESTS / f"{name}.toml"
    raise UserError(f"unknown paper {name!r}; known papers: {', '.join(known())} (or a manifest .toml path)")


class _Table:
    """A TOML table that names its file and key in every error."""

    def __init__(self, path: Path, data: dict, where: str = ""):
        self.path, self.data, self.where = path, data, where

    def fail(self, key: str, problem: str) -> UserError:
        return UserError(f"{self.path}: {self.where}{key}: {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.fail(key, "missing")
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(key, f"{value!r} is not a {names}")
        return value

    def choice(self, key: str, allowed: Sequence[Any], default: Any = ...) -> Any:
        value = self.get(key, (str, int), default)
        if value not in allowed:
            raise self.fail(key, f"{value!r} is not one of {', '.join(map(str, allowed))}")
        return value

    def tables(self, key: str) -> list[_Table]:
        items = self.get(key, list, [])
        if not all(isinstance(t, dict) for t in items):
            raise self.fail(key, "each entry must be a table ([[" + key + "]])")
        return [_Table(self.path, t, f"{self.where}{key}[{i}].") for i, t in enumerate(items)]

    def unknown(self, allowed: set[str]) -> None:
        for key in self.data:
            if key not in allowed:
                raise self.fail(key, f"unknown key; expected one of {', '.join(sorted(allowed))}")


def read(name: str | Path) -> Manifest:
    """The manifest of a shipped paper (by name) or at a path, checked: UserError naming file and key."""
    path = locate(name)
    try:
        top = _Table(path, tomllib.loads(path.read_text()))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML: {exc}") from None
    top.unknown({"citation", "protocol", "experiment", "published", "claim", "figure"})
    proto = _Table(path, top.get("protocol", dict), "protocol.")
    proto.unknown({"split", "task", "magnifications", "recipe", "metric"})
    protocol = Protocol(
        proto.choice("split", SPLIT_KINDS),
        proto.choice("task", TASKS),
        _magnifications(proto),
        proto.get("recipe", str),
        proto.choice("metric", ("image", "patient")),
    )
    experiments = tuple(_experiment(t) for t in top.tables("experiment"))
    rows = [e.id for e in experiments]
    if len(set(rows)) < len(rows):
        raise top.fail("experiment", f"ids repeat: {rows}")
    published = tuple(_published(t, rows) for t in top.tables("published"))
    claims = tuple(_claim(t, rows) for t in top.tables("claim"))
    figures = tuple(_figure(t) for t in top.tables("figure"))
    return Manifest(path.stem, path, top.get("citation", str), protocol, experiments, published, claims, figures)


def _magnifications(t: _Table) -> tuple[int, ...]:
    mags = t.get("magnifications", list)
    if not mags or any(m not in MAGNIFICATIONS for m in mags):
        raise t.fail("magnifications", f"{mags!r}: each must be one of {', '.join(map(str, MAGNIFICATIONS))}")
    return tuple(mags)


def _experiment(t: _Table) -> Experiment:
    t.unknown({"id", "method", "regime", "params"})
    return Experiment(t.get("id", str), t.get("method", str), t.choice("regime", REGIMES), t.get("params", dict, {}))


def _figure(t: _Table) -> Figure:
    t.unknown({"kind", "methods"})
    kind, methods = t.choice("kind", FIGURE_KINDS), t.get("methods", list)
    if not methods or not all(isinstance(m, str) for m in methods):
        raise t.fail("methods", f"{methods!r}: name at least one row label")
    if kind == "transfer" and len(methods) != 1:
        raise t.fail("methods", f"{methods!r}: a transfer matrix is one method's")
    return Figure(kind, tuple(methods))


def _statistic(t: _Table, value: str, key: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise t.fail(key, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _published(t: _Table, rows: list[str]) -> Published:
    t.unknown({"row", "statistic", "value", "std", "source", "verified"})
    std = t.get("std", (int, float), None)
    return Published(
        t.choice("row", rows),
        _statistic(t, t.get("statistic", str), "statistic", BOOTSTRAPPED_STATS + PER_FOLD_STATS),
        float(t.get("value", (int, float))),
        None if std is None else float(std),
        t.get("source", str),
        t.get("verified", str),
    )


def _claim(t: _Table, rows: list[str]) -> Claim:
    t.unknown({"text", "kind", "row", "than", "statistics", "value", "within"})
    kind = t.choice("kind", KINDS)
    than = t.get("than", (str, list), [])
    than = tuple([than] if isinstance(than, str) else than)
    for other in than:
        if other not in rows:
            raise t.fail("than", f"{other!r} is not one of {', '.join(rows)}")
    allowed = {"at_least": BOOTSTRAPPED_STATS, "best": BOOTSTRAPPED_STATS, "ratio": TIMINGS}.get(
        kind, BOOTSTRAPPED_STATS + PER_FOLD_STATS
    )
    statistics = tuple(_statistic(t, s, "statistics", allowed) for s in t.get("statistics", list))
    if not statistics:
        raise t.fail("statistics", "names no statistic")
    needs_than = {"at_least": 1, "ratio": 1}.get(kind)
    if (needs_than and len(than) != needs_than) or (kind == "best" and not than):
        raise t.fail("than", f"a {kind} claim compares with {'one row' if needs_than else 'other rows'}")
    value = t.get("value", (int, float), None if kind in ("at_least", "best") else ...)
    return Claim(
        t.get("text", str),
        kind,
        t.choice("row", rows),
        statistics,
        than,
        None if value is None else float(value),
        float(t.get("within", (int, float), 0.0)),
    )


# --- intervals and verdicts ----------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A measured value with its 95% interval (NaN when nothing measured it)."""

    value: float
    lo: float
    hi: float

    @property
    def missing(self) -> bool:
        return math.isnan(self.value)


NOTHING = Estimate(math.nan, math.nan, math.nan)


def above(e: Estimate, line: float) -> str:
    """Holds when the whole interval is at or above `line`, fails when it is all below."""
    if math.isnan(e.lo) or math.isnan(e.hi):
        return UNSURE
    return HOLDS if e.lo >= line else FAILS if e.hi < line else UNSURE


def inside(e: Estimate, centre: float, within: float) -> str:
    """Holds when the whole interval lies in centre ± within, fails when it lies wholly outside."""
    if math.isnan(e.lo) or math.isnan(e.hi):
        return UNSURE
    lo, hi = centre - within, centre + within
    if lo <= e.lo and e.hi <= hi:
        return HOLDS
    return FAILS if e.hi < lo or e.lo > hi else UNSURE


def combine(verdicts: Sequence[str]) -> str:
    """All of them: fails when one fails, holds when all hold."""
    return FAILS if FAILS in verdicts else HOLDS if all(v == HOLDS for v in verdicts) else UNSURE


def over_folds(values: Sequence[float]) -> Estimate:
    """Mean and t-interval over folds (for what the bootstrap does not draw)."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return NOTHING
    mean = float(x.mean())
    if len(x) == 1:
        return Estimate(mean, math.nan, math.nan)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=mean, scale=x.std(ddof=1) / math.sqrt(len(x)))
    return Estimate(mean, float(lo), float(hi))


def interval(draws: np.ndarray) -> tuple[float, float]:
    """95% percentile interval of the draws where the statistic is defined (NaN, NaN when it never is:
    a magnification no fold tests)."""
    defined = draws[~np.isnan(draws)]
    if not len(defined):
        return math.nan, math.nan
    lo, hi = percentile_interval(defined, axis=0)
    return float(lo), float(hi)


def estimates(row: Row) -> dict[str, Estimate]:
    """Every statistic of a row: bootstrap intervals, and intervals over folds for per-fold-only metrics."""
    boot = uncertainty([row])
    assert boot is not None
    found = {s: Estimate(float(boot.mean(s)[0]), *interval(boot.draws[s][:, 0])) for s in BOOTSTRAPPED_STATS}
    for m in PER_FOLD_STATS:
        found[m] = over_folds([getattr(c.scored.metrics.overall, m) for c in _scored(row)])
    return found


class Measured:
    """The rows measured under each protocol (side -> experiment id -> row); a row's statistics are
    bootstrapped once, however many lines and claims read them (both sides may share a row)."""

    def __init__(self, rows: dict[str, dict[str, Row]]):
        self.rows = rows
        self._estimates: dict[int, dict[str, Estimate]] = {}

    def estimate(self, side: str, row: str, statistic: str) -> Estimate:
        found = self.rows[side].get(row)
        if found is None:
            return NOTHING
        if id(found) not in self._estimates:
            self._estimates[id(found)] = estimates(found)
        return self._estimates[id(found)][statistic]


def _scored(row: Row) -> list:
    return [c for c in row.folds.values() if c.scored and c.scored.metrics]


def paired(a: Row, b: Row, statistic: str) -> Estimate:
    """a minus b, the patient bootstrap drawing the same patients for both (they share test folds)."""
    boot = uncertainty([a, b])
    assert boot is not None
    means = boot.mean(statistic)
    return Estimate(float(means[0] - means[1]), *interval(boot.draws[statistic][:, 0] - boot.draws[statistic][:, 1]))


def unpaired(a: Estimate, b: Estimate) -> Estimate:
    """a minus b measured on different splits: each side's half-widths added in quadrature."""
    d = a.value - b.value
    return Estimate(d, d - math.hypot(a.value - a.lo, b.hi - b.value), d + math.hypot(a.hi - a.value, b.value - b.lo))


def timing(row: Row, key: str) -> float:
    values = [getattr(c.record.timing, key) for c in row.folds.values() if c.record and c.record.timing]
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else math.nan


def verdict(claim: Claim, measured: Measured, side: str) -> str:
    """A claim decided on the rows measured under one protocol (`side`)."""
    rows = measured.rows[side]
    if any(r not in rows for r in (claim.row, *claim.than)):
        return UNSURE
    mine = rows[claim.row]
    found = []
    for s in claim.statistics:
        if claim.kind == "at_least":
            found.append(above(paired(mine, rows[claim.than[0]], s), -claim.within / 100))
        elif claim.kind == "best":
            found.append(combine([above(paired(mine, rows[o], s), 0.0) for o in claim.than]))
        elif claim.kind == "equals":
            assert claim.value is not None
            found.append(inside(measured.estimate(side, claim.row, s), claim.value / 100, claim.within / 100))
        else:  # ratio of throughputs: one measurement each, no sampling interval
            assert claim.value is not None
            r = timing(mine, s) / timing(rows[claim.than[0]], s)
            found.append(inside(Estimate(r, r, r), claim.value, claim.within))
    return combine(found)


# --- the page ------------------------------------------------------------------------------------


def _text(e: Estimate) -> str:
    if e.missing:
        return "–"
    interval = "" if math.isnan(e.lo) else f" [{100 * e.lo:.1f}, {100 * e.hi:.1f}]"
    return f"{100 * e.value:.1f}{interval}"


def row_label(manifest: Manifest, row: str, measured: Measured) -> str:
    e = manifest.experiment(row)
    found = next((m[row] for m in measured.rows.values() if row in m), None)
    quick = found is not None and recipe_of(found.first) == "quick"
    params = "".join(f" {k}={v}" for k, v in e.params.items())
    return f"{row} (`{e.method}{params}`, {e.regime}{', ' + QUICK if quick else ''})"


def lines(manifest: Manifest, measured: Measured) -> list[list[str]]:
    """published | paper's protocol | leak-free | difference, per published number, then the headline
    of each row whose headline was not published."""
    wanted = [(p.row, p.statistic, p) for p in manifest.published]
    shown = {(p.row, p.statistic) for p in manifest.published}
    wanted += [(e.id, HEADLINE.name, None) for e in manifest.experiments if (e.id, HEADLINE.name) not in shown]
    out = []
    for row, statistic, published in wanted:
        paper, free = measured.estimate(PAPER, row, statistic), measured.estimate(LEAK_FREE, row, statistic)
        shown = (
            "–"
            if published is None
            else f"{published.value:g}" + (f" ± {published.std:g}" if published.std is not None else "")
        )
        out.append([row_label(manifest, row, measured), statistic, shown, _text(paper), _text(free),
                    _text(unpaired(paper, free))])  # fmt: skip
    return out


HEADERS = ["row", "statistic", "published", "paper's protocol (95% CI)", "leak-free (95% CI)", "difference"]


def table(manifest: Manifest, measured: Measured) -> str:
    return tabulate(lines(manifest, measured), HEADERS, tablefmt="github", disable_numparse=True)


def verdicts(manifest: Manifest, measured: Measured) -> list[tuple[Claim, str, str]]:
    return [(c, verdict(c, measured, PAPER), verdict(c, measured, LEAK_FREE)) for c in manifest.claims]


def verdict_table(found: list[tuple[Claim, str, str]]) -> str:
    body = [[c.text, c.kind, paper, free] for c, paper, free in found]
    return tabulate(body, ["claim", "check", "paper's protocol", "leak-free"], tablefmt="github", disable_numparse=True)


def cost_table(manifest: Manifest, measured: Measured) -> str:
    """What each measured row's folds cost: folds, parameters and epochs run (deep rows), training
    seconds per fold (every model of the fold: four in the ms regime), model FPS, where it ran."""
    body, seen = [], set()
    for e in manifest.experiments:
        for side in (PAPER, LEAK_FREE):
            row = measured.rows[side].get(e.id)
            if row is None or id(row) in seen:
                continue
            seen.add(id(row))
            records = [c.record for c in row.folds.values() if c.record]
            info = [r.method.first_fit_info for r in records]
            params = next((i["parameters"] for i in info if i.get("parameters")), None)
            epochs = [i["epochs_run"] for i in info if "epochs_run" in i]
            fit = float(np.mean([r.timing.fit_seconds for r in records if r.timing]))
            where = next((f"{i['device']}, {i.get('threads', '?')} threads" for i in info if "device" in i), "cpu")
            shared = side == PAPER and measured.rows[LEAK_FREE].get(e.id) is row
            body.append([
                e.id, "both" if shared else side, str(len(records)),
                "–" if params is None else f"{params / 1e6:.1f} M",
                "–" if not epochs else f"{np.mean(epochs):.0f} ({min(epochs)}–{max(epochs)})",
                f"{fit:.1f}", PER_SECOND.text(timing(row, "fps_model")), where,
            ])  # fmt: skip
    if not body:
        return "No row of this paper's has a record here yet."
    headers = ["row", "protocol", "folds", "parameters", "epochs run", "training s per fold", "FPS model", "device"]
    return tabulate(body, headers, tablefmt="github", disable_numparse=True)


@dataclass(frozen=True)
class Part:
    """What a page shows for one dataset: the side-by-side table, the verdicts, notes and figures."""

    title: str  # the dataset, as the leaderboard titles it ("" on a page of one dataset)
    table: str
    decided: list[tuple[Claim, str, str]]
    notes: list[str]
    costs: str
    figures: list[str] = field(default_factory=list)  # Markdown image lines


def part(manifest: Manifest, measured: Measured, notes: list[str], title: str = "") -> Part:
    return Part(title, table(manifest, measured), verdicts(manifest, measured), notes, cost_table(manifest, measured))


def page(manifest: Manifest, parts: Sequence[Part], generated: str) -> str:
    """The Markdown page: how it was made (`generated`), the protocols, then per dataset the
    side-by-side table, the claims' verdicts and the figures; last, the published numbers' sources."""
    p = manifest.protocol
    text = [
        f"# {manifest.name}: the paper's claims, re-measured",
        "",
        f"{manifest.citation}",
        "",
        f"{generated}; values in %.",
        "",
        f"- The paper's protocol: {p.split} split, {p.task} task, magnifications "
        f"{', '.join(f'{m}X' for m in p.magnifications)}, {p.metric}-level headline; recipe: {p.recipe}",
        f"- Leak-free: bhbench's seeded patient-disjoint 70/30 splits ({LEAK_FREE_SPLIT}), same task and rows.",
        "- Intervals: patient-level bootstrap (per-fold metrics the bootstrap does not draw: a t-interval over "
        "folds). The difference (the protocol's inflation) is paper's protocol minus leak-free; its interval adds "
        "the two half-widths in quadrature (different splits, not paired).",
        f"- A deep row trained with its method's default quick recipe says so ({QUICK}); "
        "a row no record holds shows –, and a claim on it cannot be told.",
        "- Claims: holds / does not hold when the 95% interval decides; otherwise cannot tell at this data size.",
        "",
    ]
    level = "###" if any(pt.title for pt in parts) else "##"
    for pt in parts:
        if pt.title:
            text += [f"## {pt.title}", ""]
        text += [*(f"- {n}" for n in pt.notes), *([""] if pt.notes else []), pt.table, ""]
        text += [f"{level} Claims", "", verdict_table(pt.decided), ""]
        text += [f"{level} What a fold cost", "", pt.costs, ""]
        text += [line for figure in pt.figures for line in (figure, "")]
    text += ["## Published numbers", ""]
    sources = [[p.row, p.statistic, f"{p.value:g}", p.source, p.verified] for p in manifest.published]
    text += [tabulate(sources, ["row", "statistic", "value", "source", "verified"], tablefmt="github"), ""]
    return "\n".join(text)


# --- finding the rows among the leaderboard's sections ------------------------------------------


def _row(sections: Sequence[Section], protocol: RunProtocol, e: Experiment) -> Row | None:
    """The experiment's row under `protocol`: its method with exactly the manifest's parameters
    changed from the defaults, not tuned, with every fold and not failed by an audit."""
    section = next((s for s in sections if s.protocol == protocol), None)
    if section is None:
        return None
    found = [
        r for r in section.rows
        if r.name == e.method and r.block not in ("audit_failed", "incomplete") and changed_params(r) == e.params
    ]  # fmt: skip
    return max(found, key=lambda r: len(r.folds), default=None)


def measure(manifest: Manifest, sections: Sequence[Section]) -> tuple[Measured, list[str]]:
    """Each experiment's row under the paper's protocol and the leak-free one, among the sections
    of one dataset (nothing is run), and notes on how the paper's protocol was met. Without official
    fold files (no section uses them) the paper's side is the leak-free split, as `bhbench paper` runs it."""
    split, notes = manifest.protocol.split, []
    if split == "official" and not any(s.protocol.split == "official" for s in sections):
        split = LEAK_FREE_SPLIT
        notes.append("no official fold files for this data: the paper's protocol runs on the leak-free split")
    rows: dict[str, dict[str, Row]] = {}
    for side, side_split in ((PAPER, split), (LEAK_FREE, LEAK_FREE_SPLIT)):
        found = {}
        for e in manifest.experiments:
            protocol = RunProtocol(task=manifest.protocol.task, regime=e.regime, split=side_split)
            row = _row(sections, protocol, e)
            if row is not None:
                found[e.id] = row
        rows[side] = found
    return Measured(rows), notes


def _figure_rows(manifest: Manifest, sections: Sequence[Section]) -> list[Section]:
    """The sections a figure draws from: the paper's task, the mi regime and the leak-free split, at any
    training fraction and training and test magnifications."""
    base = RunProtocol(task=manifest.protocol.task, regime="mi", split=LEAK_FREE_SPLIT)
    plain = {"train_fraction": 1.0, "train_mags": None, "test_mags": None}
    return [s for s in sections if replace(s.protocol, **plain) == base]


def draw(
    manifest: Manifest, sections: Sequence[Section], tables: dict[str, pd.DataFrame], slug: str
) -> tuple[list[str], dict[str, bytes]]:
    """The manifest's figures on one dataset's sections: Markdown image lines (relative to the page
    in PAGES/) and the SVGs by name in FIGURES/. A figure none of whose points was run is left out."""
    drawn_from = _figure_rows(manifest, sections)
    table = curves.points(drawn_from, tables)
    lines, svgs = [], {}
    for f in manifest.figures:
        chosen = table[table["method"].isin(f.methods)] if len(table) else table
        name = f"{slug}-{manifest.name}-{f.kind.replace('_', '-')}.svg"
        if f.kind == "learning_curve":
            shown = chosen[chosen["train_mags"].isna() & chosen["test_mags"].isna()] if len(chosen) else chosen
            if len(shown) and (shown["train_fraction"] < 1).any():
                svgs[name] = curves.learning_curve(shown, f"{manifest.name}: learning curves ({slug})")
                drawn = ", ".join(sorted(set(shown["method"])))
                lines.append(f"![learning curves: {drawn}](../{FIGURES}/{name})")
        elif len(chosen) and not np.isnan(curves.transfer_grid(chosen, f.methods[0])).all():
            title = f"{f.methods[0]}: trained at / tested at ({slug})"
            svgs[name] = curves.transfer_matrix(chosen, f.methods[0], title)
            lines.append(f"![cross-magnification transfer: {f.methods[0]}](../{FIGURES}/{name})")
    return lines, svgs


def board_page(
    manifest: Manifest, found: Sequence[Section], tables: dict[str, pd.DataFrame]
) -> tuple[str | None, dict[str, bytes]]:
    """The paper's page on the leaderboard: a part per dataset holding any of its rows or its figures'
    points (None when no dataset does), and the figures it draws."""
    parts, svgs = [], {}
    for dataset in dict.fromkeys(s.dataset.id for s in found):
        sections = [s for s in found if s.dataset.id == dataset]
        measured, notes = measure(manifest, sections)
        lines, drawn = draw(manifest, sections, tables, dataset)
        if not any(measured.rows.values()) and not lines:
            continue
        parts.append(replace(part(manifest, measured, notes, dataset_title(sections[0].dataset)), figures=lines))
        svgs.update(drawn)
    if not parts:
        return None, {}
    generated = (
        f"Generated by `bhbench leaderboard` from the board's records (`bhbench paper {manifest.name}` runs what is "
        "missing on one dataset and writes its part)"
    )
    return page(manifest, parts, generated), svgs
