"""A method attacking the harness itself, from inside its worker: through the reply connection (a
crafted pickle, replies of the wrong type, size or values), through /proc, ptrace and signals, and by
exhausting memory, processes, file size and disk. Each must end in a failed (or chance-level) record
naming the reason, with the harness alive and the next job run. (What a method can read: test_sandbox.)"""

import json
import os
import textwrap
from pathlib import Path

import pytest

from bhbench import registry, runner, sandbox, worker
from bhbench.cli import main
from bhbench.data.sources import open_dataset
from bhbench.protocol import Protocol

needs_bwrap = pytest.mark.skipif(
    sandbox.unavailable() is not None,
    reason=f"no working sandbox here: {sandbox.unavailable()}; {sandbox.INSTALL}",
)
LAUNCHERS = ["none", pytest.param("bubblewrap", marks=needs_bwrap)]

# A method whose fit runs `attack` (with `conn`, the worker's reply connection, found the way an
# attacker would) and whose predictions are uniform: a record it leaves "ok" scores at chance.
EVIL = """
import gc, json, os, pickle, signal, sys, time
from multiprocessing.connection import Connection
import numpy as np
from bhbench import Method, register

MARKER = {marker!r}


def connection():
    return next(o for o in gc.get_objects() if isinstance(o, Connection) and not o.closed)


class Shell:
    def __reduce__(self):
        return (os.system, (f"touch {{MARKER}}",))


@register("evil", family="test", reference="bhbench containment tests")
class Evil(Method):
    def fit(self, train):
        conn = connection()
{attack}
        return self

    def predict_proba(self, test):
        return np.full((len(test), 2), 0.5)
"""


def _source(attack: str, marker: Path) -> str:
    return EVIL.format(marker=str(marker), attack=textwrap.indent(textwrap.dedent(attack), " " * 8))


def _run(submissions: Path, tree: Path, out: Path, launcher: str, attack: str, marker: Path | None = None) -> list:
    """Records of the hostile method's first fold, then an honest method's: the run must go on."""
    from conftest import toy_source

    (submissions / "evil.py").write_text(_source(attack, marker or out / "marker"))
    (submissions / "toy.py").write_text(toy_source("toy"))
    registry.discover(submissions)
    options = runner.Options(results=out, submissions=submissions, sandbox=launcher, fps_images=0, timeout=120)
    plan = runner.make_plan(open_dataset(tree), Protocol(), None, options)
    specs = [runner.MethodSpec.create(n, {}) for n in ("evil", "toy")]
    jobs = runner.make_jobs(plan, specs, options)
    jobs = [next(j for j in jobs if j.spec.name == n) for n in ("evil", "toy")]
    done = {d.job.spec.name: d.record for d in runner.run(plan, jobs, options)}
    assert done["toy"].ok, done["toy"].error  # the next job still runs, unharmed
    return [done["evil"], done["toy"]]


def _small_limits(monkeypatch: pytest.MonkeyPatch, **small: int) -> worker.Limits:
    limits = worker.Limits(**{**vars(worker.Limits.default()), **small})
    monkeypatch.setattr(worker.Limits, "default", classmethod(lambda cls, *a, **k: limits))
    return limits


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_crafted_pickle_up_the_connection_runs_nothing_in_the_harness(
    submissions: Path, tiny_tree: Path, tmp_path: Path, launcher: str
):
    marker = tmp_path / "escaped"  # outside the sandbox: only the harness could create it
    attack = "conn.send_bytes(pickle.dumps(('ok', Shell())))"
    evil, _ = _run(submissions, tiny_tree, tmp_path / "out", launcher, attack, marker)
    assert not marker.exists()
    assert evil.status == "failed" and "the worker's reply is not valid data" in evil.error


@pytest.mark.parametrize(
    ("attack", "reason"),
    [
        ("conn.send(('ok', 'an outcome, honestly'))", "not valid data"),  # a pickle of plain types
        ("conn.send_bytes(b'{}')", "not valid data"),
        ("conn.send_bytes((2).to_bytes(4, 'big') + b'[]')", "header is not a JSON object"),
        ("conn.send_bytes(b'\\0' * (64 << 20))", "larger than"),
        (  # a well-formed frame for another job (the token is the harness's secret per request)
            "conn.send_bytes(__import__('bhbench.worker').worker.encode_reply('guess', 'failed', 'x'))",
            "answers no request of this job",
        ),
    ],
    ids=["pickle-of-plain-types", "empty-json", "json-list", "huge", "wrong-token"],
)
def test_replies_that_are_not_the_protocols_data_fail_the_job(
    submissions: Path, tiny_tree: Path, tmp_path: Path, attack: str, reason: str
):
    evil, _ = _run(submissions, tiny_tree, tmp_path / "out", "none", attack)
    assert evil.status == "failed" and reason in evil.error, evil.error


def test_a_forged_frame_of_nan_or_wrong_shape_fails_the_job(submissions: Path, tiny_tree: Path, tmp_path: Path):
    """The method holds the connection and can read its own request: a well-formed frame for it, with
    NaN or wrongly shaped arrays, still meets the harness's checks of values and shapes."""
    for rows, reason in (("n", "NaN or infinite"), ("n + 1", "returned shape")):
        attack = f"""
            from bhbench.worker import Outcome, encode_reply
            task = next(o for o in gc.get_objects() if type(o).__name__ == "Task" and o.token)
            n = len(task.parts[0][1])
            bad = np.full(({rows}, 2), np.nan if "{rows}" == "n" else 0.5)
            conn.send_bytes(encode_reply(task.token, "ok", outcome=Outcome([bad], [{{}}], [{{}}], 0, 0, {{}})))
        """
        out = tmp_path / f"out-{len(rows)}"
        evil, _ = _run(submissions, tiny_tree, out, "none", attack)
        assert evil.status == "failed" and reason in evil.error, evil.error


def test_decode_reply_rejects_each_kind_of_bad_frame():
    import numpy as np

    good = worker.encode_reply("t", "ok", outcome=worker.Outcome([np.full((3, 2), 0.5)], [{}], [{}], 1.0, 1.0, {}))
    reply = worker.decode_reply(good, "t", 1)
    outcome = reply.outcome
    assert reply.status == "ok" and outcome.proba[0].shape == (3, 2) and outcome.proba[0].dtype == np.float64
    bad = {
        "truncated": good[:-8],
        "trailing bytes": good + b"\0" * 8,
        "no header": b"\0\0",
        "oversized header": (1 << 24).to_bytes(4, "big") + b"{}",
        "a pickle": __import__("pickle").dumps(("ok", None)),
    }
    for name, frame in bad.items():
        with pytest.raises(worker.BadReply):
            worker.decode_reply(frame, "t", 1)
            pytest.fail(name)
    with pytest.raises(worker.BadReply, match="a part has no probabilities"):
        worker.decode_reply(good, "t", 2)
    header = json.loads(good[4 : 4 + int.from_bytes(good[:4], "big")])
    header["outcome"]["timing"] = {"fps_model": 1.0, "secret_file": "/etc/passwd"}
    blob = json.dumps(header).encode()
    with pytest.raises(worker.BadReply, match="unknown keys"):
        worker.decode_reply(len(blob).to_bytes(4, "big") + blob + good[4 + int.from_bytes(good[:4], "big") :], "t", 1)


@needs_bwrap
def test_proc_mem_ptrace_and_signals_reach_no_process_outside_the_sandbox(
    submissions: Path, tiny_tree: Path, tmp_path: Path
):
    """The harness's pid names nothing in the sandbox: its memory cannot be read nor the process
    traced or signalled. The worker's parent there is bubblewrap's init: tracing or killing it ends
    only the job."""
    attack = f"""
        import ctypes, ctypes.util
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        found = {{"ppid": os.getppid()}}
        for who, pid in (("harness", {os.getpid()}), ("parent", os.getppid())):
            try:
                found[who + "_cmdline"] = open(f"/proc/{{pid}}/cmdline", "rb").read().decode(errors="replace")
            except OSError as exc:
                found[who + "_cmdline"] = type(exc).__name__
            try:
                with open(f"/proc/{{pid}}/mem", "rb") as fh:
                    fh.seek(0x400000)
                    found[who + "_mem"] = len(fh.read(4096))
            except OSError as exc:
                found[who + "_mem"] = type(exc).__name__
            found[who + "_ptrace"] = libc.ptrace(16, pid, None, None)  # PTRACE_ATTACH
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for who, pid in (("harness", {os.getpid()}), ("parent", os.getppid())):
                try:
                    os.kill(pid, sig)
                    found[f"kill_{{who}}_{{int(sig)}}"] = "sent"
                except OSError as exc:
                    found[f"kill_{{who}}_{{int(sig)}}"] = type(exc).__name__
        time.sleep(1)
        raise RuntimeError(json.dumps(found))
    """
    evil, _ = _run(submissions, tiny_tree, tmp_path / "out", "bubblewrap", attack)  # and pytest lives on
    assert evil.status == "failed"
    found = json.loads(evil.error.split("RuntimeError: ", 1)[1].rsplit(" (at evil.py", 1)[0])
    # The harness's pid is another process or none in the sandbox's pid namespace.
    assert "pytest" not in found["harness_cmdline"] and not isinstance(found["harness_mem"], int)
    assert found["harness_ptrace"] == -1 or "pytest" not in found["harness_cmdline"]
    # Its parent is the sandbox's init (bwrap starting the worker), not the harness.
    assert found["ppid"] == 1 and "bwrap" in found["parent_cmdline"].split("\0")[0]


@needs_bwrap
def test_forking_past_the_process_limit_fails_the_job(
    submissions: Path, tiny_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    _small_limits(monkeypatch, processes=48)
    attack = """
        for _ in range(200):  # bounded: without a limit the job ends "ok" and the test fails
            if os.fork() == 0:
                time.sleep(300)
                os._exit(0)
    """
    evil, _ = _run(submissions, tiny_tree, tmp_path / "out", "bubblewrap", attack)
    assert evil.status == "failed" and "exceeded its limit of 48 processes and threads" in evil.error, evil.error


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_memory_past_the_limit_fails_the_job(
    submissions: Path, tiny_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, launcher: str
):
    _small_limits(monkeypatch, memory=3 * worker.GB)
    attack = "hoard = np.empty(6 * 1024**3, np.uint8)  # address space only: untouched, it costs no RAM"
    evil, _ = _run(submissions, tiny_tree, tmp_path / "out", launcher, attack)
    assert evil.status == "failed" and "exceeded its memory limit of 3 GB (--memory)" in evil.error, evil.error


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_file_past_the_size_limit_fails_the_job(
    submissions: Path, tiny_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, launcher: str
):
    _small_limits(monkeypatch, file_size=32 << 20)
    attack = """
        os.makedirs(os.environ["BHBENCH_CACHE"], exist_ok=True)
        with open(os.path.join(os.environ["BHBENCH_CACHE"], "big.bin"), "wb") as fh:
            for _ in range(8):
                fh.write(b"\\0" * (8 << 20))
    """
    evil, _ = _run(submissions, tiny_tree, tmp_path / "out", launcher, attack)
    assert evil.status == "failed" and "wrote a file larger than its limit" in evil.error, evil.error


@pytest.mark.parametrize(
    ("launcher", "folder"),
    [
        ("none", "cache"),
        pytest.param("bubblewrap", "cache", marks=needs_bwrap),
        pytest.param("bubblewrap", "tmp", marks=needs_bwrap),
    ],
)
def test_filling_the_disk_of_the_writable_area_fails_the_job(
    submissions: Path, tiny_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, launcher: str, folder: str
):
    _small_limits(monkeypatch, disk=64 << 20)
    where = 'os.environ["BHBENCH_CACHE"]' if folder == "cache" else '"/tmp"'
    attack = f"""
        os.makedirs({where}, exist_ok=True)
        for i in range(16):  # 128 MB more (new names: the area outlives the test), held while the harness looks
            with open(os.path.join({where}, f"fill-{launcher}-{{i}}.bin"), "wb") as fh:
                fh.write(b"\\1" * (8 << 20))
        time.sleep(3 * {worker.DISK_POLL_SECONDS})
    """
    evil, _ = _run(submissions, tiny_tree, tmp_path / "out", launcher, attack)
    assert evil.status == "failed" and "more than its disk limit of 0.0625 GB" in evil.error, evil.error


@needs_bwrap
def test_the_sandbox_cannot_remount_its_read_only_views_writable(tmp_path: Path):
    """Run by root, bwrap keeps every capability unless told otherwise: a method could then remount
    the Python environment or its pixels writable and change the host's files."""
    shown = tmp_path / "shown"
    shown.mkdir()
    (shown / "f").write_text("kept")
    script = f"mount -o remount,rw,bind {shown} ; echo changed > {shown}/f"
    proc = sandbox.launch(["/bin/sh", "-c", script], [str(shown)], [], stdout=-1, stderr=-1)
    proc.communicate(timeout=60)
    assert (shown / "f").read_text() == "kept"


def test_the_cli_run_ends_with_one_line_per_failure_and_a_nonzero_code(
    submissions: Path, tiny_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    """Through `bhbench run`: the hostile job is a failed record with its reason, no traceback."""
    marker = tmp_path / "escaped"
    (submissions / "evil.py").write_text(_source("conn.send_bytes(pickle.dumps(('ok', Shell())))", marker))
    argv = ["--submissions", str(submissions), "run", "-m", "evil", "--data", str(tiny_tree)]
    code = main([*argv, "--results", str(tmp_path / "out"), "--sandbox", "off", "--fps-images", "0"])
    captured = capsys.readouterr()
    assert not marker.exists()
    assert "Traceback" not in captured.out + captured.err
    assert "not valid data" in captured.out + captured.err
    assert code != 0


@pytest.mark.parametrize("launcher", ["off", pytest.param("on", marks=needs_bwrap)])
def test_bhbench_check_runs_the_method_under_the_same_memory_limit(
    submissions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], launcher: str
):
    """CI runs `bhbench check` on every submission a pull request adds: its worker is bounded too."""
    attack = "hoard = np.empty(6 * 1024**3, np.uint8)  # address space only: untouched, it costs no RAM"
    (submissions / "evil.py").write_text(_source(attack, tmp_path / "marker"))
    code = main(["--submissions", str(submissions), "check", "evil", "--memory", "3", "--sandbox", launcher])
    said = capsys.readouterr().out
    assert code == 1 and "MemoryError" in said, said
