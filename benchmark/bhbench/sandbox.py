"""The bubblewrap sandbox a method's worker runs in (`bhbench run --sandbox auto|on|off`).

Inside it a method has no network, its own process tree (the harness's command line is not in its
/proc), an environment holding only what Python and its thread pools read, a private /tmp, and
read-only views of an allowlist: the system's libraries, the Python environment, the method's own
code (bhbench, installed method packages, the submissions folder) and the folders its job was given.
Everything else on the machine — home, the dataset, the caches, the results, split files,
`leaderboard/` — does not exist there.

The worker runs as an unprivileged user (uid 65534) of its own user namespace with no capabilities
and no way to make another namespace: run by root, bwrap would otherwise keep every capability in the
sandbox, and a method could remount its read-only views writable (measured: it wrote through to
the host's files). Its limits (`bhbench.worker.Limits`) are rlimits it cannot raise, plus, for the
process count of a root harness (root is exempt from RLIMIT_NPROC), a pids cgroup.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from bhbench.config import ENTRY_POINT_GROUP, cache_root
from bhbench.errors import UserError

MODES = ("auto", "on", "off")
INSTALL = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)"
ENV_VAR = "BHBENCH_SANDBOX"
MODEL_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".onnx")

# Settings of the locale, the OpenMP/BLAS thread pools and the GPUs that a method's libraries read.
# Any value holding a "/" is dropped: nothing the method sees may name a file.
_KEPT_ENV = ("LANG", "LC_", "TZ", "OMP_", "KMP_", "MKL_", "OPENBLAS_", "NUMEXPR_", "VECLIB_", "CUDA_VISIBLE_DEVICES")
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# The dynamic loader's cache, and /etc/alternatives, which commands in /usr/bin link through.
_SYSTEM_ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime")


def default_mode() -> str:
    mode = os.environ.get(ENV_VAR, "auto")
    if mode not in MODES:
        raise UserError(f"{ENV_VAR}={mode!r}: expected one of {', '.join(MODES)}")
    return mode


def choose(mode: str) -> tuple[str, str | None]:
    """The launcher for `--sandbox MODE` ("bubblewrap" or "none") and, when `auto` falls back, a
    one-line notice. `on` without a working sandbox is a UserError."""
    if mode not in MODES:
        raise UserError(f"--sandbox {mode!r}: expected one of {', '.join(MODES)}")
    if mode == "off":
        return "none", None
    problem = unavailable()
    if problem is None:
        return "bubblewrap", None
    if mode == "on":
        raise UserError(f"--sandbox on: {problem}; {INSTALL}, or run with --sandbox off")
    return "none", f"note: methods run without a sandbox ({problem}); {INSTALL} to isolate them"


@functools.cache
def unavailable() -> str | None:
    """Why the sandbox cannot run here, or None. Tried once per process with a real launch of this
    Python inside it, since bwrap may be installed where user namespaces are disabled."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed"
    check = [sys.executable, "-I", "-c", "import bhbench.worker"]
    try:
        proc = launch(check, (), (), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap cannot start ({exc})"
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        return f"bwrap does not work here ({lines[-1] if lines else f'exit code {proc.returncode}'})"
    return None


def launch(
    command: list[str],
    read_only: Iterable[str | tuple[str, str]],
    writable: Iterable[str],
    pass_fds: tuple[int, ...] = (),
    processes: int | None = None,
    tmp_size: int | None = None,
    **popen: object,
) -> subprocess.Popen:
    """Start `command` in the sandbox with `read_only` (paths, or (path, where it appears)) and
    `writable` folders visible at their own paths. The sandbox's options reach bwrap through a
    pipe, not its command line, which the sandboxed process could read from /proc/1/cmdline.
    `--die-with-parent` ties the sandbox to the thread that calls this (Linux's parent-death signal
    follows threads): call it from a thread that outlives the worker, as the executors do.
    `processes` bounds its processes and threads through a pids cgroup where the harness is root;
    `tmp_size` bounds its /tmp and /dev/shm where bwrap can (0.10 and later)."""
    bwrap = shutil.which("bwrap")  # on the harness's PATH: the sandbox's own is a fixed one
    if bwrap is None:
        raise FileNotFoundError("bubblewrap (bwrap) is not on PATH")
    options = _options([*read_only], [*writable], tmp_size if _bwrap_sizes() else None)
    group = _pids_cgroup(processes) if processes is not None else None
    read, write = os.pipe()
    try:
        with os.fdopen(write, "wb") as fh:  # a few KiB: the pipe holds it all before bwrap reads
            fh.write(b"".join(o.encode() + b"\0" for o in options))
        proc = subprocess.Popen(
            [bwrap, "--args", str(read), "--", *command],
            pass_fds=(read, *pass_fds),
            env=_environment(),  # bwrap's own environment is readable from inside too
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C is the harness's to handle; it stops the worker
            # Joined before exec, so nothing bwrap starts is outside it.
            preexec_fn=None if group is None else functools.partial(_join_cgroup, group),
            **popen,  # type: ignore[arg-type]
        )
        _groups[proc.pid] = group
        return proc
    except BaseException:
        if group is not None:
            _remove_cgroup(group)
        raise
    finally:
        os.close(read)


# --- limits ---------------------------------------------------------------------------------------
# Measured on a root harness (Linux 6.18, cgroup v1 pids controller, bwrap 0.8): RLIMIT_NPROC set in
# the sandbox did not stop a fork bomb, since the worker's processes still belong to host uid 0,
# which the kernel exempts; a pids cgroup did (fork fails with EAGAIN at the limit). A non-root
# harness's sandbox gets RLIMIT_NPROC, which counts per user namespace there.
_groups: dict[int, Path | None] = {}  # bwrap pid -> its pids cgroup


def rlimit_nproc_holds() -> bool:
    return os.geteuid() != 0


def _pids_cgroup(limit: int) -> Path | None:
    """A fresh pids cgroup holding at most `limit` tasks, below this process's own; None where
    there is none to make (not root, no pids controller): RLIMIT_NPROC then does the work."""
    if os.geteuid() != 0:
        return None
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, where = line.split(":", 2)
        if "pids" in controllers.split(","):
            base = Path("/sys/fs/cgroup/pids") / where.lstrip("/")
        elif controllers == "" and "pids" in _read(Path("/sys/fs/cgroup", where.lstrip("/"), "cgroup.subtree_control")):
            base = Path("/sys/fs/cgroup") / where.lstrip("/")  # cgroup v2 with pids delegated to ours
        else:
            continue
        group = base / f"bhbench-{secrets.token_hex(6)}"
        try:
            group.mkdir()
            (group / "pids.max").write_text(str(limit))
            return group
        except OSError:
            with contextlib.suppress(OSError):
                group.rmdir()
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _join_cgroup(group: Path) -> None:
    (group / "cgroup.procs").write_text(str(os.getpid()))


def _remove_cgroup(group: Path) -> None:
    with contextlib.suppress(OSError):
        group.rmdir()


def pids_exhausted(proc: subprocess.Popen) -> bool:
    """Whether a fork in the sandbox of `proc` was refused by its pids cgroup."""
    group = _groups.get(proc.pid)
    if group is None:
        return False
    for line in _read(group / "pids.events").splitlines():
        key, _, count = line.partition(" ")
        if key == "max" and count.strip() not in ("", "0"):
            return True
    return False


def release(proc: subprocess.Popen) -> None:
    """Remove the cgroup of a sandbox that has exited."""
    group = _groups.pop(proc.pid, None)
    if group is not None:
        _remove_cgroup(group)


def tmp_bytes(pid: int) -> int:
    """Bytes held by the /tmp and /dev/shm of the sandbox bwrap `pid` started (memory-backed
    tmpfs: neither RLIMIT_AS nor RLIMIT_FSIZE bounds their total), 0 where it cannot be seen."""
    if _bwrap_sizes():
        return 0  # bounded by bwrap itself
    used = 0
    for child in _read(Path(f"/proc/{pid}/task/{pid}/children")).split()[:1]:
        for folder in ("tmp", "dev/shm"):
            with contextlib.suppress(OSError):
                st = os.statvfs(f"/proc/{child}/root/{folder}")
                used += (st.f_blocks - st.f_bfree) * st.f_frsize
    return used


@functools.cache
def _bwrap_sizes() -> bool:
    """Whether this bwrap takes `--size` before `--tmpfs` (0.10 and later)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False
    try:
        out = subprocess.run([bwrap, "--help"], capture_output=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return b"--size" in out


def _environment() -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if k.startswith(_KEPT_ENV) and "/" not in v}
    hub, torch_home = _model_caches_by_variable()
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        # Weights downloaded earlier on this machine load from these caches; nothing downloads.
        "HF_HUB_CACHE": hub,
        "HF_HUB_OFFLINE": "1",
        "TORCH_HOME": torch_home,
        **kept,
    }


def _model_caches_by_variable() -> tuple[str, str]:
    """Where the Hugging Face hub and torch.hub keep downloaded weights (as those libraries decide)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    hub = os.environ.get("HF_HUB_CACHE") or str(Path(os.environ.get("HF_HOME", cache / "huggingface")) / "hub")
    return hub, os.environ.get("TORCH_HOME", str(cache / "torch"))


def _model_caches() -> tuple[str, ...]:
    return tuple(p for p in _model_caches_by_variable() if os.path.isdir(p))


def model_files(params: dict[str, object]) -> tuple[tuple[str, str], ...]:
    """Model files the method's parameters name (`--set weights=PATH`), as (file, where the method
    will look: the same path, or under the sandbox's working folder /tmp for a relative one). Only
    these suffixes: a submission's own defaults must not expose the harness's files by naming them."""
    files = []
    for value in params.values():
        if isinstance(value, str) and value.endswith(MODEL_SUFFIXES) and os.path.isfile(value):
            path = Path(value)
            if path.is_absolute() or ".." not in path.parts:
                files.append((str(path.resolve()), str(path if path.is_absolute() else Path("/tmp") / path)))
    return tuple(sorted(files))


def _options(read_only: list[str | tuple[str, str]], writable: list[str], tmp_size: int | None = None) -> list[str]:
    opts = ["--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
    # An unprivileged user of its own user namespace, without capabilities or further namespaces
    # (see the module's docstring: as root, bwrap otherwise keeps them all).
    opts += ["--unshare-user", "--uid", "65534", "--gid", "65534", "--disable-userns", "--cap-drop", "ALL"]
    sized = [] if tmp_size is None else ["--size", str(tmp_size)]
    for key, value in _environment().items():
        opts += ["--setenv", key, value]
    # Fresh /proc, /dev and /tmp first: the folders bound below may lie under /tmp.
    opts += ["--proc", "/proc", "--dev", "/dev", *sized, "--tmpfs", "/dev/shm", *sized, "--tmpfs", "/tmp"]
    opts += ["--chdir", "/tmp"]
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):  # merged /usr: /lib -> usr/lib
            opts += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            opts += ["--ro-bind", path, path]
    for path in _SYSTEM_ETC:
        opts += ["--ro-bind-try", path, path]
    opts += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]  # core counts
    for device in sorted(Path("/dev").glob("nvidia*")) + sorted(Path("/dev").glob("dri")):
        opts += ["--dev-bind", str(device), str(device)]
    binds = [(p, p, "--ro-bind") for p in _code_folders() + _model_caches()]
    binds += [(i, i, "--ro-bind") if isinstance(i, str) else (*i, "--ro-bind") for i in read_only]
    binds += [(p, p, "--bind") for p in writable]
    _check_hidden(source for source, _, _ in binds)
    for source, target, how in binds:
        opts += [how, source, target]
    return opts


@functools.cache
def _code_folders() -> tuple[str, ...]:
    """The Python installation, bhbench and every package registering methods (editable installs
    live outside site-packages: their folders, never the repository around them)."""
    import bhbench

    folders = {sys.prefix, sys.base_prefix, str(Path(sys.executable).resolve().parent.parent)}
    folders.add(str(Path(bhbench.__file__).resolve().parent))
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        spec = importlib.util.find_spec(ep.module.partition(".")[0])
        if spec is not None and spec.submodule_search_locations:
            folders.update(str(Path(p).resolve()) for p in spec.submodule_search_locations)
        elif spec is not None and spec.origin:
            folders.add(str(Path(spec.origin).resolve()))
    return tuple(sorted(f for f in folders if not _under(f, _SYSTEM_DIRS)))


def _check_hidden(shown: Iterable[str]) -> None:
    """The cache (every image by content hash, the installation secret) must stay out of sight."""
    root = str(cache_root().resolve())
    for folder in shown:
        if _under(root, [folder]):
            raise UserError(
                f"the cache folder {root} lies inside {folder}, which the sandbox shows to methods; "
                "set BHBENCH_CACHE to a folder outside it"
            )


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(Path(path) == Path(r) or Path(r) in Path(path).parents for r in roots)
