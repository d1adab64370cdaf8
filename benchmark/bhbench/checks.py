"""The uniform battery every method must pass (DESIGN.md section 2), in the spirit of
scikit-learn's `check_estimator`: one list of checks, run the same way against every registered
method and every submission, each ending in a readable pass/fail line.

The method runs on a tiny synthetic set (the generator's `TINY` config: 16 training and 8 test
patients, one per subtype, four magnifications each). A method whose defaults are too slow for that
may declare small settings with a classmethod `check_params(cls) -> dict`; `overrides` (the CLI's
`--set`) go on top.

`bhbench check` runs the battery in a worker, never in its own process (the trust boundary, DESIGN.md
section 2): `run_isolated` starts a fresh interpreter, in the sandbox where there is one, hands it the
tiny set's rows (training labels, test images by key, no test labels) and reads each verdict back as
JSON. `Battery` itself is what that worker runs; tests may run it in-process on trusted methods.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bhbench import registry
from bhbench.config import cache_dir, cache_root
from bhbench.data import synthetic
from bhbench.data.images import ImageStore
from bhbench.data.index import index_tree, stage
from bhbench.errors import UserError
from bhbench.limits import CHECK_SECONDS
from bhbench.method import Method, TestSet, TrainMeta, TrainSet
from bhbench.protocol import TASK_CLASSES, Protocol
from bhbench.runner import invalid_output
from bhbench.worker import Limits, apply_limits, describe_exception

# One fit + predict on the tiny set, in CPU seconds of this process (all its threads): unlike wall
# time, it does not grow when other work shares the machine (bcnn took 87 s of wall time against a
# 60 s budget on a busy 2-core machine).
BUDGET_SECONDS = 120.0
TOLERANCE = 1e-5  # probabilities that must agree may differ by float noise (BLAS, batch size)
TRAIN_PATIENTS, TEST_PATIENTS = 2, 1  # per subtype
# MethodCard fields a submission must fill besides name, family and reference.
SUBMISSION_CARD = ("authors", "licence")
_TEST_ATTRIBUTES = ("y", "malignant", "subtype", "magnification", "patient", "filenames")


class CheckFailed(Exception):
    """A check's verdict; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class CheckResult:
    method: str
    check: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.method}  {self.check:<17} {self.detail}"


@dataclass(frozen=True)
class TinySet:
    train: TrainSet
    test: TestSet
    store: Path


@functools.lru_cache(maxsize=4)
def _tiny_rows(cache: Path) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """Training and test rows of the tiny set, staged into the image cache (generated on first use)."""
    dataset = index_tree(synthetic.default_root(synthetic.TINY), "synthetic")
    store = ImageStore()
    stage(dataset, store)
    table = dataset.table.sort_values("filename")
    patients = table.groupby("subtype")["patient"].unique()
    train_p = {p for ps in patients for p in sorted(ps)[:TRAIN_PATIENTS]}
    test_p = {p for ps in patients for p in sorted(ps)[TRAIN_PATIENTS : TRAIN_PATIENTS + TEST_PATIENTS]}
    pick = table["patient"].isin
    return table[pick(train_p)].reset_index(drop=True), table[pick(test_p)].reset_index(drop=True), store.root


# In a check worker: the tiny set's rows as the harness sent them (the worker may not see the cache).
_SENT: tuple[pd.DataFrame, pd.DataFrame, Path] | None = None


def tiny_set(task: str) -> TinySet:
    train, test, store = _SENT if _SENT is not None else _tiny_rows(cache_root())
    meta = TrainMeta(
        y=Protocol(task).labels(train),
        malignant=(train["tumor_class"] == "M").to_numpy(),
        subtype=train["subtype"].to_numpy(),
        magnification=train["magnification"].to_numpy(),
        patient=train["patient"].to_numpy(),
    )
    return TinySet(
        TrainSet.build(task, meta, keys=list(train["key"]), store=str(store)),
        TestSet.build(task, keys=list(test["key"]), store=str(store)),
        store,
    )


@dataclass
class _Fit:
    method: Method
    returned: object
    proba: np.ndarray
    aux: dict[str, np.ndarray]
    fit_seconds: float
    predict_seconds: float
    cpu_seconds: float  # fit + predict


@dataclass
class Battery:
    """Runs the checks against one registered method, fitting it once per task and reusing the fits."""

    entry: registry.Entry
    overrides: dict[str, Any] = field(default_factory=dict)
    budget: float = BUDGET_SECONDS
    _fits: dict[str, _Fit | Exception] = field(default_factory=dict, repr=False)

    @property
    def params(self) -> dict[str, Any]:
        return {**self.entry.cls.check_params(), **self.overrides}

    @property
    def tasks(self) -> tuple[str, ...]:
        known = tuple(t for t in self.entry.tasks if t in TASK_CLASSES)
        if not known:
            raise CheckFailed(f"no known task in tasks={self.entry.tasks!r}; nothing to fit")
        return known

    def create(self) -> Method:
        return registry.create(self.entry.name, **self.params)

    def fit(self, task: str) -> _Fit:
        """Fit on the tiny set and predict its test part; a raised error is kept and re-raised."""
        if task not in self._fits:
            try:
                self._fits[task] = _fit_predict(self.create(), tiny_set(task))
            except Exception as exc:
                self._fits[task] = exc
        found = self._fits[task]
        if isinstance(found, Exception):
            raise found
        return found

    def run(self, check: str) -> CheckResult:
        try:
            detail = CHECKS[check](self)
            return CheckResult(self.entry.name, check, True, detail)
        except (CheckFailed, UserError) as exc:
            return CheckResult(self.entry.name, check, False, str(exc))
        except Exception as exc:  # the method's own code raised
            return CheckResult(self.entry.name, check, False, f"raised {describe_exception(exc)}")

    def run_all(self, on_result: Callable[[CheckResult], None] | None = None) -> list[CheckResult]:
        found = []
        for check in CHECKS:
            found.append(self.run(check))
            if on_result is not None:
                on_result(found[-1])
        return found


def _fit_predict(method: Method, data: TinySet | _Lacking) -> _Fit:
    cpu, t0 = time.process_time(), time.perf_counter()
    try:
        returned = method.fit(data.train)
    except Exception as exc:
        raise CheckFailed(f"fit raised {describe_exception(exc)}") from exc
    t1 = time.perf_counter()
    try:
        proba = np.asarray(method.predict_proba(data.test), dtype=float)
        aux = {k: np.asarray(v, dtype=float) for k, v in method.predict_aux(data.test).items()}
    except Exception as exc:
        raise CheckFailed(f"predicting raised {describe_exception(exc)}") from exc
    return _Fit(method, returned, proba, aux, t1 - t0, time.perf_counter() - t1, time.process_time() - cpu)


@dataclass(frozen=True)
class _Lacking:
    """The tiny set with one class left out of training, as in a small fold of the 8-class task."""

    train: TrainSet
    test: TestSet
    absent: str


def _proba(method: Method, test: TestSet) -> np.ndarray:
    return np.asarray(method.predict_proba(test), dtype=float)


def _gap(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference, infinite when the shapes differ."""
    if a.shape != b.shape:
        return math.inf
    return float(np.abs(a - b).max()) if a.size else 0.0


# --- the checks: each returns what it verified, or raises CheckFailed --------------------------


def _check_card(b: Battery) -> str:
    e = b.entry
    missing = [k for k, v in (("reference", e.reference), ("summary (class docstring)", e.summary)) if not v]
    if e.family == "submission":
        missing += [k for k in SUBMISSION_CARD if not getattr(e.card, k)]
    if missing:
        raise CheckFailed(f"method card lacks {', '.join(missing)}; see submissions/README.md")
    if not e.tasks or set(e.tasks) - set(TASK_CLASSES):
        raise CheckFailed(f"tasks {e.tasks!r} must be a non-empty subset of {tuple(TASK_CLASSES)}")
    return f"family {e.family}, tasks {', '.join(e.tasks)}, reference {e.reference!r}"


def _check_params(b: Battery) -> str:
    cls = b.entry.cls
    names = cls.param_names()
    no_default = [n for n, d in cls.param_defaults().items() if d is inspect.Parameter.empty]
    if no_default:
        raise CheckFailed(f"constructor parameter(s) {', '.join(no_default)} need a default")
    declared = b.entry.declarations()
    outside = [f"{k}={v!r} (expected {declared[k].text()})" for k, v in b.entry.param_defaults().items()
               if not declared[k].check(v)[0]]  # fmt: skip
    if outside:
        raise CheckFailed(f"default(s) outside what the annotations declare: {', '.join(outside)}")
    method = b.create()
    params = method.get_params()
    wrong = [k for k, v in b.params.items() if params.get(k) != v]
    if wrong:
        raise CheckFailed(f"the constructor does not store {', '.join(wrong)} unchanged under the same name")
    extra = sorted(set(vars(method)) - set(names))
    if extra:
        raise CheckFailed(f"the constructor sets {', '.join(extra)} besides its parameters; do that work in fit")
    try:
        as_json = json.loads(json.dumps(params))
    except (TypeError, ValueError) as exc:
        raise CheckFailed(f"parameters are not JSON-serialisable (records store them): {exc}") from None
    if as_json != params:
        raise CheckFailed("parameters change through JSON (use plain numbers, strings, lists, None)")
    clone = method.clone()
    if type(clone) is not type(method) or clone is method or clone.get_params() != params:
        raise CheckFailed("clone() must return a new instance of the same class with equal get_params()")
    return (
        f"{len(names)} parameter(s) with defaults within their declarations, stored as given, JSON-serialisable; "
        "clone() round-trips"
    )


def _check_fit_returns_self(b: Battery) -> str:
    for task in b.tasks:
        if b.fit(task).returned is not b.fit(task).method:
            raise CheckFailed(f"fit must return self ({task} task returned {type(b.fit(task).returned).__name__})")
    return f"on the {' and '.join(b.tasks)} task(s)"


def _check_probabilities(b: Battery) -> str:
    for task in b.tasks:
        fit, n = b.fit(task), len(tiny_set(task).test)
        reason = invalid_output("predict_proba", fit.proba, n, len(TASK_CLASSES[task]))
        for head, values in fit.aux.items():
            if reason is None and values.ndim == 2:
                reason = invalid_output(f"predict_aux[{head!r}]", values, n, values.shape[1])
            elif reason is None:
                reason = f"predict_aux[{head!r}] must be (n_images, n_classes) probabilities"
        if reason:
            raise CheckFailed(f"{task} task: {reason}")
    return "finite, in [0, 1], rows sum to 1, shape (n_images, n_classes)" + (
        f"; aux heads {', '.join(b.fit(b.tasks[0]).aux)}" if b.fit(b.tasks[0]).aux else ""
    )


def _check_deterministic(b: Battery) -> str:
    task = b.tasks[0]
    first = b.fit(task)
    again = _fit_predict(first.method.clone(), tiny_set(task))
    gap = _gap(first.proba, again.proba)
    if math.isnan(gap):
        raise CheckFailed("a second fit with the same parameters gives probabilities that are not numbers (NaN)")
    if gap > TOLERANCE:
        raise CheckFailed(
            f"two fits with the same parameters differ by up to {gap:.3g}; seed every random generator "
            "from a `seed` parameter"
        )
    return f"two fits agree (max difference {gap:.1e})"


def _check_no_test_labels(b: Battery) -> str:
    task = b.tasks[0]
    data, fit = tiny_set(task), b.fit(task)
    carried = [a for a in _TEST_ATTRIBUTES if hasattr(data.test, a)]
    if carried:  # guards the harness itself: the contract promises a label-free TestSet
        raise CheckFailed(f"the TestSet handed to methods carries {', '.join(carried)}")
    pixels = TestSet.build(task, images=[data.test.image(i) for i in range(len(data.test))])
    gap = _gap(fit.proba, _proba(fit.method, pixels))
    if gap > TOLERANCE:
        raise CheckFailed(
            f"predictions change by up to {gap:.3g} when the test images come as bare pixels (no cache keys); "
            "predict from the pixels alone"
        )
    return "the TestSet carries no labels, and bare pixels give the same predictions"


def _check_per_image(b: Battery) -> str:
    task = b.tasks[0]
    data, fit = tiny_set(task), b.fit(task)
    keys = list(data.test.cache_keys or ())
    half = len(keys) // 2
    reversed_ = _proba(fit.method, TestSet.build(task, keys=keys[::-1], store=str(data.store)))[::-1]
    first_half = _proba(fit.method, TestSet.build(task, keys=keys[:half], store=str(data.store)))
    gap = max(_gap(fit.proba, reversed_), _gap(fit.proba[:half], first_half))
    if gap > TOLERANCE:
        raise CheckFailed(
            f"an image's prediction changes by up to {gap:.3g} with the other images of the test set; "
            "the composition of a test set follows its labels, so predict each image on its own"
        )
    return "an image's prediction does not depend on the rest of the test set (order, subset)"


def _check_missing_class(b: Battery) -> str:
    if "subtype" not in b.tasks:
        return "not tried: a binary-only method trained without a class would see one class"
    data = tiny_set("subtype")
    absent = len(data.train.classes) - 1
    lacking = _Lacking(data.train.subset(np.flatnonzero(data.train.y != absent)), data.test, data.train.classes[absent])
    fit = _fit_predict(b.create(), lacking)
    reason = invalid_output("predict_proba", fit.proba, len(data.test), len(TASK_CLASSES["subtype"]))
    if reason:
        raise CheckFailed(
            f"trained without any {lacking.absent} image (a small fold can lack a class): {reason}; "
            "keep one column per class of the task (train.classes), with probability 0 for a class never seen"
        )
    return f"trained without {lacking.absent}: still one probability per class of the task"


def _check_time_budget(b: Battery) -> str:
    task = b.tasks[0]
    fit, data = b.fit(task), tiny_set(task)
    text = (
        f"fit {fit.fit_seconds:.1f} s + predict {fit.predict_seconds:.1f} s, {fit.cpu_seconds:.1f} CPU s, on "
        f"{len(data.train)} + {len(data.test)} tiny images (budget {b.budget:g} CPU s)"
    )
    if fit.cpu_seconds > b.budget:
        raise CheckFailed(f"{text}; give small settings through a check_params() classmethod")
    return text


CHECKS: dict[str, Callable[[Battery], str]] = {
    "card": _check_card,
    "params": _check_params,
    "fit_returns_self": _check_fit_returns_self,
    "probabilities": _check_probabilities,
    "deterministic": _check_deterministic,
    "no_test_labels": _check_no_test_labels,
    "per_image": _check_per_image,
    "missing_class": _check_missing_class,
    "time_budget": _check_time_budget,
}


def targets(items: list[str], submissions: Path) -> list[registry.Entry]:
    """Methods named by `bhbench check` arguments: names, wildcards, families or submission paths;
    with none, every method loaded from the submissions folder."""
    if not items:
        found = [e for e in registry.entries() if _inside(e.origin, submissions)]
        if not found:
            raise UserError(f"no submissions found in {submissions}; name a method or give a path")
        return found
    chosen: list[registry.Entry] = []
    for item in items:
        path = Path(item)
        if path.suffix == ".py" or path.exists():
            new = registry.load_submission(path)
        else:
            new = [registry.get(n) for n in registry.resolve([item])]
        chosen += [e for e in new if e not in chosen]
    return chosen


def _inside(origin: str, folder: Path) -> bool:
    return Path(origin).resolve().is_relative_to(folder.resolve())


# --- running the battery in a worker -------------------------------------------------------------

MESSAGE_CAP = 64 * 1024  # one verdict; a longer reply fails the method instead of being read
_TRAIN_COLUMNS = ("key", "tumor_class", "subtype", "magnification", "patient")


def run_isolated(
    entry: registry.Entry,
    overrides: dict[str, Any],
    budget: float,
    launcher: str,
    submissions: Path | None,
    on_result: Callable[[CheckResult], None] | None = None,
    on_skipped: Callable[[str, str], None] | None = None,
    memory_gb: float | None = None,
    timeout: float | None = CHECK_SECONDS,
) -> list[CheckResult]:
    """The battery on `entry`, run in a fresh interpreter: under bubblewrap (`launcher`
    "bubblewrap", as `sandbox.choose` picked it) or a spawned process ("none"). Only JSON comes back;
    a worker that dies, answers anything else, or takes more than `timeout` wall-clock seconds (None:
    no limit) over one check fails that check with the reason, and the remaining ones."""
    train, test, store = _tiny_rows(cache_root())
    with tempfile.TemporaryDirectory(dir=cache_dir("checks")) as tmp:
        area = Path(tmp)
        if launcher == "bubblewrap":  # the sandbox shows a copy of the tiny set's arrays, not the cache
            store = _copy_arrays(store, [*train["key"], *test["key"]], area / "pixels")
        (area / "cache").mkdir()
        request = {
            "name": entry.name,
            "file": None if entry.trusted else str(Path(entry.origin).resolve()),
            "submissions": str(submissions.resolve()) if submissions is not None and submissions.is_dir() else None,
            "overrides": overrides,
            "budget": budget,
            "train": {c: [_plain(v) for v in train[c]] for c in _TRAIN_COLUMNS},
            "test": list(test["key"]),
            "store": str(store),
            "cache": str(area / "cache"),
        }
        limits = Limits.default(memory_gb=memory_gb)
        process, conn = _start(request, launcher, area, limits)
        found: list[CheckResult] = []
        try:
            skipped = _skipped(conn, timeout)
            if on_skipped is not None and isinstance(skipped, list):
                for source, message in skipped:
                    on_skipped(source, message)
            while len(found) < len(CHECKS):
                # A string: the method itself could not be loaded, and every check fails with that.
                reason = skipped if isinstance(skipped, str) else _receive(conn, timeout, found)
                if reason is not None:
                    with contextlib.suppress(Exception):  # reaped, so its exit code is known
                        process.wait(5) if isinstance(process, subprocess.Popen) else process.join(5)
                    code = process.poll() if isinstance(process, subprocess.Popen) else process.exitcode
                    why = reason if isinstance(skipped, str) or code is None else f"{reason} (exit code {code})"
                    left = list(CHECKS)[len(found) :]
                    for check in left:
                        said = why if check == left[0] else f"not run: {why}, during {left[0]}"
                        found.append(CheckResult(entry.name, check, False, said))
                        if on_result is not None:
                            on_result(found[-1])
                    break
                if on_result is not None:
                    on_result(found[-1])
        finally:
            conn.close()
            process.kill()
            with contextlib.suppress(Exception):
                process.wait(10) if isinstance(process, subprocess.Popen) else process.join(10)
    return found


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _copy_arrays(store: Path, keys: list[str], into: Path) -> Path:
    for key in keys:
        target = into / key[:2] / f"{key}.npy"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store / key[:2] / f"{key}.npy", target)
    return into


def _start(request: dict[str, Any], launcher: str, area: Path, limits: Limits) -> tuple[Any, Any]:
    """The worker and the harness's end of its connection (bytes only: JSON in both directions),
    under the limits `run` sets (worker.Limits): memory, one file's size, processes, /tmp."""
    import multiprocessing as mp
    from multiprocessing.connection import Connection

    from bhbench import sandbox

    # RLIMIT_NPROC holds only in the sandbox's user namespace (see worker.apply_limits).
    nproc = launcher == "bubblewrap" and sandbox.rlimit_nproc_holds()
    blob = json.dumps({**request, "limits": vars(limits), "rlimit_nproc": nproc}).encode()
    if launcher != "bubblewrap":
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        process = ctx.Process(target=serve, args=(child,), daemon=True)
        process.start()
        child.close()
        parent.send_bytes(blob)
        return process, parent
    mine, theirs = socket.socketpair()
    shown: list[str | tuple[str, str]] = []
    if request["submissions"]:
        shown.append(request["submissions"])
    if request["file"]:
        file = Path(request["file"])
        shown.append(str(file.parent if file.name == "method.py" else file))
    try:
        process = sandbox.launch(
            [sys.executable, "-I", "-c", "from bhbench.checks import main; main()", str(theirs.fileno())],
            shown,
            [str(area / "pixels"), str(area / "cache")],  # a private copy: resized images are written beside it
            pass_fds=(theirs.fileno(),),
            processes=limits.processes,
            tmp_size=min(limits.disk, limits.memory // 2),  # /tmp and /dev/shm are memory
        )
    except OSError as exc:
        mine.close()
        raise UserError(f"cannot start the sandbox ({exc}); {sandbox.INSTALL}, or check with --sandbox off") from None
    finally:
        theirs.close()
    conn = Connection(mine.detach())
    conn.send_bytes(blob)
    return process, conn


class Problem(str):
    """Why a check worker's message could not be read."""


def _message(conn: Any, timeout: float | None) -> Any:
    """The check worker's next message as parsed JSON (within `timeout` seconds), or the Problem."""
    if not conn.poll(timeout):
        return Problem(
            f"timed out after {timeout:g} s (the wall-clock limit of one check; --timeout SECONDS changes it)"
        )
    try:
        return json.loads(conn.recv_bytes(MESSAGE_CAP))
    except (EOFError, ConnectionError):
        return Problem("the check worker died")
    except (OSError, ValueError):  # OSError: past the cap (recv_bytes closes the connection)
        return Problem("the check worker sent something other than short JSON")


def _skipped(conn: Any, timeout: float | None) -> list[tuple[str, str]] | str:
    """The worker's first message: plugin files it could not import (source, reason), or why it
    could not load the method at all."""
    doc = _message(conn, timeout)
    if isinstance(doc, Problem):
        return doc
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return doc["error"][:500]
    listed = doc.get("skipped") if isinstance(doc, dict) else None
    if not (isinstance(listed, list) and all(isinstance(i, list) and len(i) == 2 for i in listed)):
        return "the check worker sent a malformed message"
    return [(str(a)[:500], str(b)[:500]) for a, b in listed]


def _receive(conn: Any, timeout: float | None, found: list[CheckResult]) -> str | None:
    """Append the next verdict to `found`; or the reason there is none."""
    doc = _message(conn, timeout)
    if isinstance(doc, Problem):
        return doc
    expected = list(CHECKS)[len(found)]
    if not (
        isinstance(doc, dict)
        and doc.get("check") == expected
        and isinstance(doc.get("passed"), bool)
        and isinstance(doc.get("detail"), str)
    ):
        return "the check worker sent a malformed verdict"
    found.append(CheckResult(str(doc.get("method", "")), expected, doc["passed"], doc["detail"][:2000]))
    return None


def main() -> None:
    """Entry point of a sandboxed check worker: `python -c '...main()' FD`."""
    from multiprocessing.connection import Connection

    serve(Connection(int(sys.argv[1])))


def serve(conn: Any) -> None:
    """The check worker: load the method (its code runs here, not in the harness), run the battery,
    send each verdict as JSON."""
    global _SENT
    request = json.loads(conn.recv_bytes())
    apply_limits(Limits(**request["limits"]), request["rlimit_nproc"])  # before any method code is imported
    os.environ["BHBENCH_CACHE"] = request["cache"]  # the method's own caches: its area, not the harness's
    try:
        submissions = Path(request["submissions"]) if request["submissions"] else Path(os.devnull)
        registry.discover(submissions, run_code=True)
        if request["file"] and request["name"] not in {e.name for e in registry.entries()}:
            registry.load_submission(Path(request["file"]), run_code=True)
        for err in registry.discovery_errors():
            if request["file"] and Path(err.source) == Path(request["file"]):
                raise UserError(f"{err.source}: cannot be imported: {err.message}")
        entry = registry.get(request["name"])
        skipped = [[e.source, e.message[:500]] for e in registry.discovery_errors()][:50]
        conn.send_bytes(json.dumps({"skipped": skipped}).encode())  # other plugins that failed to import here
    except Exception as exc:  # the method's module raised on import: every check fails with it
        reason = str(exc) if isinstance(exc, UserError) else describe_exception(exc)
        conn.send_bytes(json.dumps({"error": reason}).encode())
        return
    train = pd.DataFrame(request["train"])
    test = pd.DataFrame({"key": request["test"]})
    _SENT = (train, test, Path(request["store"]))
    battery = Battery(entry, request["overrides"], request["budget"])
    for check in CHECKS:
        r = battery.run(check)
        verdict = {"method": r.method, "check": r.check, "passed": r.passed, "detail": r.detail}
        conn.send_bytes(json.dumps(verdict).encode())
