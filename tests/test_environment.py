"""The lock: it covers what pyproject.toml asks for, and a record names it only when the environment
matches it exactly."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from bhbench import environment

ROOT = Path(__file__).resolve().parents[1]


def test_the_lock_pins_every_requirement_within_its_range_and_holds_the_local_torch() -> None:
    lock = environment.read_lock(ROOT / "requirements.lock")
    assert lock is not None
    wanted = [Requirement(r) for r in metadata.requires("bhbench") or []]  # pyproject.toml's, with the extras
    assert any(r.name == "pytest" for r in wanted)
    for req in wanted:
        name = environment.normalise(req.name)
        assert name in lock.pins, f"{name} is required by pyproject.toml but not locked: run .ci/lock"
        assert req.specifier.contains(lock.pins[name]), f"{name}=={lock.pins[name]} is outside {req.specifier}"
    # Any other torch build is GBs of CUDA wheels on every fresh machine.
    assert (lock.pins["torch"], lock.pins["torchvision"]) == ("2.14.1", "0.29.1")


def test_a_record_names_the_lock_only_when_every_pin_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    numpy = environment.installed("numpy")
    lock_file = tmp_path / "requirements.lock"
    lock_file.write_text(f"# pip-compile output\nnumpy=={numpy} \\\n    --hash=sha256:00\n    # via bhbench\n")
    monkeypatch.setattr(environment, "LOCK_FILE", lock_file)
    environment.lock_here.cache_clear()
    try:
        lock = environment.read_lock(lock_file)
        assert lock is not None and lock.pins == {"numpy": numpy}
        assert environment.lock_here() == lock.hash and environment.environment("none", 1).lock == lock.hash

        lock_file.write_text(lock_file.read_text() + "Opencv_Python.Headless==0.0.1 \\\n    --hash=sha256:00\n")
        environment.lock_here.cache_clear()
        assert environment.lock_here() is None
        here = environment.installed("opencv-python-headless")
        assert environment.unmet(environment.read_lock(lock_file)) == [
            f"opencv-python-headless 0.0.1 locked, {here} here"
        ]
    finally:
        environment.lock_here.cache_clear()


def test_line_endings_do_not_change_the_lock_hash(tmp_path: Path) -> None:
    unix, windows = tmp_path / "a", tmp_path / "b"
    unix.write_bytes(b"numpy==2.0 \\\n    --hash=sha256:00\n")
    windows.write_bytes(b"numpy==2.0 \\\r\n    --hash=sha256:00\r\n")
    assert environment.read_lock(unix) == environment.read_lock(windows)


def test_the_cpu_is_named_by_model_and_widest_vector_instructions() -> None:
    """What a deep record's float sums depend on (`bhbench reproduce` names a record's other CPU)."""
    x86 = "processor\t: 0\nmodel name\t: Xeon A\nflags\t\t: fpu sse4_2 avx2 avx512f\npower management:\n\n"
    x86 += "processor\t: 1\nmodel name\t: Xeon B\nflags\t\t: fpu sse4_2\n"
    assert environment.describe_cpu(x86) == "Xeon A (avx512)"
    assert environment.describe_cpu(x86.replace(" avx512f", "")) == "Xeon A (avx2)"
    arm = "processor\t: 0\nFeatures\t: fp asimd evtstrm\nCPU part\t: 0xd0c\nHardware\t: Neoverse board\n"
    assert environment.describe_cpu(arm) == "Neoverse board (neon)"
