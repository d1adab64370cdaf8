"""The bubblewrap sandbox (`bhbench run --sandbox`): a method that goes looking for the answers
outside the objects it is handed — the file system, its environment, /proc, its open files, the
network — finds nothing under `--sandbox on`, and the same search finds them with `--sandbox off`."""

from __future__ import annotations

import json
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from bhbench import registry, runner, sandbox
from bhbench.cli import main
from bhbench.config import cache_root
from bhbench.data.sources import open_dataset
from bhbench.errors import UserError
from bhbench.protocol import Protocol

needs_bwrap = pytest.mark.skipif(
    sandbox.unavailable() is not None,
    reason=f"no working sandbox here: {sandbox.unavailable()}; {sandbox.INSTALL}",
)

# A method that ignores the pixels and searches its surroundings instead. It reports what it found
# through the only door the harness leaves open in every mode: the reason of a failed record.
SNOOP = textwrap.dedent('''
    import json, os, socket, time
    import numpy as np
    from bhbench import Method, register

    LOOT = ("manifest.csv", "secret")  # the harness's join table; the key of its handles

    def read(path):
        try:
            with open(path, "rb") as fh:
                return fh.read(1 << 16).replace(b"\\0", b" ").decode(errors="replace")
        except OSError as exc:
            return f"<{type(exc).__name__}>"

    def walk(stop_at_first):
        """Names of files that give answers away, searched where an attacker would look first."""
        found, seen, deadline = [], set(), time.monotonic() + 240  # a bound, far above the ~5 s it takes
        for top in ("/tmp", os.path.expanduser("~"), os.getcwd(), "/"):
            for folder, dirs, files in os.walk(top, onerror=lambda exc: None):
                if folder in seen or folder in ("/proc", "/sys", "/dev"):
                    dirs[:] = []
                    continue
                seen.add(folder)
                for name in dirs + files:
                    path = os.path.join(folder, name)
                    # the committed records' folder once, not its thousands of files: the report is one line
                    if name.startswith("SOB_") or name in LOOT or path.endswith("/leaderboard/results"):
                        found.append(path)
                if stop_at_first and any(os.path.basename(f).startswith("SOB_") for f in found):
                    return found, False
                if time.monotonic() > deadline:
                    return found, False
        return found, True

    @register("snoop", family="test", reference="bhbench tests")
    class Snoop(Method):
        def __init__(self, port: int = 0, stop_at_first: bool = False):
            self.port = port
            self.stop_at_first = stop_at_first

        def fit(self, train):
            return self

        def predict_proba(self, test):
            files, complete = walk(self.stop_at_first)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
                network = "connected"
            except OSError as exc:
                network = type(exc).__name__
            pids = [p for p in os.listdir("/proc") if p.isdigit()]
            fds = {}
            for fd in os.listdir("/proc/self/fd"):
                try:
                    fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
                except OSError:
                    pass
            seen = {
                "environ": json.dumps(dict(os.environ)),
                "proc_self": " ".join(read(f"/proc/self/{p}") for p in ("cmdline", "environ", "mountinfo")),
                "proc_all": " ".join(read(f"/proc/{p}/{f}") for p in pids for f in ("cmdline", "environ")),
                "parent": read(f"/proc/{os.getppid()}/cmdline"),
                "fds": json.dumps(fds),
            }
            raise RuntimeError(json.dumps({"files": files, "complete": complete, "network": network, "seen": seen}))
''')


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port on this machine's loopback that accepts connections: reachable from an unsandboxed
    method, not from a sandboxed one (its loopback is its own)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def _snoop(submissions: Path, tree: Path, out: Path, launcher: str, port: int) -> dict:
    """What the snooping method found in one (method, fold) job run with the given launcher."""
    (submissions / "snoop.py").write_text(SNOOP)
    registry.discover(submissions)
    options = runner.Options(results=out, submissions=submissions, sandbox=launcher, fps_images=0)
    plan = runner.make_plan(open_dataset(tree), Protocol(), None, options)
    spec = runner.MethodSpec.create("snoop", {"port": port, "stop_at_first": launcher == "none"})
    (result,) = runner.run(plan, runner.make_jobs(plan, [spec], options)[:1], options)
    record = result.record
    assert record.status == "failed" and record.environment.sandbox == launcher
    # the record's one line: "predict_proba raised RuntimeError: {...} (at snoop.py:N in predict_proba) (log: ...)"
    return json.loads(record.error.split("RuntimeError: ", 1)[1].rsplit(" (at snoop.py", 1)[0])


@needs_bwrap
def test_a_sandboxed_method_finds_no_answers_where_an_unsandboxed_one_does(
    submissions: Path, tiny_tree: Path, tmp_path: Path, listener: int
):
    results = tmp_path / "results"
    harness = Path("/proc/self/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    secrets_of_the_harness = [str(tiny_tree), str(results), str(cache_root() / "images"), harness]

    open_ = _snoop(submissions, tiny_tree, results, "none", listener)
    assert any(Path(f).name.startswith("SOB_") for f in open_["files"])  # the search works...
    assert open_["network"] == "connected"
    assert harness in open_["seen"]["parent"]

    boxed = _snoop(submissions, tiny_tree, results, "bubblewrap", listener)
    assert boxed["complete"] and boxed["files"] == []  # ...and finds nothing in the sandbox
    assert boxed["network"] != "connected"
    for where, text in boxed["seen"].items():
        leaked = [s for s in secrets_of_the_harness if s in text]
        assert not leaked, f"{where} shows {leaked}"


def test_on_without_a_working_sandbox_refuses_in_one_line(submissions: Path, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "unavailable", lambda: "bubblewrap (bwrap) is not installed")
    (submissions / "snoop.py").write_text(SNOOP)
    argv = ["--submissions", str(submissions), "run", "-m", "snoop", "--data", str(tmp_path / "nowhere")]
    code = main([*argv, "--results", str(tmp_path / "results"), "--sandbox", "on"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "Traceback" not in err
    assert err.splitlines()[-1].endswith(  # refused first: before the data is even looked at
        "--sandbox on: bubblewrap (bwrap) is not installed; install bubblewrap (Debian/Ubuntu: apt-get install "
        "bubblewrap; Fedora: dnf install bubblewrap), or run with --sandbox off"
    )
    assert not (tmp_path / "results").exists()


def test_auto_without_a_working_sandbox_runs_unsandboxed_with_a_notice(
    submissions: Path, tmp_path: Path, monkeypatch, capsys
):
    monkeypatch.setattr(sandbox, "unavailable", lambda: "bubblewrap (bwrap) is not installed")
    monkeypatch.setenv(sandbox.ENV_VAR, "auto")
    assert sandbox.choose("auto")[0] == "none"
    (submissions / "snoop.py").write_text(SNOOP)
    main(["--submissions", str(submissions), "run", "-m", "snoop", "--data", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert "note: methods run without a sandbox (bubblewrap (bwrap) is not installed)" in err


@needs_bwrap
def test_sandboxed_jobs_score_like_unsandboxed_ones_and_records_say_which_held(
    submissions: Path, tiny_tree: Path, tmp_path: Path
):
    from conftest import toy_source

    (submissions / "toy.py").write_text(toy_source("toy"))
    registry.discover(submissions)
    scores = {}
    for launcher in ("none", "bubblewrap"):
        options = runner.Options(results=tmp_path / launcher, submissions=submissions, sandbox=launcher, fps_images=0)
        plan = runner.make_plan(open_dataset(tiny_tree), Protocol(), None, options)
        done = runner.run(plan, runner.make_jobs(plan, [runner.MethodSpec.create("toy", {})], options)[:2], options)
        records = sorted((d.record for d in done), key=lambda r: r.split.fold)
        assert [r.status for r in records] == ["ok", "ok"]
        assert {r.environment.sandbox for r in records} == {launcher}
        scores[launcher] = [r.metrics.overall for r in records]
    assert scores["bubblewrap"] == [pytest.approx(s) for s in scores["none"]]


def test_only_model_files_named_by_parameters_are_shown(tmp_path: Path, monkeypatch):
    """`--set weights=PATH` must reach the sandbox; a submission's default naming one of the harness's
    own files (its secret, a manifest, a record, an image) must not."""
    for name in ("w.pth", "w.safetensors", "secret", "manifest.csv", "fold1.json", "x.png"):
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    params = {n: str(tmp_path / n) for n in ("w.pth", "secret", "manifest.csv", "fold1.json", "x.png")}
    params |= {"relative": "w.safetensors", "missing": str(tmp_path / "gone.pth"), "number": 3}
    assert sandbox.model_files(params) == (
        (str(tmp_path / "w.pth"), str(tmp_path / "w.pth")),
        (str(tmp_path / "w.safetensors"), "/tmp/w.safetensors"),  # the sandbox's working folder is /tmp
    )


@needs_bwrap
def test_a_cache_inside_a_folder_the_sandbox_shows_stops_the_run(submissions: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("BHBENCH_CACHE", str(submissions / "cache"))  # the submissions folder is shown
    with pytest.raises(UserError, match="lies inside .*submissions.*set BHBENCH_CACHE to a folder outside it"):
        sandbox.launch(["true"], [str(submissions)], [])


def test_a_machine_without_bwrap_at_launch_is_one_clear_error(submissions: Path, tmp_path: Path, monkeypatch):
    """A run decided to sandbox where bwrap works, its job landed where it does not (a Slurm node)."""
    import numpy as np
    from builders import train_set

    from bhbench.method import TestSet
    from bhbench.worker import Task, Worker

    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    images, y = [np.zeros((8, 8, 3), np.uint8)] * 2, np.array([0, 1])
    part = (train_set(y, images, patients=["p", "q"]), TestSet.build("binary", images=images))
    task = Task("majority", {}, [part])
    with pytest.raises(UserError, match="cannot start the sandbox .*apt-get install bubblewrap"):
        Worker(submissions, "bubblewrap").run(task, timeout=60)
