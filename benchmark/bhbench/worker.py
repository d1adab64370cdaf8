"""The process that runs method code.

Methods are untrusted code. They run in a worker that is a fresh interpreter, not a fork, so
nothing the harness holds in memory, test labels included, exists in their process: the worker
receives training images with their labels and test images by handle, and sends back
probabilities. The harness scores them in the parent.

One protocol: pickled Tasks down a connection (the harness's own objects), and replies back up it
as data, never a pickle (`encode_reply`/`decode_reply`: a JSON header with a size cap and raw
float64 buffers of declared shapes), since the method holds the connection as well and could send
anything. Two launchers: a `multiprocessing` spawn child, or a child inside the bubblewrap sandbox
(`bhbench.sandbox`) that sees only the folders its job names. A sandboxed worker serves the jobs of
one method on one set of folders (one fold) and is replaced for the next, so nothing a method kept
in memory while an image was a training image (its label) is there when that image comes back as a
test image.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import functools
import json
import multiprocessing as mp
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from bhbench.data.images import decode
from bhbench.errors import UserError
from bhbench.method import TestSet, TrainSet
from bhbench.util import THREADS_ENV, cpu_count, jsonable, thread_budget


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
    threads: int | None = None  # the thread budget: a pinned one, or this worker's share when several run
    token: str = ""  # echoed in the reply: a frame left over from an earlier job matches no request


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
    """A method raised, or returned something the contract forbids. The message is the reason;
    `traceback` the method's whole traceback as text, when it raised."""

    def __init__(self, reason: str, traceback: str = ""):
        super().__init__(reason)
        self.traceback = traceback


GB = 1024**3


@dataclass(frozen=True)
class Limits:
    """What a worker may use. Set with setrlimit in the worker before any method code is imported
    (hard = soft: an unprivileged process cannot raise them again), except `disk`, which the
    harness measures while it waits for the reply."""

    memory: int  # bytes of address space (RLIMIT_AS), counted per process
    processes: int  # processes and threads of the sandboxed worker (see bhbench.sandbox)
    file_size: int  # bytes of any one file it writes (RLIMIT_FSIZE)
    disk: int  # bytes it may add to its writable area (and to the sandbox's /tmp)

    @classmethod
    def default(cls, sharing: int = 1, memory_gb: float | None = None) -> Limits:
        """Sized to this machine: 80% of RAM shared among the workers running at once. Address space,
        not resident memory, is what an rlimit can bound, and it runs well above it: torch with a
        resnet18 forward pass peaked at 3.7 GB of address space for 0.8 GB resident (measured), so the
        default stays generous and --memory should leave ~3 GB over what a deep model really uses."""
        memory = int(memory_gb * GB) if memory_gb else max(2 * GB, int(0.8 * _ram() / max(1, sharing)))
        return cls(memory=memory, processes=512, file_size=16 * GB, disk=32 * GB)

    def describe(self) -> dict[str, float | int]:
        return {
            "memory_gb": round(self.memory / GB, 2),
            "processes": self.processes,
            "file_size_gb": round(self.file_size / GB, 2),
            "disk_gb": round(self.disk / GB, 2),
        }


def _ram() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 8 * GB


def gb(n: int) -> str:
    return f"{n / GB:.3g} GB"


def apply_limits(limits: Limits, processes: bool) -> None:
    """Limits of this process and everything it starts. RLIMIT_NPROC only where `processes` says it
    holds (in the sandbox's user namespace for a non-root harness: it counts per user namespace
    since Linux 5.14, so it does not count the user's other processes; root is exempt from it, and
    the sandbox puts a root harness's worker in a pids cgroup instead)."""
    wanted = [(resource.RLIMIT_AS, limits.memory), (resource.RLIMIT_FSIZE, limits.file_size)]
    if processes:
        wanted.append((resource.RLIMIT_NPROC, limits.processes))
    for which, value in wanted:
        _soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit raises EFBIG, not a kill


def limit_reason(exc: BaseException, limits: Limits | None) -> str | None:
    """The limit a method's exception says it ran into, in words, or None."""
    if limits is None:
        return None
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, MemoryError):
            return f"the method exceeded its memory limit of {gb(limits.memory)} (--memory)"
        if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
            return f"the method wrote a file larger than its limit of {gb(limits.file_size)}"
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:  # the sandbox's sized /tmp, or a full disk
            return f"the method wrote more than its disk limit of {gb(limits.disk)} (or filled the disk)"
        # os.fork past the limit raises BlockingIOError (EAGAIN); threading, RuntimeError.
        if isinstance(exc, BlockingIOError) or (isinstance(exc, RuntimeError) and "new thread" in str(exc)):
            return f"the method exceeded its limit of {limits.processes} processes and threads"
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return None


# --- replies: data, never objects -----------------------------------------------------------------
# A frame is: 4-byte big-endian length of a JSON header, the header, then the raw little-endian
# float64 buffers of the arrays the header declares, in its order. The harness reads it with
# recv_bytes(maxlength) and numpy.frombuffer: nothing the method's process sent is unpickled.
HEADER_CAP = 1 << 20  # JSON: statuses, reasons, fit_info, timings, warnings
REASON_CAP = HEADER_CAP // 4  # a failed method's message (tests report through it)
_STATUSES = ("ok", "failed", "user error")
_TIMING_KEYS = {"fps_model": float, "fps_end_to_end": float, "fps_images": int, "threads": int}
_F8 = np.dtype("<f8")


def encode_reply(token: str, status: str, reason: str = "", outcome: Outcome | None = None, trace: str = "") -> bytes:
    """The frame of a reply (the worker's side); `trace`, a failure's traceback as text."""
    arrays: list[np.ndarray] = []
    header: dict[str, Any] = {"token": token, "status": status, "reason": reason[:REASON_CAP]}
    if trace:
        header["traceback"] = trace[-REASON_CAP:]  # its end holds the method's own frames
    if outcome is not None:
        described = []
        for role, per_part in (("proba", outcome.proba), ("check", outcome.check)):
            for part, a in enumerate(per_part):
                arrays.append(np.ascontiguousarray(a, dtype=_F8))
                described.append({"role": role, "part": part, "key": None, "shape": list(arrays[-1].shape)})
        for part, aux in enumerate(outcome.aux):
            for key, a in aux.items():
                arrays.append(np.ascontiguousarray(a, dtype=_F8))
                described.append({"role": "aux", "part": part, "key": str(key), "shape": list(arrays[-1].shape)})
        header["arrays"] = described
        header["outcome"] = {
            "fit_info": outcome.fit_info,
            "fit_seconds": outcome.fit_seconds,
            "predict_seconds": outcome.predict_seconds,
            "check_seconds": outcome.check_seconds,
            "timing": outcome.timing,
            "warnings": outcome.warnings,
        }
    blob = json.dumps(header, default=jsonable).encode()
    if len(blob) > HEADER_CAP:
        return encode_reply(token, "failed", f"fit_info is larger than the {HEADER_CAP >> 10} KiB allowed")
    return len(blob).to_bytes(4, "big") + blob + b"".join(a.tobytes() for a in arrays)


class BadReply(Exception):
    """A reply that is not the data the protocol allows; the message says what is wrong."""


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise BadReply(what)


def _number(value: Any, what: str) -> float:
    _expect(isinstance(value, (int, float)) and not isinstance(value, bool), f"{what} is not a number")
    _expect(bool(np.isfinite(value)) and value >= 0, f"{what} is not a finite non-negative number")
    return float(value)


@dataclass(frozen=True)
class Reply:
    status: str
    reason: str
    outcome: Outcome | None
    traceback: str = ""  # a failure's, as text


def decode_reply(frame: bytes, token: str, parts: int) -> Reply:
    """The reply of a frame, checked against what the request allows; BadReply
    naming the first thing wrong. Shapes and values are the runner's to check (invalid_output)."""
    _expect(len(frame) >= 4, "shorter than its header")
    size = int.from_bytes(frame[:4], "big")
    _expect(size <= min(HEADER_CAP, len(frame) - 4), "its header is larger than allowed or than the reply")
    try:
        header = json.loads(frame[4 : 4 + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BadReply(f"its header is not JSON ({type(exc).__name__})") from None
    _expect(isinstance(header, dict), "its header is not a JSON object")
    _expect(header.get("token") == token, "it answers no request of this job")
    status, reason = header.get("status"), header.get("reason")
    _expect(status in _STATUSES and isinstance(reason, str), "it has no valid status and reason")
    if status != "ok":
        _expect(len(frame) == 4 + size, "a failure carries arrays")
        trace = header.get("traceback", "")
        _expect(isinstance(trace, str), "its traceback is not text")
        return Reply(status, reason[:REASON_CAP], None, trace[-REASON_CAP:])
    described, info = header.get("arrays"), header.get("outcome")
    _expect(isinstance(described, list) and isinstance(info, dict), "it lacks its arrays or outcome")
    body, offset = memoryview(frame)[4 + size :], 0
    found: dict[str, list[Any]] = {"proba": [None] * parts, "check": [None] * parts, "aux": [{} for _ in range(parts)]}
    for d in described:
        _expect(isinstance(d, dict) and d.get("role") in found, "an array has no valid role")
        part, shape, key = d.get("part"), d.get("shape"), d.get("key")
        _expect(isinstance(part, int) and 0 <= part < parts, "an array names no part of the request")
        _expect(
            isinstance(shape, list) and len(shape) == 2 and all(isinstance(n, int) and 0 <= n < 1 << 31 for n in shape),
            "an array's shape is not two counts",
        )
        nbytes = shape[0] * shape[1] * _F8.itemsize
        _expect(offset + nbytes <= len(body), "its arrays are shorter than declared")
        a = np.frombuffer(body[offset : offset + nbytes], dtype=_F8).reshape(shape).astype(float)
        offset += nbytes
        if d["role"] == "aux":
            _expect(isinstance(key, str) and len(key) < 100 and key not in found["aux"][part], "an aux key is invalid")
            found["aux"][part][key] = a
        else:
            _expect(found[d["role"]][part] is None, "an array is sent twice")
            found[d["role"]][part] = a
    _expect(offset == len(body), "bytes follow its arrays")
    _expect(all(a is not None for a in found["proba"]), "a part has no probabilities")
    checks = [a for a in found["check"] if a is not None]
    _expect(len(checks) in (0, parts), "some parts have check predictions and some not")
    fit_info, timing, caught = info.get("fit_info"), info.get("timing"), info.get("warnings")
    _expect(isinstance(fit_info, list) and len(fit_info) == parts, "fit_info is not one value per part")
    _expect(isinstance(timing, dict) and set(timing) <= set(_TIMING_KEYS), "its timing has unknown keys")
    for key, value in timing.items():
        _number(value, f"timing {key}")
        timing[key] = _TIMING_KEYS[key](value)
    _expect(isinstance(caught, list) and all(isinstance(w, str) for w in caught), "its warnings are not text")
    outcome = Outcome(
        proba=found["proba"],
        aux=found["aux"],
        fit_info=fit_info,
        fit_seconds=_number(info.get("fit_seconds"), "fit_seconds"),
        predict_seconds=_number(info.get("predict_seconds"), "predict_seconds"),
        timing=timing,
        check=checks,
        check_seconds=_number(info.get("check_seconds"), "check_seconds"),
        warnings=[w[:REASON_CAP] for w in caught[:100]],
    )
    return Reply(status, reason, outcome)


def reply_cap(task: Task) -> int:
    """The largest reply a task may get: its header plus 64 float64 columns per predicted image."""
    rows = sum(len(test) for _, test in task.parts) + sum(len(c) for c in task.checks)
    return 4 + HEADER_CAP + 8 * 64 * rows


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
    described = functools.partial(describe_exception, own=method_files(task.method))
    for part, (train, test) in enumerate(task.parts):
        method = registry.create(task.method, **task.params)
        t0 = time.perf_counter()
        try:
            fitted = method.fit(train)
        except UserError:
            raise  # a setting the user must fix (missing weights file, ...): stops the run
        except Exception as exc:
            raise MethodFailure(f"fit raised {described(exc)}") from exc
        fit_s += time.perf_counter() - t0
        if fitted is not method:
            raise MethodFailure("fit must return self")
        t0 = time.perf_counter()
        # Taken before the first prediction, so what predict_proba keeps on the instance (say, its
        # answers by handle) cannot make the check agree.
        snapshot = _copy(method, described) if task.checks else None
        check_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        try:
            probas.append(np.asarray(method.predict_proba(test), dtype=float))
            auxes.append({k: np.asarray(v, dtype=float) for k, v in method.predict_aux(test).items()})
        except Exception as exc:
            raise MethodFailure(f"predict_proba raised {described(exc)}") from exc
        predict_s += time.perf_counter() - t0
        if snapshot is not None:
            t0 = time.perf_counter()
            try:
                checks.append(np.asarray(snapshot.predict_proba(test.subset(task.checks[part])), dtype=float))
            except Exception as exc:
                raise MethodFailure(f"predict_proba raised {described(exc)} on a sample of the test images") from exc
            check_s += time.perf_counter() - t0
        infos.append(method.fit_info())
    try:
        timing = _fps(method, task.parts[-1][1].task, task.fps_blobs) if method is not None else {}
    except Exception as exc:
        raise MethodFailure(f"predict_proba raised {described(exc)} while timing FPS") from exc
    return Outcome(probas, auxes, infos, fit_s, predict_s, timing, checks, check_s)


def _copy(method: Any, described: Callable[[BaseException], str]) -> Any:
    try:
        return copy.deepcopy(method)
    except Exception as exc:
        raise MethodFailure(
            f"the fitted method cannot be copied ({described(exc)}); the harness predicts a sample "
            "of the test images again on a copy to check that predictions do not depend on the other images"
        ) from exc


def describe_exception(exc: BaseException, own: Collection[Path] = ()) -> str:
    """`Type: message (at file.py:line in function)`, at the deepest frame in the files `own` (the
    method's code) when the traceback passes through them, else at the deepest frame: the line of
    the method that called into a library says more than the library's internals."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if Path(f.filename).resolve() in own]
    where = (mine or frames)[-1:]
    at = "".join(f" (at {Path(f.filename).name}:{f.lineno} in {f.name})" for f in where)
    return f"{type(exc).__name__}: {exc}{at}"


def method_files(name: str) -> set[Path]:
    """The source files of a registered method (where `describe_exception` looks for its frames)."""
    from bhbench import fingerprint, registry

    try:
        return set(fingerprint.code_files(registry.get(name).origin))
    except Exception:  # an unknown name or an unreadable file: the deepest frame will do
        return set()


def failure_trace(exc: BaseException) -> str:
    """The whole traceback of what the method raised (a MethodFailure's cause), as text."""
    cause = exc.__cause__ if isinstance(exc, MethodFailure) else exc
    return "".join(traceback.format_exception(cause)) if cause is not None else ""


def _exit_with_parent(parent: int) -> None:
    """A killed harness (SIGKILL included) must not leave its worker training on for hours."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def serve(conn: Connection, submissions: str | None, limits: Limits | None = None, processes: bool = False) -> None:
    """Worker loop: receive Tasks, send each a reply frame (`encode_reply`)."""
    from bhbench import registry

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    if limits is not None:  # before any method code is imported
        apply_limits(limits, processes)
    registry.discover(Path(submissions) if submissions else None, run_code=True)  # the one place plugin code runs
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
            frame = encode_reply(task.token, "ok", outcome=outcome)
        except MethodFailure as exc:
            frame = encode_reply(task.token, "failed", limit_reason(exc, limits) or str(exc), trace=failure_trace(exc))
        except UserError as exc:
            frame = encode_reply(task.token, "user error", f"{task.method}: {exc}")
        except Exception as exc:  # the method may raise anything, even on construction
            reason = limit_reason(exc, limits) or describe_exception(exc, method_files(task.method))
            frame = encode_reply(task.token, "failed", reason, trace=failure_trace(exc))
        conn.send_bytes(frame)


def main() -> None:
    """Entry point of a sandboxed worker: `python -c '...main()' FD SUBMISSIONS LIMITS`."""
    fd, submissions = int(sys.argv[1]), sys.argv[2]
    limits = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    processes = bool(limits.pop("rlimit_nproc")) if limits else False
    serve(Connection(fd), submissions or None, Limits(**limits) if limits else None, processes)


class _Sandboxed:
    """A bwrap child seen through the few calls Worker makes of a multiprocessing.Process."""

    def __init__(self, proc: subprocess.Popen):
        self._proc = proc
        self.pid = proc.pid

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
        if self._proc.poll() is not None:
            from bhbench.sandbox import release

            release(self._proc)


def _spawned(submissions: str | None, limits: Limits | None) -> tuple[mp.process.BaseProcess, Connection]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    # RLIMIT_NPROC would count all of the user's processes here (no user namespace): left unset.
    process = ctx.Process(target=serve, args=(child, submissions, limits, False), daemon=True)
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


def _sandboxed(submissions: str, task: Task, limits: Limits | None) -> tuple[_Sandboxed, Connection]:
    from bhbench import sandbox

    read_only, writable = _folders(task)
    for folder in writable:
        Path(folder).mkdir(parents=True, exist_ok=True)
    parent, child = socket.socketpair()
    try:
        command = [sys.executable, "-I", "-c", "from bhbench.worker import main; main()", str(child.fileno())]
        bounds = "" if limits is None else json.dumps({**vars(limits), "rlimit_nproc": sandbox.rlimit_nproc_holds()})
        proc = sandbox.launch(
            [*command, submissions, bounds],
            [submissions, *read_only] if Path(submissions).is_dir() else read_only,
            writable,
            pass_fds=(child.fileno(),),
            stdout=subprocess.PIPE,  # relayed: the harness's own stdout may be a file whose path says too much
            stderr=subprocess.STDOUT,
            processes=limits.processes if limits is not None else None,
            # /tmp and /dev/shm are memory: together they hold no more than the memory limit.
            tmp_size=min(limits.disk, limits.memory // 2) if limits is not None else None,
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


DISK_POLL_SECONDS = 2.0  # how often the harness measures the writable area while a job runs


def _tree_bytes(folder: str) -> int:
    total = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    total += _tree_bytes(entry.path)
                else:
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
    return total


class Worker:
    """Parent-side handle of one worker process, restarted after a crash, a timeout, a failed job
    or a bad reply (whatever a method left running in it goes with it).

    `sandbox` is the launcher `bhbench.sandbox.choose` picked: "bubblewrap" or "none"."""

    def __init__(
        self, submissions: Path | None, sandbox: str = "none", sharing: int = 1, memory_gb: float | None = None
    ):
        self.sandbox = sandbox
        # With `sharing` workers at once each gets its share of the cores, instead of all of them each.
        self.threads = max(1, cpu_count() // sharing) if sharing > 1 else None
        self.limits = Limits.default(sharing, memory_gb)
        if sandbox == "bubblewrap":  # the sandbox has no working directory or environment to resolve it
            from bhbench.registry import default_submissions_dir

            submissions = (submissions or default_submissions_dir()).resolve()
        self.submissions = str(submissions) if submissions else None
        self.process: mp.process.BaseProcess | _Sandboxed | None = None
        self.conn: Connection | None = None
        self.folders: tuple[tuple[str | tuple[str, str], ...], tuple[str, ...]] | None = None
        self.method: str | None = None

    def _start(self, task: Task) -> None:
        if self.sandbox == "bubblewrap":
            self.process, self.conn = _sandboxed(self.submissions or "", task, self.limits)
        else:
            self.process, self.conn = _spawned(self.submissions, self.limits)
        self.folders = _folders(task)
        self.method = task.method

    def run(self, task: Task, timeout: float | None, limit: str = "--timeout") -> Outcome:
        """Outcome of the task, or MethodFailure with the reason (raised, crashed, timed out after
        `timeout` seconds, which `limit` says where it comes from, past another limit, or replied with
        something other than the data the protocol allows)."""
        # A worker serves one method (a sandboxed one, on one fold): nothing a method left in it (a
        # thread answering the next request, a reply queued behind a forged one) meets another's job.
        if self.method != task.method or (self.sandbox == "bubblewrap" and self.folders != _folders(task)):
            self.stop()
        if self.process is None or not self.process.is_alive():
            self._start(task)
        assert self.conn is not None and self.process is not None
        task = replace(task, token=secrets.token_hex(16), threads=task.threads or self.threads)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # died on start-up: reported below
            self.conn.send(task)
        self._wait(task, timeout, limit)
        try:
            frame = self.conn.recv_bytes(maxlength=reply_cap(task))
        except (EOFError, ConnectionResetError):
            self.process.join(timeout=10)
            code = self.process.exitcode
            self.stop(kill=True)
            raise MethodFailure(f"worker process died (exit code {code}){self._died_why(code)}") from None
        except OSError:  # recv_bytes past maxlength (it closes the connection)
            self.stop(kill=True)
            raise MethodFailure(f"the worker's reply is larger than the {reply_cap(task)} bytes allowed") from None
        try:
            reply = decode_reply(frame, task.token, len(task.parts))
        except BadReply as exc:
            self.stop(kill=True)
            raise MethodFailure(f"the worker's reply is not valid data: {exc}") from None
        if reply.status == "user error":
            raise UserError(reply.reason)
        if reply.status != "ok" or reply.outcome is None:
            why = self._pids_reason()  # before the stop, which removes the cgroup
            self.stop(kill=True)
            raise MethodFailure(why or reply.reason or "(no message)", reply.traceback)
        return reply.outcome

    def _wait(self, task: Task, timeout: float | None, limit: str) -> None:
        """Until the reply is there; MethodFailure (and the worker killed) past the timeout or when
        the method's writes grow past the disk limit."""
        assert self.conn is not None
        start = time.monotonic()
        writable = self.folders[1] if self.folders else ()
        base = sum(_tree_bytes(f) for f in writable)
        while True:
            left = None if timeout is None else timeout - (time.monotonic() - start)
            if left is not None and left <= 0:
                self.stop(kill=True)
                raise MethodFailure(f"timed out after {timeout:g} s ({limit})")
            wait = DISK_POLL_SECONDS if left is None else min(left, DISK_POLL_SECONDS)
            if self.conn.poll(wait):
                return
            used = sum(_tree_bytes(f) for f in writable) - base + self._tmp_bytes()
            if used > self.limits.disk:
                self.stop(kill=True)
                raise MethodFailure(f"the method wrote more than its disk limit of {gb(self.limits.disk)}")

    def _tmp_bytes(self) -> int:
        """What the sandbox's /tmp and /dev/shm (memory-backed) hold, where bwrap cannot cap them."""
        if not isinstance(self.process, _Sandboxed):
            return 0
        from bhbench.sandbox import tmp_bytes

        return tmp_bytes(self.process.pid)

    def _died_why(self, code: int | None) -> str:
        if code is not None and code < 0 and -code in (signal.SIGKILL, signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS):
            return f"; it may have run past its memory limit of {gb(self.limits.memory)} (--memory)"
        return ""

    def _pids_reason(self) -> str | None:
        from bhbench.sandbox import pids_exhausted

        if isinstance(self.process, _Sandboxed) and pids_exhausted(self.process._proc):
            return f"the method exceeded its limit of {self.limits.processes} processes and threads"
        return None

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
        if self.process is not None:
            self.process.join(timeout=10)
        if self.conn is not None:
            self.conn.close()
        self.process, self.conn, self.folders, self.method = None, None, None, None
