"""Hyperparameter search with optuna that never looks at test patients.

A method opts in with a classmethod `search_space(cls, trial) -> dict` returning constructor
parameters drawn from the optuna trial. Tuning is nested: each outer fold has its own study, and a
trial is scored by patient recognition rate on an inner validation split of that fold's training
patients (group-aware: a patient is wholly inner-train or inner-validation; stratified on the task
label). The fold's test patients are never read, and no fold's parameters are chosen with another
fold's data, which would include this fold's test patients.

A trial is an ordinary harness job (`runner.run_job`) on the inner split: the method runs in a
worker process, its outputs are validated and the harness scores them. Studies live in optuna
storage (a journal file in the cache folder by default, shared by this machine's processes; a
PostgreSQL URL for several machines), so several processes or machines can work on one study;
`trials` is the study's total per fold, wherever they ran. A study is made for one version of the
method's code (its fingerprint names the default study): an edit starts a new study rather than
continuing one whose trials measured other code. The result is a JSON file with each fold's best
parameters, into which tuning some folds merges; `bhbench run --params FILE` runs each fold with its
own, under one record folder.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import socket
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from bhbench import params, registry, remote, results
from bhbench.config import cache_dir
from bhbench.errors import UserError
from bhbench.record import params_hash
from bhbench.runner import Job, MethodSpec, Options, Plan, run_job
from bhbench.splits import Fold
from bhbench.util import atomic_write, digest
from bhbench.worker import Worker

SEARCH_SPACE = "search_space"  # the classmethod a tunable method declares
INNER_FOLDS = 4  # the inner validation holds out 1/4 of a fold's training patients
# A trial in a database beats every minute; one silent for five has lost its process (killed outright,
# or its node gone), and is failed so it stops counting toward --trials.
HEARTBEAT_SECONDS, STALE_SECONDS = 60, 300
FILE_FORMAT = 1
OBJECTIVE = (
    "patient recognition rate on an inner validation split holding out 1/4 of the fold's training "
    "patients (StratifiedGroupKFold over patients); test patients unused"
)

TrialReport = Callable[[int, Any], None]  # (fold index, optuna FrozenTrial) after each trial


class TrialFailed(Exception):
    """The method failed with this trial's parameters; optuna records the trial as failed."""


def search_space(name: str) -> Callable[[Any], dict[str, Any]]:
    """The method's search space, or a UserError explaining how to declare one."""
    cls = registry.get(name).cls
    if issubclass(cls, registry.StandIn):  # untrusted code: drawn in a helper process, answering in JSON
        space = (
            functools.partial(remote.draw, cls._origin, cls._source.qualname)
            if SEARCH_SPACE in cls._source.hooks
            else None
        )
    else:
        space = getattr(cls, SEARCH_SPACE, None)
    if space is None:
        raise UserError(
            f"{name} declares no search space, so it cannot be tuned; add a classmethod "
            f"`{SEARCH_SPACE}(cls, trial) -> dict` returning constructor parameters drawn from the optuna "
            "trial (see submissions/README.md)"
        )
    return space


@dataclass(frozen=True)
class Space:
    """What `tune` explores for a method, as one draw of its search space shows it."""

    distributions: dict[str, str]  # by the trial's parameter names: "numbers in [0.1, 1000], log scale"
    sets: tuple[str, ...]  # the method's parameters a draw sets


def explored(name: str) -> Space | None:
    """Method `name`'s search space from one draw on a throwaway trial (a submission's in a helper
    process, as `tune` draws it); None when it declares none. A conditional space shows the branch
    the draw took."""
    if not registry.get(name).declares(SEARCH_SPACE):
        return None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "a new study created in memory"
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    drawn = search_space(name)(trial)
    return Space({k: _distribution_text(d) for k, d in trial.distributions.items()}, tuple(drawn))


def _distribution_text(distribution: Any) -> str:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return "one of " + ", ".join(map(repr, distribution.choices))
    integers = isinstance(distribution, IntDistribution)
    text = f"{'integers' if integers else 'numbers'} in [{distribution.low:g}, {distribution.high:g}]"
    if distribution.log:
        text += ", log scale"
    if distribution.step is not None and not (integers and distribution.step == 1):
        text += f", step {distribution.step:g}"
    return text


JOURNAL = ".log"  # a --storage path ending so is an optuna journal file, the name optuna's docs give one
SPELLINGS = (
    f"a journal file (a path ending in {JOURNAL}) or a database URL "
    "(postgresql+psycopg://USER:PASSWORD@HOST/DB, sqlite:///PATH)"
)


def default_storage() -> str:
    """A journal file in the cache: processes on this machine share it through a lock file."""
    return str(cache_dir("tuning") / f"optuna{JOURNAL}")


def _is_journal(storage: str) -> bool:
    return "://" not in storage and storage.endswith(JOURNAL)


def open_storage(url: str) -> Any:
    """An optuna storage for `url`, a journal file or a database URL (`SPELLINGS`), or a UserError."""
    if _is_journal(url):
        return _journal(url)
    if "://" not in url:
        raise UserError(f"--storage {url}: not {SPELLINGS}")
    return _database(url)


def _journal(path: str) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    try:
        # An O_EXCL lock file: atomic on local filesystems and on NFS v3 or later.
        return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    except OSError as exc:
        raise UserError(f"--storage {path}: cannot write the journal file there ({exc.strerror})") from None


def _database(url: str) -> Any:
    import optuna
    import sqlalchemy
    from sqlalchemy.exc import ArgumentError, OperationalError

    where = f"--storage {public_url(url)}"
    try:
        engine = sqlalchemy.create_engine(url)
    except ArgumentError as exc:
        raise UserError(f"{where}: not {SPELLINGS} ({exc})") from None
    except ImportError as exc:
        raise UserError(f"{where}: its database driver {exc.name} is missing (for PostgreSQL: "
                        "pip install 'bhbench[postgres]' and spell it postgresql+psycopg://)") from None  # fmt: skip
    # SQLite waits for another process's write to end rather than failing at once.
    waits = {"connect_args": {"timeout": 60}} if engine.dialect.name == "sqlite" else {}
    try:
        with _tables_lock(engine), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat's
            return optuna.storages.RDBStorage(
                url, engine_kwargs=waits, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=STALE_SECONDS
            )
    except OperationalError as exc:
        reason = str(exc.orig).strip().partition("\n")[0]
        raise UserError(f"{where}: cannot open it ({reason})") from None
    finally:
        engine.dispose()


@contextlib.contextmanager
def _tables_lock(engine: Any) -> Iterator[None]:
    """On PostgreSQL, processes opening a new database at once would race to create optuna's
    tables: the first creates them while the others wait on this lock, then find them."""
    if engine.dialect.name != "postgresql":
        yield
        return
    import sqlalchemy

    with engine.connect() as connection, connection.begin():
        connection.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(hashtext('bhbench optuna tables'))"))
        yield


def public_url(storage: str) -> str:
    """The storage without its password (it goes into files and records)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if _is_journal(storage):
        return storage
    try:
        return make_url(storage).render_as_string(hide_password=True)
    except ArgumentError:  # not a URL: no password in it to hide
        return storage


def default_study(plan: Plan, spec: MethodSpec, fixed: dict[str, Any], code: str) -> str:
    """Named by the method, data, protocol, fixed parameters and code: an edit of the method starts a new study."""
    suffix = f"-{params_hash(fixed)[:6]}" if fixed else ""
    return f"{spec.name}-{plan.dataset.id}-{plan.protocol.id}{suffix}-code-{code}"


def inner_fold(plan: Plan, fold: Fold) -> Fold:
    """Group-aware, label-stratified split of the fold's training images (its test part unused)."""
    table = plan.dataset.table.set_index("filename").loc[sorted(fold.train)]
    y, groups = plan.protocol.labels(table), table["patient"].to_numpy()
    if len(np.unique(groups)) < INNER_FOLDS:
        raise UserError(f"fold {fold.index} has fewer than {INNER_FOLDS} training patients; too few to tune on")
    if np.unique(y, return_counts=True)[1].max() < INNER_FOLDS:  # the splitter needs one class this large
        raise UserError(f"fold {fold.index}: each class has under {INNER_FOLDS} training images, too few to tune on")
    splitter = StratifiedGroupKFold(INNER_FOLDS, shuffle=True, random_state=plan.protocol.seed)
    train_idx, val_idx = next(splitter.split(np.zeros(len(y)), y, groups))
    names = table.index.to_numpy()
    return Fold(fold.index, sorted(names[train_idx]), sorted(names[val_idx]))


def finished(trial: Any) -> bool:
    """A trial that ran to its end: scored, or failed by the method (its error kept). One stopped by
    Ctrl-C fails without an error, and a surplus one is pruned: neither counts toward `--trials`."""
    from optuna.trial import TrialState

    return trial.state == TrialState.COMPLETE or (trial.state == TrialState.FAIL and "error" in trial.user_attrs)


def _counted(study: Any, before: int | None = None) -> int:
    """The study's trials (numbered below `before`) that count toward `--trials`: finished, or running
    here or in another process sharing the study."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    return sum(finished(t) or t.state == TrialState.RUNNING for t in trials if before is None or t.number < before)


def _process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _fail_abandoned(study: Any) -> None:
    """Fail the running trials whose process died without ending them (SIGKILL, out of memory), so
    they stop counting toward --trials: in a database by optuna's heartbeat; in a journal file, one
    machine's, those this machine ran from a process that is gone."""
    import optuna
    from optuna.trial import TrialState

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        where, _, pid = str(trial.user_attrs.get("process", "")).rpartition(":")
        if where == host and pid.isdigit() and not _alive(int(pid)):
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        pass
    return True


def _base(study: str) -> str:
    """A fold's study name without its fold."""
    return re.sub(r"-fold\d+$", "", study)


@dataclass
class Tuner:
    """Runs trials of one method on the folds of a plan, one optuna study per fold."""

    plan: Plan
    method: str
    fixed: dict[str, Any]  # parameters held fixed (the CLI's --set)
    code: str  # the method's code fingerprint (`runner.code_of`): a study's trials measured one version
    storage: str
    study: str  # base name; fold k's study is f"{study}-fold{k}"
    options: Options

    def folds(self, only: Sequence[int] = ()) -> list[Fold]:
        """The plan's folds, or those numbered in `only`."""
        known = [f.index for f in self.plan.split.folds]
        if set(only) - set(known):
            raise UserError(f"--fold {sorted(set(only) - set(known))}: the split has folds {known}")
        return [f for f in self.plan.split.folds if not only or f.index in only]

    def _name(self, fold: Fold) -> str:
        return f"{self.study}-fold{fold.index}"

    def _identity(self, fold: Fold) -> dict[str, Any]:
        return {
            "method": self.method,
            "code": self.code,
            "fixed": self.fixed,
            "dataset": self.plan.dataset.id,
            "protocol": self.plan.protocol.id,
            "split_hash": self.plan.split.hash,
            "fold": fold.index,
        }

    def superseded(self) -> str | None:
        """The latest study of this method, data, protocol and fixed parameters made on other code of
        the method, when this study is new (it starts now, on this code)."""
        studies = open_storage(self.storage).get_all_studies()  # in order of creation
        if self.study in {_base(s.study_name) for s in studies}:
            return None  # continuing this code's study
        same = {k: v for k, v in self._identity(self.plan.split.folds[0]).items() if k not in ("code", "fold")}
        older = [
            _base(s.study_name)
            for s in studies
            if all(s.user_attrs.get(k) == v for k, v in same.items()) and s.user_attrs.get("code") != self.code
        ]
        return older[-1] if older else None

    def _study(self, storage: Any, fold: Fold) -> Any:
        import optuna

        name = self._name(fold)
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
        identity = self._identity(fold)
        # Only the attributes it holds: another process that has just made the study may be writing the rest.
        known = {k: study.user_attrs[k] for k in identity if k in study.user_attrs}
        if any(identity[k] != v for k, v in known.items()):
            where = f"study {name} in {public_url(self.storage)}"
            if all(identity[k] == v for k, v in known.items() if k != "code"):
                raise UserError(
                    f"{where} was tuned on other code of {self.method} (code {known['code']}, now {self.code}); "
                    "omit --study to start a study named by the code, or name a new one"
                )
            raise UserError(f"{where} was made for {known}, not {identity}")
        for key, value in identity.items():
            study.set_user_attr(key, value)
        return study

    def tune(self, trials: int, report: TrialReport | None = None, folds: Sequence[int] = ()) -> dict[str, Any]:
        """Run trials on each fold (or on `folds`: machines can split the work) until its study holds
        `trials` in all, counting those of earlier runs and of other processes sharing it, and return
        the tuned-parameters document of those folds. `trials=0` only exports."""
        import optuna

        # A failed trial is reported through `report`; optuna's own warning would repeat it, and on
        # Ctrl-C print a traceback.
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        space = search_space(self.method)
        storage = open_storage(self.storage)
        studies = [(f, self._study(storage, f)) for f in self.folds(folds)]
        worker = Worker(self.options.submissions, self.options.sandbox, memory_gb=self.options.memory_gb)
        try:
            with tempfile.TemporaryDirectory(prefix="bhbench-trials-") as scratch:
                for fold, study in studies:
                    score = functools.partial(self._score, space=space, inner=inner_fold(self.plan, fold),
                                              worker=worker, scratch=Path(scratch))  # fmt: skip
                    self._optimize(study, trials, score, report and functools.partial(report, fold.index))
        finally:
            worker.stop(kill=True)
        # Read the bests last: other processes on the same studies may have added trials meanwhile.
        best = {str(fold.index): self._best(study, fold) for fold, study in studies}
        return {
            "format": FILE_FORMAT,
            "method": self.method,
            "code": self.code,
            "fixed": self.fixed,
            "dataset": self.plan.dataset.id,
            "protocol": self.plan.protocol.id,
            "split_hash": self.plan.split.hash,
            "objective": OBJECTIVE,
            "storage": public_url(self.storage),
            "folds": best,
        }

    @staticmethod
    def _optimize(study: Any, trials: int, score: Callable[[Any], float], report: Callable[[Any], None] | None) -> None:
        """Trials scored by `score` until the study holds `trials` counted ones."""
        import optuna

        def objective(trial: Any) -> float:
            trial.set_user_attr("process", _process())
            if _counted(study, before=trial.number) >= trials:
                study.stop()  # another process sharing the study took the last trial meanwhile
                raise optuna.TrialPruned("surplus: the study holds its trials")
            return score(trial)

        def reported(study: Any, trial: Any) -> None:
            if report and trial.state != optuna.trial.TrialState.PRUNED:
                report(trial)

        _fail_abandoned(study)
        left = trials - _counted(study)
        if left > 0:
            study.optimize(objective, n_trials=left, catch=(TrialFailed,), callbacks=[reported])

    def finished_trials(self, folds: Sequence[int] = ()) -> dict[int, int]:
        """Finished trials per fold in the studies (e.g. after Ctrl-C: what a rerun continues from)."""
        import optuna

        storage = open_storage(self.storage)
        counts = {}
        for fold in self.folds(folds):
            try:
                trials = optuna.load_study(study_name=self._name(fold), storage=storage).trials
            except KeyError:  # stopped before this fold's study was made
                trials = []
            counts[fold.index] = sum(map(finished, trials))
        return counts

    def _score(self, trial: Any, *, space: Callable[[Any], dict], inner: Fold, worker: Worker, scratch: Path) -> float:
        spec = MethodSpec.create(self.method, {**self.fixed, **space(trial)})
        trial.set_user_attr("params", spec.params)  # what the method got, whatever the trial's names
        where = results.RecordPath(
            scratch, self.plan.dataset.id, self.plan.protocol.id, self.method, f"trial{trial.number}", inner.index
        )
        record = run_job(self.plan, Job(spec, inner, where), worker, replace(self.options, fps_images=0))
        if record.metrics is None:  # failed
            trial.set_user_attr("error", record.error)
            raise TrialFailed(str(record.error))
        return float(record.metrics.overall.patient_rr)

    def _best(self, study: Any, fold: Fold) -> dict[str, Any]:
        import optuna

        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not done:
            raise UserError(f"no trial of study {study.study_name} has completed; run more trials")
        best = study.best_trial
        return {
            "study": study.study_name,
            "trial": best.number,
            "trials": len(done),
            "inner_patient_rr": best.value,
            "searched": best.params,  # the trial's own names and values
            "params": best.user_attrs["params"],
        }


# --- using tuned parameters ----------------------------------------------------------------------


def read_params(path: Path, flag: str = "--params") -> dict[str, Any]:
    """A tuned-parameters file; `flag` names the option that gave its path in messages."""
    where = f"{flag} {path}" if flag else str(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"{where}: cannot read it ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT or "folds" not in doc:
        raise UserError(f"{where}: not a file written by `bhbench tune`")
    return doc


def write_params(path: Path, doc: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(doc, indent=1, sort_keys=True))


# What a tuned file's folds share: a fold tuned otherwise is not merged with them.
SAME_TUNING = ("method", "code", "fixed", "dataset", "protocol", "split_hash", "objective", "storage")


def merged(path: Path, doc: dict[str, Any], flag: str = "") -> tuple[dict[str, Any], str | None]:
    """`doc` with the folds of the tuned file at `path` (if any) that it does not hold, when they
    were tuned the same way (`SAME_TUNING`); otherwise `doc` alone and a note of what was dropped and why."""
    if not path.exists():
        return doc, None
    old = read_params(path, flag)
    kept = {k: v for k, v in old["folds"].items() if k not in doc["folds"]}
    differ = [k for k in SAME_TUNING if old.get(k) != doc[k]]
    if not kept:
        return doc, None
    if differ:
        why = "; ".join(f"{k} {old.get(k, 'unrecorded')}, now {doc[k]}" for k in differ)
        return doc, f"{path}: dropped its fold(s) {', '.join(sorted(kept, key=int))}, tuned otherwise ({why})"
    folds = {**kept, **doc["folds"]}
    return {**doc, "folds": {k: folds[k] for k in sorted(folds, key=int)}}, None


def tuned_jobs(plan: Plan, doc: dict[str, Any], sets: dict[str, Any], options: Options, source: Path) -> list[Job]:
    """One job per fold, each with the parameters tuned on that fold's training patients (`sets`, the
    method's checked --set values, on top). All folds share one record folder named by the tuning file and `sets`, so
    they form one leaderboard row."""
    here = {"dataset": plan.dataset.id, "protocol": plan.protocol.id, "split_hash": plan.split.hash}
    there = {k: doc.get(k) for k in here}
    if here != there:
        raise UserError(f"--params {source} was tuned for {there}; this run is {here}")
    missing = [f.index for f in plan.split.folds if str(f.index) not in doc["folds"]]
    if missing:
        raise UserError(f"--params {source} has no tuned parameters for fold(s) {missing}; tune them first")
    doc_hash = digest(doc)
    folder = params_hash({"tuned": doc_hash, "set": sets})
    jobs = []
    for fold in plan.split.folds:
        tuned = doc["folds"][str(fold.index)]
        how = {
            "by": "optuna",
            "objective": doc["objective"],
            "storage": doc["storage"],
            "fixed": doc["fixed"],
            "file": source.name,
            "file_sha256": doc_hash,
            **{k: v for k, v in tuned.items() if k != "params"},
        }
        # A tuned file is editable by hand: its values pass the same declarations as --set.
        spec = MethodSpec.create(doc["method"], {**params.validate(doc["method"], tuned["params"]), **sets}, tuned=how)
        where = results.RecordPath(options.results, plan.dataset.id, plan.protocol.id, spec.name, folder, fold.index)
        jobs.append(Job(spec, fold, where))
    return jobs
