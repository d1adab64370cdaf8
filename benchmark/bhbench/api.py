"""bhbench as a library: every command is one call here, returning typed results and reporting
progress through one callback of small typed events (`bhbench.events`). The CLI only parses
arguments, calls these and prints; tests and perf scripts call them directly.

    from bhbench import api

    result = api.run(["lbp_svm", "majority"], api.Where(task="subtype"))   # on the synthetic default
    for row in result.rows:
        print(row.label, row.mean_headline)

Parameters (`params=`) are `--set` values: a key goes to every selected method that has it, and a
key no selected method has, or a value a method does not allow, is a `UserError` before any job
starts. Methods run in worker processes (sandboxed with `sandbox="on"`); nothing of theirs is
imported here. Ctrl-C during `run` raises `Interrupted`, which says how many jobs were saved.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bhbench import session
from bhbench.config import COMMITTED_RESULTS
from bhbench.errors import DataError, UserError
from bhbench.events import JobFinished, Progress, TrialFinished, ignore, step
from bhbench.session import Revealed, Where

if TYPE_CHECKING:  # importing this module stays light (`bhbench list` goes through it): the rest loads in the calls
    import pandas as pd

    from bhbench import audit as audits
    from bhbench import checks, executors, runner
    from bhbench import reproduce as reproducing
    from bhbench.leaderboard import Checked, Read
    from bhbench.leaderboard import robustness as robust
    from bhbench.record import RunRecord
    from bhbench.registry import Entry

__all__ = [
    "AuditOutcome", "BoardResult", "CheckSummary", "Compared", "Exported", "Interrupted", "MethodInfo", "PaperResult",
    "Parameter", "Reported", "ReproduceResult", "Revealed", "RobustnessResult", "Row", "RunResult", "Standing",
    "TuneInterrupted", "TuneResult", "Where", "audit", "check", "compare", "export", "label", "leaderboard", "method",
    "methods", "paper", "report", "reproduce", "robustness", "run", "tune",
]  # fmt: skip


def methods(pattern: str | None = None, submissions: Path | None = None, progress: Progress = ignore) -> list[Entry]:
    """The registered methods (`registry.Entry`: name, family, tasks, reference...), by family then
    name; `pattern` keeps names matching a shell pattern or one family. Submissions' cards are read,
    never imported."""
    from bhbench import registry

    session.discover(submissions, progress)
    found = registry.list_methods(pattern)
    if pattern and not found:
        registry.resolve([pattern])  # it names no method: raises, saying "did you mean" where one is close
    return found


@dataclass(frozen=True)
class Parameter:
    """One parameter of a method, as `--set` takes it and `tune` explores it."""

    name: str
    type: str  # "float | None"
    default: Any
    constraint: str  # declared choices and intervals: "> 0 and <= 1" ("" for none)
    search: str | None  # what `tune` draws for it ("numbers in [0.1, 1000], log scale"); None: not searched


@dataclass(frozen=True)
class MethodInfo:
    entry: Entry  # the card: family, reference, tasks, summary, details
    parameters: list[Parameter]
    searched: dict[str, str] | None  # the search space by the trial's names (None: nothing to tune)


def method(name: str, submissions: Path | None = None, progress: Progress = ignore) -> MethodInfo:
    """Method `name`'s card, parameters (type, default, constraint) and search space. A submission's
    card is read, never imported; its search space is drawn in a helper process, as `tune` draws it."""
    from bhbench import params, registry, tuning

    session.discover(submissions, progress)
    entry = registry.get(name)
    defaults, space = params.defaults(name), tuning.explored(name)
    searched = space.distributions if space else {}
    parameters = [
        Parameter(p.name, p.type_text(), defaults.get(p.name, p.default), p.constraint_text(),
                  searched.get(p.name, "set by the search space" if space and p.name in space.sets else None))
        for p in entry.info.params
    ]  # fmt: skip
    return MethodInfo(entry, parameters, space.distributions if space else None)


# --- run -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Standing:
    """Where a complete row of the run would rank by mean PRR on the committed leaderboard's section."""

    method: str
    params_hash: str
    headline: float  # mean PRR over the folds
    place: int
    of: int
    board: Path  # the section's record folder
    smoke: bool  # a quick-recipe smoke result: the leaderboard lists it apart, unranked


@dataclass
class Row:
    """One method variant (method and parameters) of a run: its finished jobs, ok or failed, and
    those that ended without a record (a killed array task)."""

    label: str
    jobs: list[runner.JobResult]
    ended: list[executors.Failure] = field(default_factory=list)

    @property
    def records(self) -> list[RunRecord]:
        """The successful records."""
        return [j.record for j in self.jobs if j.record.ok]

    @property
    def failed(self) -> list[runner.JobResult]:
        return [j for j in self.jobs if not j.record.ok]

    @property
    def mean_headline(self) -> float | None:
        """Mean over the successful folds of the headline (mean of per-magnification PRRs)."""
        values = [r.metrics.headline for r in self.records if r.metrics]
        return sum(values) / len(values) if values else None

    @property
    def folds_without_classes(self) -> list[int]:
        """Successful folds trained without some of the task's classes (their records list which)."""
        return [r.split.fold for r in self.records if r.split.missing_classes]


@dataclass
class RunResult:
    """What `run` did: every (method, fold) job's record, grouped into `rows` by method variant."""

    plan: runner.Plan  # the dataset, protocol and split it ran on
    results: Path  # where the records are
    jobs: list[runner.JobResult]  # every finished job (run now or finished earlier), method by method, fold by fold
    failures: list[executors.Failure]  # jobs that ended without writing a record (a killed array task)
    warnings: list[str]  # library warnings of this run, once each
    standings: list[Standing]
    revealed: Revealed | None  # a private cohort's seed, told after the run

    @property
    def records(self) -> list[RunRecord]:
        return [j.record for j in self.jobs]

    @property
    def rows(self) -> list[Row]:
        rows: dict[str, Row] = {}
        for j in self.jobs:
            rows.setdefault(label(j.job.spec), Row(label(j.job.spec), [])).jobs.append(j)
        for f in self.failures:
            rows.setdefault(label(f.job.spec), Row(label(f.job.spec), [])).ended.append(f)
        return list(rows.values())

    @property
    def failed(self) -> list[runner.JobResult]:
        """Jobs whose record is a failure (the method failed; the reason is in the record)."""
        return [j for j in self.jobs if not j.record.ok]

    @property
    def damaged(self) -> list[runner.JobResult]:
        """Jobs that found their fold's record damaged (`job.damaged` says how) and redid the fold."""
        return [j for j in self.jobs if j.job.damaged]

    @property
    def ok(self) -> bool:
        """False when a job failed or a record was found damaged (redone, but something broke it)."""
        return not self.failed and not self.failures and not self.damaged


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during `run`: `saved` of `total` jobs finished and are saved; rerunning the
    same call resumes from there."""

    def __init__(self, saved: int, total: int, revealed: Revealed | None):
        super().__init__(f"{saved} of {total} (method, fold) jobs finished and saved")
        self.saved, self.total, self.revealed = saved, total, revealed


def label(spec: runner.MethodSpec) -> str:
    """A method with the parameters that make this variant: `lbp_svm [C=10]`, `pftas_svm [tuned]`."""
    from bhbench.params import describe

    shown = "tuned" if spec.tuned else describe(spec.name, spec.params)
    return f"{spec.name} [{shown}]" if shown else spec.name


def run(
    methods: str | Sequence[str],
    where: Where | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    device: str | None = None,
    tuned: Sequence[Path] = (),
    results: Path | None = None,
    executor: str | None = None,
    workers: int = 1,
    slurm: executors.SlurmOptions | None = None,
    sandbox: str | None = None,
    timeout: float | None = None,
    memory_gb: float | None = None,
    force: bool = False,
    skip_bad: bool = False,
    fps_images: int = 16,
    submissions: Path | None = None,
    progress: Progress = ignore,
) -> RunResult:
    """Run `methods` (names, wildcards like 'pftas_*' or families) on every fold and write a record
    per (method, fold) under `results` (default $BHBENCH_RESULTS, else ./bhbench-results); finished
    folds are skipped unless `force`.

    where: the data and protocol (`Where(data, folds, task=..., ...)`; None: the synthetic default
    under the default protocol). params: `--set` values; device: for deep methods;
    tuned: `bhbench tune` files, each fold of their method run with its own parameters. executor:
    local, process (`workers` processes) or slurm (`slurm` options); sandbox: auto, on or off
    (default $BHBENCH_SANDBOX, else auto); timeout: seconds per (method, fold) job (None: the default
    of the method's family, `bhbench.limits`; 0: no limit); memory_gb: per (method, fold) worker.
    A fold another process is computing is waited for, with a note, and not computed twice."""
    from bhbench import executors, registry, runner, tuning
    from bhbench.config import results_dir

    session.discover(submissions, progress)
    # A bad method, parameter, tuning file or executor fails here, before any image is decoded.
    names = registry.resolve([methods] if isinstance(methods, str) else methods)
    chosen = session.method_params(names, params, device)
    docs = _tuning_files(tuned, names)
    options = runner.Options(
        results=results or results_dir(),
        force=force,
        timeout=timeout,
        skip_bad=skip_bad,
        fps_images=fps_images,
        submissions=submissions,
        workers=workers,
        memory_gb=memory_gb,
    )
    how = executors.choose(executor, workers, slurm)
    options.sandbox = session.launcher(sandbox, progress)
    plan = session.prepare(where, options, progress)
    specs = [runner.MethodSpec.create(n, chosen[n]) for n in names if n not in docs]
    jobs = runner.make_jobs(plan, specs, options)
    for path, doc in docs.values():
        jobs += tuning.tuned_jobs(plan, doc, chosen[doc["method"]], options, path)
        now = runner.code_of(doc["method"]).hash
        if doc.get("code") not in (None, now):  # files tuned before they recorded the code say nothing
            session.say(
                progress,
                f"--params {path} was tuned on other code of {doc['method']} ({str(doc['code'])[:10]}, now "
                f"{now[:10]}): its values were chosen for that code; `bhbench tune` again to follow the edit",
                "note",
                "warning",
            )
    for fold in plan.split.folds:
        for part, lacking in runner.missing_classes(plan, fold).items():
            at = "" if part == "all" else f" at {part}"
            session.say(
                progress,
                f"fold {fold.index}{at}: no training image of {', '.join(lacking)}; "
                "every method is fitted without them and the records say so",
                "note",
                "warning",
            )
    finished: list[runner.JobResult] = []
    running = step(progress, "running (method x fold)", len(jobs))
    with running as bump, session.Heartbeat(len(jobs), progress) as heart:

        def done(result: runner.JobResult) -> None:
            finished.append(result)
            heart.beat(len(finished))
            bump(1)
            progress(JobFinished(result, label(result.job.spec)))

        def busy(job: runner.Job, pid: int | None) -> None:
            by = f"another run (pid {pid})" if pid else "another run"
            session.say(progress, f"{label(job.spec)} fold {job.fold.index} is being computed by {by}; waiting", "note")

        try:
            with session.collected_warnings() as caught:
                ran = executors.execute(plan, jobs, options, how, slurm, done, busy)
        except KeyboardInterrupt:
            saved = sum(1 for f in finished if f.record.ok)
            raise Interrupted(saved, len(jobs), session.reveal(plan)) from None
    for f in finished:  # the workers' warnings, kept in the records of this run's folds
        if not f.skipped:
            caught.update(dict.fromkeys(f.record.warnings or ()))
    order = {id(job): i for i, job in enumerate(jobs)}
    finished.sort(key=lambda f: order[id(f.job)])
    standings = _standings(finished, plan, options.results)
    return RunResult(plan, options.results, finished, ran.failures, list(caught), standings, session.reveal(plan))


def _tuning_files(paths: Sequence[Path], names: list[str]) -> dict[str, tuple[Path, dict]]:
    """`bhbench tune` files by the method they tune, each naming a selected method."""
    from bhbench import tuning

    found = {}
    for path in paths:
        doc = tuning.read_params(path)
        if doc["method"] not in names:
            raise UserError(f"--params {path} holds parameters of {doc['method']}, which no --method selects")
        found[doc["method"]] = (path, doc)
    return found


def _standings(finished: list[runner.JobResult], plan: runner.Plan, written: Path) -> list[Standing]:
    """Where each complete row would rank on the committed leaderboard's section of this dataset and
    protocol (none when the run wrote to the committed records themselves)."""
    from bhbench.leaderboard import standing
    from bhbench.leaderboard.aggregate import block_of

    board = COMMITTED_RESULTS / plan.dataset.id / plan.protocol.id
    if written.resolve() == COMMITTED_RESULTS.resolve() or not board.is_dir():
        return []
    records = [f.record for f in finished]
    smoke = {(r.method.name, r.method.params_hash) for r in records if block_of(r) == "smoke"}
    others = standing.section_headlines(board)  # read once: a run may have many rows
    found = []
    for (name, phash), (prr, n) in standing.mean_headline(records).items():
        if n == len(plan.split.folds) and (place := standing.would_rank((name, phash), prr, others)):
            found.append(Standing(name, phash, prr, place[0], place[1], board, (name, phash) in smoke))
    return found


# --- reproduce -----------------------------------------------------------------------------------


@dataclass
class ReproduceResult:
    comparisons: list[reproducing.FoldComparison]  # one per record whose rerun succeeded
    failed: list[str]  # "record: the rerun failed: reason"
    drift: list[str]  # package versions that differ from the records' and can move numbers
    lock: str  # which environment the records name
    hardware: list[str] = field(default_factory=list)  # CPUs the records name other than this one
    cpu_unknown: int = 0  # records made before records named their CPU

    @property
    def mismatches(self) -> list[reproducing.FoldComparison]:
        return [c for c in self.comparisons if not c.agrees]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.mismatches


def reproduce(
    targets: Sequence[str | Path],
    results: Sequence[Path] | None = None,
    data: Path | None = None,
    folds: Path | None = None,
    *,
    timeout: float | None = None,
    sandbox: str | None = None,
    strict_versions: bool = False,
    submissions: Path | None = None,
    progress: Progress = ignore,
) -> ReproduceResult:
    """Rerun records exactly as they say (record files, folders of records, or rows like
    'synthetic/MIBC/lbp_svm' looked up in the `results` folders, the first holding the row; default
    the committed board, then the user's folder) in a temporary folder, and compare each
    rerun's predictions and metrics with the stored ones. `strict_versions` refuses before rerunning
    when package versions that can move the numbers differ from the records'."""
    import tempfile

    from bhbench import reproduce as reproducing
    from bhbench import results as stored_results
    from bhbench import runner

    session.discover(submissions, progress)
    folders = stored_results.reading_folders(results)
    paths = list(dict.fromkeys(p for t in targets for p in reproducing.resolve_in(str(t), folders)))
    loaded = reproducing.load(paths)
    drift = sorted({d for _, r in loaded for d in reproducing.version_drift(r)})
    if drift and strict_versions:
        raise UserError(
            "this environment differs from the records' in versions that can move the numbers: "
            f"{'; '.join(drift)} (install the lock: pip install -r requirements.lock; or drop --strict-versions)"
        )
    for name, (then, now) in reproducing.code_changes(loaded).items():
        session.say(
            progress,
            f"the code of {name} changed since its records (code {then} -> {now}); "
            "comparing what the current code predicts with what the records stored",
            "note",
            "warning",
        )
    launcher = session.launcher(sandbox, progress)
    comparisons: list[reproducing.FoldComparison] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bhbench-reproduce-") as tmp:
        options = runner.Options(
            results=Path(tmp), fps_images=0, submissions=submissions, timeout=timeout, sandbox=launcher
        )
        for (dataset_id, protocol_id, _), group in reproducing.groups(loaded).items():
            session.say(progress, f"reproducing {len(group)} record(s) of {dataset_id} / {protocol_id}")
            with step(progress, "preparing images (the synthetic set is generated once)") as bump:
                dataset = reproducing.open_data(group[0][1], data, bump)
            with step(progress, "decoding images into the cache", len(dataset.table)) as bump:
                plan = reproducing.plan_for(group[0][1], dataset, folds, options, bump)
            jobs = reproducing.jobs_for(plan, group, options)
            kept = {id(job): g for job, g in zip(jobs, group, strict=True)}
            with step(progress, "rerunning (method x fold)", len(jobs)) as bump:
                for done in runner.run(plan, jobs, options, lambda _: bump(1)):
                    path, record = kept[id(done.job)]
                    if not done.record.ok:
                        failed.append(f"{path}: the rerun failed: {done.record.error}")
                        continue
                    fresh = stored_results.load_predictions(done.job.where.record, done.record)
                    comparisons.append(reproducing.compare(path, record, done.record, fresh))
    hardware = sorted({d for _, r in loaded for d in reproducing.hardware_drift(r)})
    unknown = sum(r.environment.cpu is None for _, r in loaded)
    return ReproduceResult(comparisons, failed, drift, reproducing.lock_note(loaded), hardware, unknown)


# --- tune ----------------------------------------------------------------------------------------


@dataclass
class TuneResult:
    study: str  # base name; fold k's study is f"{study}-fold{k}"
    storage: str  # the optuna storage, without its password
    path: Path  # the tuned-parameters file written (`run(..., tuned=[path])` uses it)
    doc: dict[str, Any]  # its content: each fold's best trial (folds tuned earlier into the file kept)
    failed: list[str] = field(default_factory=list)  # Slurm tuning jobs that ended early, each with its log


class TuneInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during `tune`: the finished trials are kept in the studies, and rerunning
    the same call continues them up to its `trials`."""

    def __init__(self, study: str, finished: Mapping[int, int], trials: int):
        done = ", ".join(f"fold {k}: {n}" for k, n in finished.items())
        super().__init__(f"trials finished (of {trials} per fold) {done}; study {study} keeps them")
        self.study, self.finished, self.trials = study, dict(finished), trials


def tune(
    method: str,
    trials: int,
    where: Where | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    device: str | None = None,
    storage: str | None = None,
    study: str | None = None,
    out: Path | None = None,
    only_folds: Sequence[int] = (),
    executor: str | None = None,
    workers: int = 1,
    slurm: executors.SlurmOptions | None = None,
    sandbox: str | None = None,
    timeout: float | None = None,
    memory_gb: float | None = None,
    skip_bad: bool = False,
    submissions: Path | None = None,
    progress: Progress = ignore,
) -> TuneResult:
    """Run optuna trials of `method` on each fold (or each fold of `only_folds`) until its study holds
    `trials` (a rerun, or another process sharing the study, continues up to that total), each scored
    on an inner split of the fold's training patients, and merge each fold's best parameters into
    `out` (default <results>/tuned/<study>.json). The default study is named by the method's code: an
    edit starts a new one, and says so. `params` are held fixed; `where` as for `run`. executor
    "slurm" runs the trials in `workers` Slurm jobs (`slurm` options) sharing the studies, which must
    then be on storage their nodes reach. Ctrl-C raises `TuneInterrupted`."""
    from bhbench import executors, runner, tuning
    from bhbench.config import cache_dir, results_dir

    session.discover(submissions, progress)
    tuning.search_space(method)  # refuse an untunable method before decoding any image
    how = executors.choose_tuning(executor, workers, slurm)
    storage = storage or tuning.default_storage()
    tuning.open_storage(storage)  # and a storage it cannot use
    fixed = session.method_params([method], params, device)[method]
    spec = runner.MethodSpec.create(method, fixed)
    code = runner.code_of(method).hash
    # Tuning writes no records: its split file and manifest go to the cache, not the results folder.
    options = runner.Options(
        results=cache_dir("tuning"), timeout=timeout, skip_bad=skip_bad, submissions=submissions, memory_gb=memory_gb
    )
    options.sandbox = session.launcher(sandbox, progress)
    plan = session.prepare(where, options, progress)
    name = study or tuning.default_study(plan, spec, fixed, code)
    path, flag = (out, "--out") if out else (results_dir() / "tuned" / f"{name}.json", "")
    if path.exists():
        tuning.read_params(path, flag)  # a file it cannot merge into is refused before any trial
    tuner = tuning.Tuner(plan, method, fixed, code, storage, name, options)
    older = tuner.superseded()
    if older:
        session.say(progress, f"the code of {method} changed since study {older}: starting a new study {name}")
    folds = [str(f.index) for f in tuner.folds(only_folds)]
    shown = folds[0] if len(folds) == 1 else "{" + ",".join(folds) + "}"
    session.say(progress, f"study {name}-fold{shown} in {tuning.public_url(storage)}")

    def report(fold: int, trial: Any) -> None:
        error = None if trial.value is not None else trial.user_attrs.get("error")
        progress(TrialFinished(fold, trial.number, trial.value, dict(trial.params), error))

    failed: list[str] = []
    try:
        if how == "slurm":
            failed = executors.tune_array(tuner, trials, only_folds, workers, slurm or executors.SlurmOptions())
            for text in failed:  # said now: the export below fails when no trial completed
                session.say(progress, text, "job failed", "error")
        doc = tuner.tune(0 if how == "slurm" else trials, report, only_folds)  # 0: export what the jobs found
    except KeyboardInterrupt:
        raise TuneInterrupted(name, tuner.finished_trials(only_folds), trials) from None
    doc, dropped = tuning.merged(path, doc, flag)
    if dropped:
        session.say(progress, dropped, "note", "warning")
    tuning.write_params(path, doc)
    return TuneResult(name, tuning.public_url(storage), path, doc, failed)


# --- audit ---------------------------------------------------------------------------------------


@dataclass
class AuditOutcome:
    result: audits.AuditResult  # the verdict, per-fold scores and what was written to audit.json
    file: Path  # where audit.json went
    seconds: float  # in all, data preparation included
    jobs: list[runner.JobResult] = field(default_factory=list)  # every fit, honest and permuted-label

    @property
    def failed(self) -> list[runner.JobResult]:
        """The fits that failed (their logs say why)."""
        return [j for j in self.jobs if not j.record.ok]

    @property
    def ok(self) -> bool:
        return self.result.verdict in ("pass", "inconclusive")


def audit(
    method: str,
    where: Where | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    device: str | None = None,
    which_folds: Sequence[int] | Literal["all"] | None = None,
    private_cohort: bool = False,
    results: Path | None = None,
    force: bool = False,
    sandbox: str | None = None,
    timeout: float | None = None,
    memory_gb: float | None = None,
    skip_bad: bool = False,
    submissions: Path | None = None,
    progress: Progress = ignore,
) -> AuditOutcome:
    """The label-permutation audit of one method: refit on training labels permuted among patients
    and test whether it falls to chance, on the folds `which_folds` (None: the first; "all": every
    fold); with `private_cohort`, also against a private synthetic cohort. The honest fits are the
    records under `results` (run when missing); audit.json goes beside them. timeout: per job, as in `run`."""
    from bhbench import audit as audits
    from bhbench import runner
    from bhbench.config import results_dir

    started = time.monotonic()
    spec = _one_method(method, "audit", params, device, submissions, progress)
    options = runner.Options(
        results=results or results_dir(),
        force=force,
        timeout=timeout,
        skip_bad=skip_bad,
        submissions=submissions,
        memory_gb=memory_gb,
    )
    options.sandbox = session.launcher(sandbox, progress)
    plan = session.prepare(where, options, progress)
    chosen = [f.index for f in plan.split.folds] if which_folds == "all" else which_folds
    n = len(chosen) if chosen else 1
    jobs: list[runner.JobResult] = []

    def done(job: runner.JobResult) -> None:
        bump(1)
        jobs.append(job)

    with step(progress, f"auditing {spec.name}: honest and permuted-label fits", 2 * n) as bump:
        result = audits.audit(plan, spec, options, chosen, done, private=private_cohort)
    revealed = session.reveal(plan)
    if revealed:
        session.say(progress, str(revealed))
    file = options.results / result.dataset / result.protocol / result.method / result.params_hash / audits.AUDIT_FILE
    return AuditOutcome(result, file, time.monotonic() - started, jobs)


# --- robustness ----------------------------------------------------------------------------------


@dataclass
class RobustnessResult:
    curve: robust.Curve | None  # None when a fold failed: the failures say why
    folder: Path  # where the robustness records went (beside the row's own records)
    seconds: float
    jobs: list[runner.JobResult] = field(default_factory=list)

    @property
    def failed(self) -> list[runner.JobResult]:
        return [j for j in self.jobs if not j.record.ok]

    @property
    def ok(self) -> bool:
        return self.curve is not None and not self.failed


def robustness(
    method: str,
    where: Where | None = None,
    *,
    strengths: Sequence[float] | None = None,
    params: Mapping[str, Any] | None = None,
    device: str | None = None,
    results: Path | None = None,
    force: bool = False,
    sandbox: str | None = None,
    timeout: float | None = None,
    memory_gb: float | None = None,
    skip_bad: bool = False,
    submissions: Path | None = None,
    progress: Progress = ignore,
) -> RobustnessResult:
    """Fit one method once per fold (and part) and predict its test images shifted in HED space at
    each strength (`bhbench.perturb`; default `perturb.STRENGTHS`, 0 always included), without
    refitting; write a robustness record per fold beside the row's records under `results` (finished
    folds are kept unless `force`) and return the headline at each strength with intervals and the
    drop from strength 0."""
    from bhbench import perturb, runner
    from bhbench.config import results_dir
    from bhbench.leaderboard import robustness as robust
    from bhbench.leaderboard.verify import check_all

    started = time.monotonic()
    spec = _one_method(method, "robustness", params, device, submissions, progress)
    levels = tuple(sorted({0.0, *(strengths if strengths is not None else perturb.STRENGTHS)}))
    if any(not 0 <= s < 1 for s in levels):
        raise UserError(f"--strengths {','.join(map(str, levels))}: each strength must be in [0, 1)")
    options = runner.Options(results=results or results_dir(), force=force, timeout=timeout, skip_bad=skip_bad,
                             fps_images=0, submissions=submissions, memory_gb=memory_gb)  # fmt: skip
    options.sandbox = session.launcher(sandbox, progress)
    plan = session.prepare(where, options, progress)
    plan.shift = perturb.Shift(levels, plan.protocol.seed)
    jobs = runner.make_jobs(plan, [spec], options)
    finished: list[runner.JobResult] = []
    label = f"{method}: one fit per fold, predicted at {len(levels)} strengths (finished folds kept)"
    with step(progress, label, len(jobs)) as bump:

        def done(result: runner.JobResult) -> None:
            finished.append(result)
            bump(1)

        runner.run(plan, jobs, options, done)
    # this row's records only: a results folder (the committed board's) holds hundreds of others
    mine = check_all(options.results, paths=[j.where.record for j in jobs if j.where.record.exists()])
    problems = [f"{c.path}: {p}" for c in mine for p in c.problems]
    if problems:
        raise DataError("robustness records that do not verify:\n  " + "\n  ".join(problems))
    ok = [c for c in mine if c.record is not None and c.record.ok]
    curve = robust.curve(sorted(ok, key=lambda c: c.path)) if len(ok) == len(jobs) else None
    return RobustnessResult(curve, jobs[0].where.folder, time.monotonic() - started, finished)


def _one_method(
    method: str,
    command: str,
    params: Mapping[str, Any] | None,
    device: str | None,
    submissions: Path | None,
    progress: Progress,
) -> runner.MethodSpec:
    """The spec of the one method a command takes (a name, not a wildcard or a family)."""
    from bhbench import registry, runner

    session.discover(submissions, progress)
    if registry.resolve([method]) != [method]:
        raise UserError(f"--method {method!r}: {command} takes one method name")
    return runner.MethodSpec.create(method, session.method_params([method], params, device)[method])


# --- check ---------------------------------------------------------------------------------------


@dataclass
class CheckSummary:
    results: dict[str, list[checks.CheckResult]]  # by method, in the order checked

    @property
    def failed(self) -> list[str]:
        return [name for name, found in self.results.items() if not all(r.passed for r in found)]

    @property
    def ok(self) -> bool:
        return not self.failed


def check(
    targets: Sequence[str | Path] = (),
    params: Mapping[str, Any] | None = None,
    *,
    budget: float = 120.0,
    timeout: float | None = None,
    sandbox: str | None = None,
    memory_gb: float | None = None,
    submissions: Path | None = None,
    progress: Progress = ignore,
) -> CheckSummary:
    """The uniform battery of checks (contract, determinism, no test labels, time `budget` in CPU
    seconds...) on methods, wildcards, families or submission files; none: every submission. Each
    method's battery runs in a worker process, sandboxed or not; `timeout` wall-clock seconds may
    go to one check (None: `limits.CHECK_SECONDS`; 0: no limit)."""
    from bhbench import checks, registry
    from bhbench.events import CheckFinished
    from bhbench.limits import CHECK_SECONDS

    session.discover(submissions, progress)  # cards only: the methods' code runs in the check worker
    folder = submissions or registry.default_submissions_dir()
    entries = checks.targets([str(t) for t in targets], folder)
    chosen = session.method_params([e.name for e in entries], params, None)
    launcher = session.launcher(sandbox, progress)
    found = {}
    for entry in entries:
        found[entry.name] = checks.run_isolated(
            entry,
            chosen[entry.name],
            budget,
            launcher,
            folder,
            lambda r: progress(CheckFinished(r)),
            lambda source, message: session.say(progress, f"skipped {source}: {message}", "warning", "warning"),
            memory_gb=memory_gb,
            timeout=CHECK_SECONDS if timeout is None else timeout or None,
        )
    return CheckSummary(found)


# --- leaderboard ---------------------------------------------------------------------------------


@dataclass
class BoardResult:
    output: Path  # where README.md, leaderboard.csv and figures/ are
    checked: list[Checked] = field(default_factory=list)  # every record read (written boards)
    stale: list[str] = field(default_factory=list)  # why the board is not what the records produce (check)
    notes: list[str] = field(default_factory=list)

    @property
    def refused(self) -> list[Checked]:
        return [c for c in self.checked if not c.accepted]

    @property
    def ok(self) -> bool:
        return not self.refused and not self.stale


def leaderboard(
    results: Path | Sequence[Path] = COMMITTED_RESULTS,
    output: Path | None = None,
    *,
    check: bool = False,
    add_pages: Sequence[str] = (),
) -> BoardResult:
    """Regenerate the leaderboard (README.md, the CSV, figures and method pages) from the records
    of the `results` folder(s), or with `check` only compare what is there with what the records
    produce. `output` defaults to the committed leaderboard's folder for the committed records
    alone, else to the first other folder: only the committed records write the committed board.
    `add_pages`: methods whose page the board gains (the pages it has are rebuilt)."""
    from bhbench import leaderboard as board
    from bhbench.results import is_committed

    folders = [results] if isinstance(results, Path) else list(results)
    committed = all(is_committed(f) for f in folders)
    if output is None:
        output = COMMITTED_RESULTS.parent if committed else next(f for f in folders if not is_committed(f))
    if not committed:
        _outside_board(output, "--output")
    if check:
        notes: list[str] = []
        return BoardResult(output, stale=board.stale(folders, output, notes), notes=notes)
    return BoardResult(output, checked=board.write(folders, output, add_pages))


# --- compare, report, export: reading results folders ------------------------------------------


@dataclass
class Compared:
    table: pd.DataFrame  # one line per section holding both rows (`leaderboard.compare.compare`)
    read: str  # which folders were read, how many records from each


@dataclass
class Reported:
    page: Path
    read: str


@dataclass
class Exported:
    files: list[Path]  # table.tex, table.csv, patients.csv
    rows: pd.DataFrame
    patients: pd.DataFrame
    read: str


def compare(a: str, b: str, results: Sequence[Path] | None = None) -> Compared:
    """The paired patient-level comparison of rows `a` and `b` (names or labels) in every section
    holding both, from the records of the `results` folders (default: the committed board,
    read-only, and the user's folder); only the two methods' records are read."""
    from bhbench import leaderboard as board
    from bhbench.leaderboard import compare as comparing
    from bhbench.results import reading_folders

    got = board.read(reading_folders(results), board.named([a, b]))
    return Compared(comparing.compare(got.sections, a, b, got.folders), got.summary())


def report(method: str, results: Sequence[Path] | None = None, output: Path | None = None) -> Reported:
    """A method's page (its line in each section, per fold, figures, patients) under
    `output`/reports/ (default: the user's results folder; never inside leaderboard/, whose pages
    `leaderboard(add_pages=...)` makes)."""
    from bhbench import leaderboard as board
    from bhbench.config import results_dir
    from bhbench.leaderboard import report as reporting

    output = output or results_dir()
    _outside_board(output, "--output")
    with board.workers() as pool:
        mine, tables, got = _ranked([method], results, pool)
        page = reporting.write(mine.sections, method, tables, output, pool)
    return Reported(page, got.summary())


def export(patterns: Sequence[str], results: Sequence[Path] | None = None, output: Path | None = None) -> Exported:
    """table.tex, table.csv (the rows' leaderboard lines, ranked in their sections) and patients.csv
    of the rows `patterns` name (names, labels, wildcards) in `output` (default ./bhbench-export)."""
    from bhbench import leaderboard as board
    from bhbench.leaderboard import compare as comparing
    from bhbench.util import atomic_write

    output = output or Path("bhbench-export")
    _outside_board(output, "--output")
    with board.workers() as pool:
        mine, tables, got = _ranked(patterns, results, pool)
    rows, patients = comparing.export(mine.sections, list(patterns), tables)
    files = {
        "table.tex": comparing.latex(rows),
        "table.csv": rows.to_csv(index=False, float_format="%.6g"),
        "patients.csv": patients.to_csv(index=False, float_format="%.6g"),
    }
    for name, text in files.items():
        atomic_write(output / name, text)
    return Exported([output / n for n in files], rows, patients, got.summary())


def _ranked(patterns: Sequence[str], results: Sequence[Path] | None, pool: Any) -> tuple[Read, dict[str, Any], Read]:
    """The verified records of the rows `patterns` name (what a page or export draws), the
    leaderboard lines of every section holding one (ranks are among all its rows: remembered where
    the records are unchanged), and everything read. UserError naming the folders when no section
    holds such a row."""
    from bhbench import leaderboard as board
    from bhbench.leaderboard.compare import matching
    from bhbench.results import reading_folders

    folders = reading_folders(results)
    mine = board.read(folders, board.named(patterns), pool)
    held = [s for s, _ in matching(mine.sections, patterns, mine.folders)]
    tables, got = board.ranked_tables(folders, held, pool)
    return mine, tables, got


def _outside_board(output: Path, setting: str) -> None:
    """Refuse to write under leaderboard/: only `bhbench leaderboard` on the committed records does."""
    board = COMMITTED_RESULTS.parent.resolve()
    if output.resolve().is_relative_to(board):
        raise UserError(
            f"{setting} {output} is inside {COMMITTED_RESULTS.parent}/, which only `bhbench leaderboard` writes "
            "(a committed method page: `bhbench leaderboard --report NAME`); choose another folder"
        )


# --- paper: a paper's claims, re-measured --------------------------------------------------------


@dataclass
class PaperResult:
    page: Path
    table: str  # published | paper's protocol | leak-free | difference, Markdown
    verdicts: list[tuple[str, str, str]]  # (claim, under the paper's protocol, leak-free)
    fitted: int  # (method, fold) jobs computed by this call; 0 when every record was there
    notes: list[str]


def paper(
    name: str | Path,
    data: Path | None = None,
    folds: Path | None = None,
    *,
    device: str | None = None,
    results: Path | None = None,
    sandbox: str | None = None,
    output: Path | None = None,
    submissions: Path | None = None,
    progress: Progress = ignore,
) -> PaperResult:
    """Run a paper's experiments (`name`: a shipped manifest, bhbench/papers/NAME.toml, or a manifest
    path) under its own protocol and under the leak-free one through `run` (finished folds are
    reused, so a second call only renders), decide its claims and write `output`/papers/NAME.md
    (default: the user's results folder; never inside leaderboard/)."""
    from bhbench import leaderboard as board
    from bhbench.config import results_dir
    from bhbench.data.sources import folds_beside, open_dataset
    from bhbench.leaderboard import papers
    from bhbench.util import atomic_write

    manifest = papers.read(name)
    results = results or results_dir()
    output = output or results
    _outside_board(output, "--output")
    split = manifest.protocol.split
    if split == "official" and not (folds or folds_beside(open_dataset(data))):
        split = papers.LEAK_FREE_SPLIT  # `papers.measure` notes it: no official section to read
    fitted, places = 0, set()
    for side_split in (split, papers.LEAK_FREE_SPLIT):
        for e in manifest.experiments:
            where = Where(data, folds, task=manifest.protocol.task, regime=e.regime, split=side_split)
            done = run(e.method, where, params=e.params or None, device=device, results=results, sandbox=sandbox,
                       submissions=submissions, progress=progress)  # fmt: skip
            fitted += sum(1 for j in done.jobs if not j.skipped)
            places |= {(r.dataset.id, r.protocol.id, r.method.name) for row in done.rows for r in row.records[:1]}
    got = board.read([results], lambda d, p, m: (d, p, m) in places)
    measured, notes = papers.measure(manifest, got.sections)
    pt = papers.part(manifest, measured, notes)
    page = output / papers.PAGES / f"{manifest.name}.md"
    where_text = "the synthetic default" if data is None else str(data)
    generated = f"Generated by `bhbench paper {manifest.name}` from the records on {where_text}"
    atomic_write(page, papers.page(manifest, [pt], generated))
    table, decided = pt.table, pt.decided
    return PaperResult(page, table, [(c.text, a, b) for c, a, b in decided], fitted, notes)
