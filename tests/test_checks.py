"""The uniform battery: every registered method passes it (one test per method and check, as
scikit-learn's parametrize_with_checks does), and a broken method fails each check by name."""

import functools
import textwrap
from pathlib import Path

import pytest
from conftest import toy_source

from bhbench import api, checks, registry
from bhbench.cli import main
from bhbench.errors import UserError

REPO = Path(__file__).resolve().parents[1]
# Deep methods train real networks; on the tiny set one epoch at a small input says all the battery needs.
SMALL = {"deep": {"epochs": 1, "batch_size": 16, "input_size": 75, "bilinear_dim": 16}}

# The test process plays the check worker: it imports the submissions (the harness only reads their cards).
registry.discover(REPO / "submissions", run_code=True)
ENTRIES = registry.entries()


@functools.cache
def battery(name: str) -> checks.Battery:
    """One battery per method, so its fits are shared by all of its checks."""
    entry = registry.get(name)
    small = SMALL.get(entry.family, {})
    overrides = (
        {} if hasattr(entry.cls, "check_params") else {k: v for k, v in small.items() if k in entry.cls.param_names()}
    )
    return checks.Battery(entry, overrides)


CASES = [
    pytest.param(
        e.name, check, marks=[pytest.mark.slow] if e.family in ("deep", "probe") else [], id=f"{e.name}-{check}"
    )
    for e in ENTRIES
    for check in checks.CHECKS
]


@pytest.mark.parametrize(("name", "check"), CASES)
def test_registered_method_passes(name: str, check: str):
    result = battery(name).run(check)
    assert result.passed, result.line()


def test_every_family_is_covered():
    families = {e.family for e in ENTRIES}
    assert {"handcrafted", "deep", "submission"} <= families
    assert "hed_nuclei_rf" in {e.name for e in ENTRIES}


# One method that breaks every check, each for its own reason.
BROKEN = """
import time
import numpy as np
from bhbench import Method, register


@register("broken_everything")
class Broken(Method):
    tasks = ("binary", "subtype")

    def __init__(self, width: int = 8):
        self.width = width
        self.cache = {}  # params: the constructor must only store its arguments

    def fit(self, train):
        start = time.process_time()
        while time.process_time() - start < 0.6:  # time_budget: the test gives --budget 0.5 (CPU seconds)
            pass
        self.offset_ = np.random.default_rng().normal()  # deterministic: unseeded
        # fit_returns_self: returns None

    def predict_proba(self, test):
        x = np.array([test.image(i).mean() for i in range(len(test))])
        x = (x - x.mean()) / 10 + self.offset_  # per_image: depends on the other test images
        if test.cache_keys is None:  # no_test_labels: behaves differently without cache keys
            x = x + 1.0
        p = 1 / (1 + np.exp(-x))
        return 0.8 * np.stack([p, 1 - p], axis=1)  # probabilities: rows sum to 0.8; two columns for 8 classes
"""


def test_check_names_each_failed_check_of_a_broken_method(tmp_path: Path, clean_registry):
    path = tmp_path / "broken.py"
    path.write_text(textwrap.dedent(BROKEN))
    summary = api.check([path], budget=0.5, submissions=tmp_path / "none")
    assert summary.failed == ["broken_everything"]
    found = summary.results["broken_everything"]
    assert [r.check for r in found] == list(checks.CHECKS) and not any(r.passed for r in found)
    by_check = {r.check: r.detail for r in found}
    assert "reference" in by_check["card"] and "authors" in by_check["card"] and "licence" in by_check["card"]
    assert "cache" in by_check["params"]
    assert "return self" in by_check["fit_returns_self"]
    assert "sum to one" in by_check["probabilities"]
    assert "seed" in by_check["deterministic"]
    assert "bare pixels" in by_check["no_test_labels"]
    assert "other images" in by_check["per_image"]
    assert "budget 0.5 CPU s" in by_check["time_budget"]
    assert "trained without any PC image" in by_check["missing_class"]


def test_a_method_that_drops_the_column_of_an_unseen_class_fails_missing_class(submissions: Path):
    # scikit-learn's predict_proba has one column per class seen in training: the usual slip.
    source = toy_source("toy_seen_only", body="e = e[:, np.unique(self.seen_)]")
    (submissions / "toy.py").write_text(
        source.replace(
            "        x = self._features(train)\n",
            "        self.seen_ = train.y\n        x = self._features(train)\n",
            1,
        )
    )
    registry.discover(submissions, run_code=True)
    result = checks.Battery(registry.get("toy_seen_only")).run("missing_class")
    assert not result.passed and "shape (32, 7), expected (32, 8)" in result.detail and "probability 0" in result.detail


def test_a_second_fit_that_gives_nan_fails_deterministic(submissions: Path):
    # "max difference nan" once passed: NaN compares false with any tolerance.
    source = toy_source(
        "toy_nan_again",
        fit_body="Toy.fits = getattr(Toy, 'fits', 0) + 1; self.nan_ = Toy.fits > 1",
        body="e = e * np.nan if self.nan_ else e",
    )
    (submissions / "toy.py").write_text(source)
    registry.discover(submissions, run_code=True)
    result = checks.Battery(registry.get("toy_nan_again")).run("deterministic")
    assert not result.passed and "not numbers (NaN)" in result.detail


def test_a_sound_method_passes_and_exits_zero(submissions: Path, capsys):
    (submissions / "toy.py").write_text(toy_source("toy_sound"))
    assert main(["--submissions", str(submissions), "check", "toy_sound"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "toy_sound" in line]
    assert len(lines) == len(checks.CHECKS) and all(line.startswith("PASS") for line in lines)


def test_fit_that_raises_fails_the_checks_that_need_a_fit_with_the_reason(submissions: Path):
    (submissions / "toy.py").write_text(toy_source("toy_raises", fit_body="raise ValueError('bad fit')"))
    registry.discover(submissions, run_code=True)
    results = {r.check: r for r in checks.Battery(registry.get("toy_raises")).run_all()}
    assert results["card"].passed and results["params"].passed
    assert not results["probabilities"].passed and "fit raised ValueError: bad fit" in results["probabilities"].detail


def test_targets_resolve_names_paths_and_default_to_the_submissions(submissions: Path, tmp_path: Path):
    (submissions / "a.py").write_text(toy_source("toy_a"))
    elsewhere = tmp_path / "elsewhere.py"
    elsewhere.write_text(toy_source("toy_elsewhere"))
    registry.discover(submissions)
    assert [e.name for e in checks.targets([], submissions)] == ["toy_a"]
    assert [e.name for e in checks.targets([str(elsewhere), "toy_a"], submissions)] == ["toy_elsewhere", "toy_a"]
    empty = tmp_path / "nothing.py"
    empty.write_text("x = 1\n")
    with pytest.raises(UserError, match="registers no method"):
        checks.targets([str(empty)], submissions)
    with pytest.raises(UserError, match="no submissions found"):
        checks.targets([], tmp_path / "no-such-folder")


def test_check_runs_the_method_in_a_worker_and_reads_verdicts_as_json(submissions: Path):
    """`bhbench check` imports no submission: its module runs in the check worker (another process),
    and a worker that dies mid-battery fails the remaining checks with the reason."""
    import os

    marker = submissions.parent / "imported-by"
    record_pid = f"import numpy as np\nimport os\nopen({str(marker)!r}, 'a').write(f'{{os.getpid()}}\\n')\n"
    source = toy_source("toy_where", body="import os; os._exit(3)").replace("import numpy as np\n", record_pid, 1)
    (submissions / "toy.py").write_text(source)
    summary = api.check(["toy_where"], sandbox="off", submissions=submissions)
    pids = marker.read_text().split()
    assert pids and str(os.getpid()) not in pids  # imported, but never by this (the harness) process
    by_check = {r.check: r for r in summary.results["toy_where"]}
    assert summary.failed == ["toy_where"] and by_check["params"].passed
    assert "the check worker died (exit code 3)" in by_check["probabilities"].detail
    assert "toy_where" in {e.name for e in registry.entries()} and not registry.get("toy_where").trusted
