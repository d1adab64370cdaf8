"""The process that runs method code.

Methods are untrusted code. They run in a worker that is a fresh interpreter, not a fork, so
nothing the harness holds in memory, test labels included, exists in their process: the worker
receives training images with their labels and test images by handle, and sends back
probabilities. The harness scores them in the parent.

Two launchers, one protocol (pickled Tasks and Outcomes over a connection): a `multiprocessing`
spawn child, or a child inside the bubblewrap sandbox (`bhbench.sandbox`) that sees only the
folders its job names. A sandboxed worker serves the jobs of one set of folders (one fold) and is
replaced for the next, so nothing a method kept in memory while an image was a training image (its
label) is there when that image comes back as a test image.
"""

from __future__ import annotations

import contextlib
import copy
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from bhbench.data.images import decode
from bhbench.errors import UserError
from bhbench.method import TestSet, TrainSet
from bhbench.util import THREADS_ENV, cpu_count, thread_budget


@dataclass
class Task:
    """One (method, fold): fit a fresh instance per part (one part, or one per magnification)."""

    method: str
    params: dict[str, Any]
    parts: list[tuple[TrainSet, TestSet]]
    fps_blobs: list[bytes] = field(default_factory=list)  # PNG bytes of a timing sample (no names)
    # Per part: positions of test images to predict again, in this order, on a copy of the method as
    # fitted (the contract check, see runner); empty for a transductive method.
    checks: list[np.ndarray] = field(default_factory=list)
    area: str | None = None  # the partition's blind area (bhbench.blind); its cache/ is the method's
    threads: int | None = None  # this worker's share of the cores when several run at once


@dataclass
class Outcome:
    proba: list[np.ndarray]
    aux: list[dict[str, np.ndarray]]
    fit_info: list[dict[str, Any]]
    fit_seconds: float
    predict_seconds: float
    timing: dict[str, Any]
    check: list[np.ndarray] = field(default_factory=list)  # probabilities of the check samples
    check_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # library warnings, once each (the run shows them once)


class MethodFailure(Exception):
    """A method raised, or returned something the contract forbids. The message is the reason."""


def _fps(method: Any, task: str, blobs: list[bytes]) -> dict[str, Any]:
    """Throughput on images the harness has never cached: decoded arrays in (model) and PNG bytes
    in (end to end = decode + model). One warm-up call first."""
    if not blobs:
        return {}
    t0 = time.perf_counter()
    arrays = [decode(b) for b in blobs]
    decode_s = time.perf_counter() - t0
    method.predict_proba(TestSet.build(task, images=arrays[:1]))  # warm-up
    t0 = time.perf_counter()
    method.predict_proba(TestSet.build(task, images=arrays))
    model_s = time.perf_counter() - t0
    n = len(arrays)
    return {
        "fps_model": n / model_s,
        "fps_end_to_end": n / (model_s + decode_s),
        "fps_images": n,
        "threads": _threads(),
    }


def _threads() -> int:
    torch = sys.modules.get("torch")  # a deep method has set torch's own thread count
    if torch is not None:
        return int(torch.get_num_threads())
    return thread_budget()


# Read by OpenMP and BLAS libraries when they load.
_POOL_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def thread_pools(threads: int | None) -> Iterator[None]:
    """Every OpenMP/BLAS thread pool of this process held to `threads` inside (None: left alone):
    those already loaded (numpy's BLAS) by threadpoolctl, those loaded later (scipy's own OpenBLAS,
    which scikit-learn brings) by the variables they read when they load. threadpoolctl alone
    misses the latter: with a thread per core in each of two side-by-side workers, their spinning
    threads made the QDA baselines' PCA ~2x slower."""
    from threadpoolctl import threadpool_limits

    values = {} if threads is None else dict.fromkeys(_POOL_ENV, str(threads))
    with _environ(values), threadpool_limits(threads):
        yield


def execute(task: Task) -> Outcome:
    """Run a task in this process (the worker calls this; tests may too)."""
    env: dict[str, str] = {}
    if task.area is not None:  # the method's caches (features...) live in the partition's area
        env["BHBENCH_CACHE"] = str(Path(task.area) / "cache")
    if task.threads is not None:  # several workers share the cores: methods read their share here
        env[THREADS_ENV] = str(task.threads)
    with _environ(env), thread_pools(task.threads):
        return _execute(task)


def _execute(task: Task) -> Outcome:
    from bhbench import registry

    probas, auxes, infos, checks = [], [], [], []
    fit_s = predict_s = check_s = 0.0
    method = None
    for part, (train, test) in enumerate(task.parts):
        method = registry.create(task.method, **task.params)
        t0 = time.perf_counter()
        try:
            fitted = method.fit(train)
        except UserError:
            raise  # a setting the user must fix (missing weights file, ...): stops the run
        except Exception as exc:
            raise MethodFailure(f"fit raised {describe_exception(exc)}") from exc
        fit_s += time.perf_counter() - t0
        if fitted is not method:
            raise MethodFailure("fit must return self")
        t0 = time.perf_counter()
        # Taken before the first prediction, so what predict_proba keeps on the instance (say, its
        # answers by handle) cannot make the check agree.
        snapshot = _copy(method) if task.checks else None
        check_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        try:
            probas.append(np.asarray(method.predict_proba(test), dtype=float))
            auxes.append({k: np.asarray(v, dtype=float) for k, v in method.predict_aux(test).items()})
        except Exception as exc:
            raise MethodFailure(f"predict_proba raised {describe_exception(exc)}") from exc
        predict_s += time.perf_counter() - t0
        if snapshot is not None:
            t0 = time.perf_counter()
            try:
                checks.append(np.asarray(snapshot.predict_proba(test.subset(task.checks[part])), dtype=float))
            except Exception as exc:
                raise MethodFailure(
                    f"predict_proba raised {describe_exception(exc)} on a sample of the test images"
                ) from exc
            check_s += time.perf_counter() - t0
        infos.append(method.fit_info())
    try:
        timing = _fps(method, task.parts[-1][1].task, task.fps_blobs) if method is not None else {}
    except Exception as exc:
        raise MethodFailure(f"predict_proba raised {describe_exception(exc)} while timing FPS") from exc
    return Outcome(probas, auxes, infos, fit_s, predict_s, timing, checks, check_s)


def _copy(method: Any) -> Any:
    try:
        return copy.deepcopy(method)
    except Exception as exc:
        raise MethodFailure(
            f"the fitted method cannot be copied ({describe_exception(exc)}); the harness predicts a sample "
            "of the test images again on a copy to check that predictions do not depend on the other images"
        ) from exc


def describe_exception(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _exit_with_parent(parent: int) -> None:
    """A killed harness (SIGKILL included) must not leave its worker training on for hours."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def serve(conn: Connection, submissions: str | None) -> None:
    """Worker loop: receive Tasks, send ("ok", Outcome) or ("failed", reason)."""
    from bhbench import registry

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    registry.discover(Path(submissions) if submissions else None)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        try:
            with warnings.catch_warnings(record=True) as caught:  # not printed per image or per fold
                outcome = execute(task)
            outcome.warnings = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
            conn.send(("ok", outcome))
        except MethodFailure as exc:
            conn.send(("failed", str(exc)))
        except UserError as exc:
            conn.send(("user error", f"{task.method}: {exc}"))
        except Exception as exc:  # the method may raise anything, even on construction
            conn.send(("failed", describe_exception(exc)))


def main() -> None:
    """Entry point of a sandboxed worker: `python -c '...main()' FD SUBMISSIONS`."""
    fd, submissions = int(sys.argv[1]), sys.argv[2]
    serve(Connection(fd), submissions or None)


class _Sandboxed:
    """A bwrap child seen through the few calls Worker makes of a multiprocessing.Process."""

    def __init__(self, proc: subprocess.Popen):
        self._proc = proc

    def is_alive(self) -> bool:
        return self._proc.poll() is None

    @property
    def exitcode(self) -> int | None:
        return self._proc.poll()

    def kill(self) -> None:
        self._proc.kill()  # bwrap --die-with-parent takes the sandboxed tree with it

    def join(self, timeout: float | None = None) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout)


def _spawned(submissions: str | None) -> tuple[mp.process.BaseProcess, Connection]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=serve, args=(child, submissions), daemon=True)
    process.start()
    child.close()
    return process, parent


def _folders(task: Task) -> tuple[tuple[str | tuple[str, str], ...], tuple[str, ...]]:
    """What the sandbox shows of a job: its area's pixels and the model files its parameters name
    (read-only), and its area's cache (writable)."""
    from bhbench.sandbox import model_files

    if task.area is None:
        return model_files(task.params), ()
    return (str(Path(task.area) / "pixels"), *model_files(task.params)), (str(Path(task.area) / "cache"),)


def _sandboxed(submissions: str, task: Task) -> tuple[_Sandboxed, Connection]:
    from bhbench import sandbox

    read_only, writable = _folders(task)
    for folder in writable:
        Path(folder).mkdir(parents=True, exist_ok=True)
    parent, child = socket.socketpair()
    try:
        command = [sys.executable, "-I", "-c", "from bhbench.worker import main; main()", str(child.fileno())]
        proc = sandbox.launch(
            [*command, submissions],
            [submissions, *read_only] if Path(submissions).is_dir() else read_only,
            writable,
            pass_fds=(child.fileno(),),
            stdout=subprocess.PIPE,  # relayed: the harness's own stdout may be a file whose path says too much
            stderr=subprocess.STDOUT,
        )
    except OSError as exc:  # e.g. a Slurm node without bwrap
        parent.close()
        raise UserError(f"cannot start the sandbox ({exc}); {sandbox.INSTALL}, or run with --sandbox off") from None
    finally:
        child.close()
    threading.Thread(target=_relay, args=(proc.stdout,), daemon=True).start()
    return _Sandboxed(proc), Connection(parent.detach())


def _relay(stream: Any) -> None:
    """What a sandboxed method prints, onto the harness's stderr."""
    for line in iter(stream.readline, b""):
        sys.stderr.write(line.decode(errors="replace"))
        sys.stderr.flush()


class Worker:
    """Parent-side handle of one worker process, restarted after a crash or timeout.

    `sandbox` is the launcher `bhbench.sandbox.choose` picked: "bubblewrap" or "none"."""

    def __init__(self, submissions: Path | None, sandbox: str = "none", sharing: int = 1):
        self.sandbox = sandbox
        # With `sharing` workers at once each gets its share of the cores, instead of all of them each.
        self.threads = max(1, cpu_count() // sharing) if sharing > 1 else None
        if sandbox == "bubblewrap":  # the sandbox has no working directory or environment to resolve it
            from bhbench.registry import default_submissions_dir

            submissions = (submissions or default_submissions_dir()).resolve()
        self.submissions = str(submissions) if submissions else None
        self.process: mp.process.BaseProcess | _Sandboxed | None = None
        self.conn: Connection | None = None
        self.folders: tuple[tuple[str | tuple[str, str], ...], tuple[str, ...]] | None = None

    def _start(self, task: Task) -> None:
        if self.sandbox == "bubblewrap":
            self.process, self.conn = _sandboxed(self.submissions or "", task)
        else:
            self.process, self.conn = _spawned(self.submissions)
        self.folders = _folders(task)

    def run(self, task: Task, timeout: float | None) -> Outcome:
        """Outcome of the task, or MethodFailure with the reason (raised, crashed, timed out)."""
        if self.sandbox == "bubblewrap" and self.folders != _folders(task):
            self.stop()
        if self.process is None or not self.process.is_alive():
            self._start(task)
        assert self.conn is not None and self.process is not None
        if self.threads is not None:
            task = replace(task, threads=self.threads)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # died on start-up: reported below
            self.conn.send(task)
        if not self.conn.poll(timeout):
            self.stop(kill=True)
            raise MethodFailure(f"timed out after {timeout:g} s (--timeout)")
        try:
            status, payload = self.conn.recv()
        except (EOFError, ConnectionResetError):
            self.process.join(timeout=10)
            code = self.process.exitcode
            self.stop(kill=True)
            raise MethodFailure(f"worker process died (exit code {code})") from None
        if status == "user error":
            raise UserError(payload)
        if status != "ok":
            raise MethodFailure(payload)
        return payload

    def interrupt(self) -> None:
        """Kill the process from another thread (Ctrl-C): the thread waiting in `run` sees it die and
        cleans up. Closing the connection here instead would leave that thread blocked for good."""
        process = self.process
        if process is not None and process.is_alive():
            process.kill()

    def stop(self, kill: bool = False) -> None:
        if self.process is not None and self.process.is_alive():
            if kill:
                self.process.kill()
            else:
                try:
                    self.conn.send(None)  # type: ignore[union-attr]
                except (BrokenPipeError, OSError):
                    self.process.kill()
            self.process.join(timeout=10)
        if self.conn is not None:
            self.conn.close()
        self.process, self.conn, self.folders = None, None, None
