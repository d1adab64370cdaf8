"""The software a record is made with: the versions of the packages that can move its numbers, the
lock those versions come from, and the commit; and the hardware its float sums depend on.

The lock is `requirements.lock` beside `pyproject.toml` (written by `.ci/lock`, pip-compile with
hashes): the exact version of every package the harness and its tests install. A record names the
lock's hash only when every locked package is installed at its locked version, so "made under lock
X" is a fact about the environment, not about which file lay in the checkout.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import platform
import re
import subprocess
import zlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from bhbench.record import Environment

# Packages whose version can change a record's numbers: numpy (random streams, sums), OpenCV
# (synthetic shapes, PNG encoding, so the dataset's bytes, and decoding), Pillow (decoding before
# OpenCV did it), SciPy, the feature and model libraries (numba compiles the LBP kernels) and
# torchstain (--stain-norm's targets and normalised pixels, the cross-stain split's groups).
# `bhbench reproduce` names any of them that differ from a record's beside its verdict.
VERSIONED = (
    "numpy", "scipy", "pillow", "opencv-python-headless", "scikit-learn", "scikit-image", "mahotas", "numba", "torch",
    "timm", "torchstain",
)  # fmt: skip

# The repository's lock, when bhbench runs from a checkout (an editable install); an installed wheel
# has none beside it, and its records name no lock.
LOCK_FILE = Path(__file__).resolve().parents[2] / "requirements.lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


@dataclass(frozen=True)
class Lock:
    hash: str  # first 16 hex digits of the sha256 of the file (line endings normalised)
    pins: dict[str, str]  # normalised distribution name -> exact version


def normalise(name: str) -> str:
    """A distribution name as pip compares it (PEP 503): `Pillow`, `opencv_python` -> `pillow`, `opencv-python`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path | None = None) -> Lock | None:
    """The lock at `path` (default: the repository's), or None where there is none."""
    try:
        text = (path or LOCK_FILE).read_bytes().replace(b"\r\n", b"\n")
    except FileNotFoundError:
        return None
    pins = {}
    for line in text.decode().splitlines():
        if match := _PIN.match(line):
            pins[normalise(match[1])] = match[2]
    return Lock(hashlib.sha256(text).hexdigest()[:16], pins)


def installed(name: str) -> str | None:
    with contextlib.suppress(metadata.PackageNotFoundError):
        return metadata.version(name)
    return None


def unmet(lock: Lock) -> list[str]:
    """The locked packages installed at another version (or not at all), one phrase each."""
    return [
        f"{name} {version} locked, {installed(name) or 'not installed'} here"
        for name, version in sorted(lock.pins.items())
        if installed(name) != version
    ]


@functools.cache
def lock_here() -> str | None:
    """The hash of the repository's lock when this environment is exactly what it describes, else None."""
    lock = read_lock()
    return lock.hash if lock is not None and not unmet(lock) else None


def versions() -> dict[str, str]:
    """Python's, zlib's, bhbench's and the VERSIONED packages' versions here."""
    found = {"python": platform.python_version(), "zlib": zlib.ZLIB_RUNTIME_VERSION}
    for dist in ("bhbench", *VERSIONED):
        if (version := installed(dist)) is not None:
            found[dist] = version
    return found


def environment(sandbox: str, threads: int) -> Environment:
    return Environment(versions(), git_commit(), platform.platform(), sandbox, lock_here(), cpu(), threads)


# Widest first: the vector instructions that pick numpy's, oneDNN's and torch's kernels (x86 flags of
# /proc/cpuinfo; Arm's "asimd" is NEON).
_VECTOR_FLAGS = (("avx512f", "avx512"), ("avx2", "avx2"), ("sve", "sve"), ("asimd", "neon"), ("sse4_2", "sse4.2"))


@functools.cache
def cpu() -> str | None:
    """This machine's CPU, as `describe_cpu` says it; None where /proc/cpuinfo is not readable."""
    try:
        return describe_cpu(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        return None


def describe_cpu(cpuinfo: str) -> str:
    """The first CPU's model and widest vector instructions, from the text of /proc/cpuinfo."""
    # One block per CPU; reversed, so the first block's values are the ones kept.
    fields = dict(reversed(re.findall(r"^([^\t:\n]+?)[ \t]*:[ \t]*(.*)$", cpuinfo, re.MULTILINE)))
    model = fields.get("model name") or fields.get("Hardware") or platform.machine() or "unknown CPU"
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    widest = next((name for flag, name in _VECTOR_FLAGS if flag in flags), None)
    return f"{model} ({widest})" if widest else model


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
