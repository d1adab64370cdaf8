"""The label-permutation audit: is a method's score learned from its training labels?

The method is fitted again, through the ordinary runner and worker (and sandbox), on training labels
permuted among the training patients by a secret draw: every patient keeps one label, the labels'
counts are unchanged, class and subtype move together, and as few patients as the class sizes allow
keep their own label (none when no class holds more than half of them). It is then scored against
the true test labels. A learner follows the labels it is handed, so its score falls to chance or
below; a method whose answers do not come from its training labels (a shipped table of image hashes,
a regenerated synthetic cohort, an import-time trick) keeps its score.

Why the permutation is drawn against the truth rather than uniformly: a uniform draw leaves a learner
free to split the test images along the data's own structure (which is the class) with a random sign,
so a single honest refit lands far above chance about half the time (measured on the toy learner:
p = 0.002 on two folds of eight). Handed labels that disagree with the truth, a learner's split points
the wrong way; only knowledge from elsewhere keeps the score up.

Pass rule. Under "the predictions owe nothing to the true labels" the true labels are exchangeable
among the test patients: relabelling the test patients at random (whole patients, the label counts
kept) gives the distribution of the headline by chance, with the patient-level spread of the fold
(the unit the leaderboard's bootstrap draws). The p-value is the share of `NULL_DRAWS` relabellings
(one per fold, the folds' headlines averaged) that score at least the permuted-label headline. The
audit fails when p <= ALPHA. A memoriser at 100% sits above every relabelling (p at its floor, 1e-4);
an honest learner, skilled or near chance, and a constant predictor (the `majority` row: every
relabelling scores the same) are not significant. ALPHA is small because a failure removes a row
from the ranking.

Rounds. One draw of permuted labels can still, now and then, hand a weak learner a training set whose
split points the true way (where patients keep their own label, or the relabelled group is atypical):
on the tiny synthetic set the toy learner was significant in 3 of 150 single-round audits, 20 times
ALPHA. So a significant round is followed by another from fresh draws, up to ROUNDS, and the audit
fails only when every round is significant (the largest p-value decides: an intersection-union test
at level ALPHA). A shipped table or a regenerated cohort scores the same in every round; an honest
method pays for a second round only after a first that looked significant.

When the test part is so small that no relabelling can reach ALPHA (a fold of the 22-patient real
mini set has a handful of test patients) the verdict is `inconclusive`, never `pass`; `--all-folds`
pools the folds and usually decides. The draw itself is never written: the audit file keeps a
SHA-256 commitment to it.

What it cannot catch: a memoriser that compares the training labels with its own table and plays
honest when they disagree passes (it then scores like the learner it pretends to be, in the audit).
On synthetic data `--private-cohort` closes that gap: the honest fit is repeated on a cohort drawn
from a secret seed (`private_gap`), where no table knows an image, and a public score higher beyond
the intervals fails. On public real data only review, size limits and declared weights remain.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from bhbench import results
from bhbench.blind import Area, partition_id
from bhbench.errors import UserError
from bhbench.protocol import MAGNIFICATIONS
from bhbench.util import atomic_write

if TYPE_CHECKING:  # the leaderboard reads audit files without loading the runner
    from bhbench import runner
    from bhbench.splits import Fold

ALPHA = 0.001
NULL_DRAWS = 9999
ROUNDS = 3  # a failure must be significant in this many independent rounds of permuted fits
AUDIT_FILE = "audit.json"
VERDICTS = ("pass", "fail", "inconclusive", "error")


@dataclass(frozen=True)
class Relabel:
    """One fold's permuted training labels, as the runner applies them (`runner.Plan.relabel`)."""

    given: dict[tuple[str, str], tuple[str, str]]  # (patient, true subtype) -> (tumor class, subtype) handed over
    salt: str  # secret: the audit's jobs get a blind area (handles, cache) no honest run shares

    def rows(self, rows: pd.DataFrame) -> pd.DataFrame:
        new = [self.given[k] for k in zip(rows["patient"], rows["subtype"], strict=True)]
        return rows.assign(tumor_class=[c for c, _ in new], subtype=[s for _, s in new])

    def partition(self, partition: str) -> str:
        # Another area: nothing a method cached (labels by handle included) while fitted on the true
        # labels of this fold can be compared with what the audit hands it.
        return hashlib.sha256(f"{partition}|audit|{self.salt}".encode()).hexdigest()


@dataclass(frozen=True)
class FoldAudit:
    fold: int
    honest: float | None  # headline PRR of the ordinary fit
    permuted: float | None  # headline PRR of the fit on permuted labels, scored on the true labels
    chance: float | None  # mean headline over random relabellings of the test patients
    kept: float  # share of training patients handed their own label (0 where the class sizes allow)
    test_patients: int
    error: str | None = None  # why the honest or the permuted fit failed


@dataclass(frozen=True)
class AuditResult:
    verdict: str  # one of VERDICTS
    reason: str
    method: str
    params_hash: str
    code: str  # the method's code fingerprint (the leaderboard applies an audit to that code only)
    dataset: str
    synthetic: bool
    protocol: str
    folds: tuple[FoldAudit, ...]
    honest: float | None
    permuted: float | None
    chance: float | None
    chance_bound: float | None  # the (1 - ALPHA) quantile of the relabelled headlines
    p_value: float | None
    min_p_value: float  # the smallest p-value these test patients allow
    alpha: float
    null_draws: int
    seed_commitment: str  # sha256 of the secret draw's seed
    sandbox: str
    created: str
    seconds: float
    bhbench: str  # the bhbench version the audited records were made with
    private_cohort: dict[str, Any] | None = None  # `CohortGap` of the private-cohort check, when run
    rounds: int = 1  # rounds of permuted fits drawn (ROUNDS when every one was significant)

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def to_json(self) -> dict[str, Any]:
        return {"schema": 1, **asdict(self)}


def draw_relabel(train: pd.DataFrame, labels: Callable[[pd.DataFrame], np.ndarray], rng: np.random.Generator,
                 salt: str) -> tuple[Relabel, float]:  # fmt: skip
    """The permuted labels of one fold's training patients, and the share of patients handed their own.

    A unit is a (patient, subtype) pair (one BreaKHis token carries two subtypes); its label moves whole.
    Units are lined up by true label (classes and units within them in random order) and each is handed
    the label of the unit `m` places on, `m` the largest class's size: no unit keeps its label where that
    is possible (2m <= n), as few as possible otherwise, and the label counts are kept."""
    units = train[["patient", "tumor_class", "subtype"]].drop_duplicates().sort_values(["patient", "subtype"])
    units = units.reset_index(drop=True)
    codes = labels(units)
    kinds, counts = np.unique(codes, return_counts=True)
    order = np.concatenate([rng.permutation(np.flatnonzero(codes == c)) for c in rng.permutation(kinds)])
    source = np.empty(len(units), dtype=int)
    source[order] = np.roll(order, -int(counts.max()))
    given = {
        (p, s): (units["tumor_class"].iloc[j], units["subtype"].iloc[j])
        for p, s, j in zip(units["patient"], units["subtype"], source, strict=True)
    }
    return Relabel(given, salt), float((codes[source] == codes).mean())


@dataclass(frozen=True)
class TestOutcome:
    """One fold's permuted-label predictions with what the null relabels: test units and their labels."""

    pred: np.ndarray  # predicted class per test image
    unit: np.ndarray  # test unit (patient, subtype) code per image
    unit_labels: np.ndarray  # true label per unit
    cell: np.ndarray  # (patient token, magnification) code per image: what the headline averages
    cell_mag: np.ndarray  # magnification code of each cell


def test_outcome(frame: pd.DataFrame, pred: np.ndarray, y: np.ndarray) -> TestOutcome:
    """`frame`: the test images' rows (patient, subtype, magnification), `y` their true labels."""
    unit_keys = list(zip(frame["patient"], frame["subtype"], strict=True))
    units = {k: i for i, k in enumerate(sorted(set(unit_keys)))}
    unit = np.array([units[k] for k in unit_keys])
    unit_labels = np.zeros(len(units), dtype=int)
    unit_labels[unit] = y
    mag = np.array([MAGNIFICATIONS.index(int(m)) for m in frame["magnification"]])
    patient = np.unique(frame["patient"].to_numpy(), return_inverse=True)[1]
    cells, cell = np.unique(patient * len(MAGNIFICATIONS) + mag, return_inverse=True)
    return TestOutcome(np.asarray(pred), unit, unit_labels, cell, cells % len(MAGNIFICATIONS))


def headlines(outcome: TestOutcome, unit_labels: np.ndarray) -> np.ndarray:
    """The headline (mean over magnifications of the patient recognition rate) for each row of unit
    labels (draws x units), as `Metrics.headline` computes it for one."""
    correct = (outcome.pred[None, :] == unit_labels[:, outcome.unit]).astype(float)  # (draws, images)
    n_cells = outcome.cell_mag.size
    onehot = np.zeros((len(outcome.cell), n_cells))
    onehot[np.arange(len(outcome.cell)), outcome.cell] = 1.0
    scores = (correct @ onehot) / onehot.sum(0)  # (draws, cells): each patient's score at a magnification
    mags = np.unique(outcome.cell_mag)
    per_mag = np.stack([scores[:, outcome.cell_mag == m].mean(1) for m in mags], axis=1)
    return per_mag.mean(1)


def labellings(unit_labels: np.ndarray) -> float:
    """log of the number of distinct relabellings of these units (a multinomial coefficient)."""
    counts = np.bincount(unit_labels)
    return math.lgamma(len(unit_labels) + 1) - sum(math.lgamma(c + 1) for c in counts)


@dataclass(frozen=True)
class NullTest:
    observed: float
    chance: float
    bound: float
    p_value: float
    min_p_value: float


def null_test(outcomes: list[TestOutcome], rng: np.random.Generator, draws: int = NULL_DRAWS) -> NullTest:
    """The permuted-label headline (mean over folds) against random relabellings of the test patients."""
    observed = float(np.mean([headlines(o, o.unit_labels[None])[0] for o in outcomes]))
    null = np.zeros(draws)
    for o in outcomes:
        order = np.argsort(rng.random((draws, len(o.unit_labels))), axis=1)
        null += headlines(o, o.unit_labels[order])
    null /= len(outcomes)
    p = (1 + int((null >= observed - 1e-12).sum())) / (draws + 1)
    log_count = sum(labellings(o.unit_labels) for o in outcomes)
    floor = max(1 / (draws + 1), math.exp(-log_count) if log_count < 700 else 0.0)
    return NullTest(observed, float(null.mean()), float(np.quantile(null, 1 - ALPHA)), p, floor)


def verdict(test: NullTest | None, failure: str | None, rounds: int = 1) -> tuple[str, str]:
    """The pass rule (module docstring) on the permuted-label headline and its relabelled null."""
    if failure:
        return "fail", f"the fit on permuted labels failed: {failure}"
    assert test is not None
    where = (
        f"permuted-label PRR {100 * test.observed:.1f} vs chance {100 * test.chance:.1f} "
        f"(bound {100 * test.bound:.1f}, p = {test.p_value:.2g})"
    )
    if test.p_value <= ALPHA:
        again = f" in each of {rounds} independent draws" if rounds > 1 else ""
        return "fail", f"keeps its score without its training labels{again}: {where}"
    if test.min_p_value > ALPHA:
        return "inconclusive", (
            f"too few test patients to tell: no relabelling can reach p <= {ALPHA:g} "
            f"(the smallest p-value they allow is {test.min_p_value:.2g}); {where}; try --all-folds"
        )
    return "pass", f"does not keep its score without its training labels: {where}"


GAP_Z = 3.09  # one-sided normal quantile of ALPHA: the private cohort's gap is held to the same error rate


@dataclass(frozen=True)
class CohortGap:
    """The honest fit on the public synthetic cohort against the same fit on a private cohort drawn from
    a secret seed (same distribution, same protocol and folds). Flagged when the public headline beats
    the private one by more than GAP_Z standard errors of the difference, each from the patient-level
    bootstrap of its test patients (the leaderboard's intervals): a score that owes something to knowing
    the public images."""

    cohort: str  # the private cohort's dataset id
    seed: str  # revealed after the check (commit-reveal: the commitment was made before)
    seed_commitment: str
    public: float | None
    private: float | None
    gap: float | None
    bound: float | None
    flagged: bool
    error: str | None = None


def _spread(plan: runner.Plan, found: list[tuple[Path, Any]]) -> float:
    """Bootstrap standard error of the fold-averaged headline of records (their predictions)."""
    from bhbench.scoring import FoldOutcomes, bootstrap

    table = plan.dataset.table.set_index("filename")
    folds = []
    for path, record in found:
        frame = results.load_predictions(path, record)
        rows = table.loc[frame["filename"]].reset_index()
        proba = frame[[f"p_{c}" for c in plan.protocol.classes]].to_numpy()
        folds.append(
            FoldOutcomes(
                np.unique(rows["patient"].to_numpy(), return_inverse=True)[1],
                np.array([MAGNIFICATIONS.index(int(m)) for m in rows["magnification"]]),
                plan.protocol.labels(rows),
                proba[None],
                np.array([True]),
            )
        )
    return float(np.nanstd(bootstrap(folds, resamples=2000).draws["headline"][:, 0]))


def private_gap(
    plan: runner.Plan,
    spec: runner.MethodSpec,
    options: runner.Options,
    public: dict[int, tuple[Path, Any]],
    on_done: Callable[[runner.JobResult], None] | None = None,
) -> CohortGap:
    """Fit the method on a private cohort of `plan`'s synthetic distribution, on the folds of `public`
    (fold -> its honest record's path and record), and compare the headlines."""
    from bhbench import runner
    from bhbench.blind import forget
    from bhbench.data.sources import private_cohort

    if not plan.dataset.synthetic:
        raise UserError("--private-cohort draws a synthetic cohort: it needs synthetic data, not real BreaKHis")
    cohort = private_cohort("secret", plan.dataset.root)
    base = {"cohort": cohort.id, "seed": str(cohort.seed), "seed_commitment": cohort.commitment}
    with tempfile.TemporaryDirectory(prefix="bhbench-private-run-") as scratch:
        mine = replace(options, results=Path(scratch), force=True, fps_images=0)
        other = runner.make_plan(cohort, plan.protocol, None, mine)
        try:
            jobs = [j for j in runner.make_jobs(other, [spec], mine) if j.fold.index in public]
            found = [(r.job.where.record, r.record) for r in runner.run(other, jobs, mine, on_done)]
            failed = next((r for _, r in found if not r.ok), None)
            if failed is not None or not found:
                error = failed.error if failed is not None else "no fold ran"
                return CohortGap(**base, public=None, private=None, gap=None, bound=None, flagged=True, error=error)
            priv = float(np.mean([r.metrics.headline for _, r in found]))
            spread = math.hypot(_spread(other, found), _spread(plan, list(public.values())))
        finally:
            forget(cohort, other.split.folds)
    pub = float(np.mean([r.metrics.headline for _, r in public.values()]))
    gap = pub - priv
    return CohortGap(**base, public=pub, private=priv, gap=gap, bound=GAP_Z * spread, flagged=gap > GAP_Z * spread)


class Round(NamedTuple):
    """One round of permuted fits over the audited folds, from its own draws of the secret generator."""

    folds: list[FoldAudit]
    test: NullTest | None  # None when a fit failed
    failure: str | None  # the first permuted fit that failed, and why

    @property
    def significant(self) -> bool:
        return self.failure is None and self.test is not None and self.test.p_value <= ALPHA


def _permuted_round(
    plan: runner.Plan,
    spec: runner.MethodSpec,
    options: runner.Options,
    chosen: list[Fold],
    honest: dict[int, results.RunRecord | None],
    where: results.RecordPath,
    rng: np.random.Generator,
    salt: str,
    on_done: Callable[[runner.JobResult], None] | None,
) -> Round:
    from bhbench import runner

    table = plan.dataset.table.set_index("filename")
    per_fold, outcomes, failure = [], [], None
    with tempfile.TemporaryDirectory(prefix="bhbench-audit-") as scratch:
        for fold in chosen:
            train = table.loc[sorted(fold.train)].reset_index()
            relabel, kept = draw_relabel(train, plan.protocol.labels, rng, salt)
            record = honest.get(fold.index)
            if record is None or not record.ok:  # nothing to compare with: the permuted fit is not run
                reason = f"the ordinary fit failed: {record.error if record else 'no record'}"
                per_fold.append(FoldAudit(fold.index, None, None, None, round(kept, 6), 0, reason))
                continue
            mine = replace(plan, relabel=relabel)
            fold_where = replace(where, results=Path(scratch), fold=fold.index)
            job = runner.Job(spec, fold, fold_where)
            # Timed for nothing, kept nowhere but in memory: the permuted fit's record is not a record.
            scratch_options = replace(options, results=Path(scratch), force=True, fps_images=0)
            permuted = runner.run(mine, [job], scratch_options, on_done)[0].record
            # The audit's own blind area (its handles and whatever the method cached) serves no later run.
            shutil.rmtree(Area(relabel.partition(partition_id(fold.train, fold.test))).root, ignore_errors=True)
            error = None
            if not permuted.ok:
                error = permuted.error or "no reason recorded"
                failure = failure or f"fold {fold.index}: {error}"
            outcome = None
            if permuted.ok and permuted.metrics is not None:
                frame = results.load_predictions(fold_where.record, permuted)
                proba = frame[[f"p_{c}" for c in plan.protocol.classes]].to_numpy()
                rows = table.loc[frame["filename"]].reset_index()
                outcome = test_outcome(rows, proba.argmax(1), plan.protocol.labels(rows))
                outcomes.append(outcome)
            per_fold.append(
                FoldAudit(
                    fold=fold.index,
                    honest=record.metrics.headline if record.metrics else None,
                    permuted=permuted.metrics.headline if permuted.metrics else None,
                    chance=float(headlines(outcome, _shuffled(outcome, rng)).mean()) if outcome else None,
                    kept=round(kept, 6),
                    test_patients=len(set(fold_patients(plan, fold))),
                    error=error,
                )
            )
    test = null_test(outcomes, rng) if outcomes and not failure else None
    return Round(per_fold, test, failure)


def audit(
    plan: runner.Plan,
    spec: runner.MethodSpec,
    options: runner.Options,
    folds: list[int] | None = None,
    on_done: Callable[[runner.JobResult], None] | None = None,
    private: bool = False,
) -> AuditResult:
    """Audit one method on `folds` (default: the split's first) and write `audit.json` in its row's
    results folder. The honest fits are the ordinary records of `options.results` (run when missing).
    `private`: also compare them with the same fits on a private synthetic cohort (`private_gap`)."""
    from bhbench import runner

    started = dt.datetime.now(dt.UTC)
    wanted = folds or [plan.split.folds[0].index]
    chosen = [f for f in plan.split.folds if f.index in wanted]
    if len(chosen) != len(set(wanted)):
        known = [f.index for f in plan.split.folds]
        raise UserError(f"fold(s) {sorted(set(wanted) - set(known))} are not in this split (it has {known})")
    honest_jobs = [j for j in runner.make_jobs(plan, [spec], options) if j.fold.index in wanted]
    honest = {r.job.fold.index: r.record for r in runner.run(plan, honest_jobs, options, on_done)}

    seed = secrets.randbits(128)
    commitment = hashlib.sha256(f"bhbench-audit:{seed}".encode()).hexdigest()
    rng = np.random.default_rng(seed)
    salt = secrets.token_hex(16)
    # A fresh round of draws only while every round so far is significant; the least significant decides.
    rounds: list[Round] = []
    while len(rounds) < ROUNDS and (not rounds or rounds[-1].significant):
        rounds.append(_permuted_round(plan, spec, options, chosen, honest, honest_jobs[0].where, rng, salt, on_done))
    per_fold, test, failure = max(rounds, key=lambda r: r.test.p_value if r.test else 2.0)  # a failed fit decides
    honest_failed = [f for f in per_fold if f.honest is None]
    if honest_failed:
        outcome_verdict = ("error", f"fold {honest_failed[0].fold}: {honest_failed[0].error}; nothing to audit")
    else:
        outcome_verdict = verdict(test, failure, len(rounds))
    gap = None
    if private and outcome_verdict[0] in ("pass", "inconclusive"):
        public = {j.fold.index: (j.where.record, honest[j.fold.index]) for j in honest_jobs}
        gap = private_gap(plan, spec, options, public, on_done)
        if gap.error:
            outcome_verdict = ("fail", f"its fit on a private synthetic cohort failed: {gap.error}")
        elif gap.flagged:
            assert gap.public is not None and gap.private is not None and gap.bound is not None
            outcome_verdict = (
                "fail",
                f"scores PRR {100 * gap.public:.1f} on the public synthetic cohort but {100 * gap.private:.1f} on a "
                f"private one drawn from the same distribution (gap beyond {100 * gap.bound:.1f}, "
                f"{GAP_Z} standard errors): it knows the public images",
            )
    first = next((r for r in honest.values() if r is not None), None)
    result = AuditResult(
        verdict=outcome_verdict[0],
        reason=outcome_verdict[1],
        method=spec.name,
        params_hash=honest_jobs[0].where.params_hash,
        code=(first.method.code_hash if first else None) or runner.code_of(spec.name).hash,
        dataset=plan.dataset.id,
        synthetic=plan.dataset.synthetic,
        protocol=plan.protocol.id,
        folds=tuple(per_fold),
        honest=_mean([f.honest for f in per_fold]),
        permuted=test.observed if test else _mean([f.permuted for f in per_fold]),
        chance=test.chance if test else None,
        chance_bound=test.bound if test else None,
        p_value=test.p_value if test else None,
        min_p_value=test.min_p_value if test else 1.0,
        alpha=ALPHA,
        null_draws=NULL_DRAWS,
        rounds=len(rounds),
        seed_commitment=f"sha256:{commitment}",
        sandbox=options.sandbox,
        created=started.isoformat(timespec="seconds"),
        seconds=round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1),
        bhbench=first.environment.versions.get("bhbench", "") if first else "",
        private_cohort=asdict(gap) if gap else None,
    )
    write(honest_jobs[0].where.folder, result)
    return result


def _shuffled(outcome: TestOutcome, rng: np.random.Generator, draws: int = 999) -> np.ndarray:
    order = np.argsort(rng.random((draws, len(outcome.unit_labels))), axis=1)
    return outcome.unit_labels[order]


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def fold_patients(plan: runner.Plan, fold: Any) -> list[str]:
    table = plan.dataset.table.set_index("filename")
    return table.loc[sorted(fold.test), "patient"].tolist()


def write(folder: Path, result: AuditResult) -> Path:
    path = folder / AUDIT_FILE
    atomic_write(path, json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
    return path


def read(folder: Path) -> dict[str, Any] | None:
    """A row folder's audit, or None when it was never audited (or the file is unreadable)."""
    path = folder / AUDIT_FILE
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("verdict") not in VERDICTS:
        return None
    return doc
