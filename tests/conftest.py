"""Shared fixtures: an isolated cache, the tiny synthetic tree, real BreaKHis material, toy methods."""

from __future__ import annotations

import dataclasses
import shutil
import signal
import textwrap
from pathlib import Path

import pytest

from bhbench import registry

SHARED = Path(__file__).resolve().parents[2] / "shared" / "breakhis"
MINI = SHARED / "mini"
FOLDS = SHARED / "folds"
needs_real = pytest.mark.skipif(
    not (MINI.is_dir() and FOLDS.is_dir()),
    reason=f"real BreaKHis material not found at {SHARED} (expected ../shared/breakhis beside the checkout)",
)

# A shell that starts the suite in the background (`cmd &`, some CI runners) leaves SIGINT ignored, and
# an ignored signal stays ignored across exec: the Ctrl-C tests' bhbench processes would never see it.
signal.signal(signal.SIGINT, signal.default_int_handler)

# A small, fast, learnable method used to exercise the harness: nearest class mean of mean colour.
TOY = '''
import numpy as np
from bhbench import Method, register


@register("{name}", family="test", reference="bhbench tests")
class Toy(Method):
    """Nearest class mean of the mean colour."""

    def __init__(self, size: int = 16, seed: int = 0):
        self.size = size
        self.seed = seed

    def _features(self, images):
        return np.stack([images.image(i, (self.size, self.size)).reshape(-1, 3).mean(0) for i in range(len(images))])

    def fit(self, train):
        x = self._features(train)
        self.means_ = np.stack(
            [x[train.y == c].mean(0) if (train.y == c).any() else np.full(3, 1e6) for c in range(train.n_classes)]
        )
        return self

    def predict_proba(self, test):
        d = ((self._features(test)[:, None] - self.means_[None]) ** 2).sum(-1)
        e = np.exp(-(d - d.min(1, keepdims=True)) / 50.0)
        {body}
        return e / e.sum(1, keepdims=True)
'''


def toy_source(name: str = "toy", body: str = "pass", fit_body: str = "") -> str:
    """Source of a toy submission; `body` runs in predict_proba before returning (may break it)."""
    source = TOY.format(name=name, body=body)
    if fit_body:
        source = source.replace(
            "        x = self._features(train)\n", f"        {fit_body}\n        x = self._features(train)\n"
        )
    return textwrap.dedent(source)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Every test session gets its own cache; nothing touches ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("BHBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    mp.delenv("BHBENCH_DATA", raising=False)
    mp.delenv("BHBENCH_SUBMISSIONS", raising=False)
    # Built-ins register once, on first import; discover them before any test copies the registry.
    registry.discover()
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic generator's tiny set (82 patients, 1 small image per magnification)."""
    from bhbench.data import synthetic

    return synthetic.generate(tmp_path_factory.mktemp("tiny"), synthetic.TINY)


@pytest.fixture
def tree_copy(tiny_tree: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny tree a test may damage."""
    return Path(shutil.copytree(tiny_tree, tmp_path / "BreaKHis_v1"))


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch):
    """Registry state as it is now, restored after the test (submissions register globally)."""
    monkeypatch.setattr(registry, "DEFAULT", registry.DEFAULT.copy())
    return registry


@pytest.fixture
def submissions(tmp_path: Path, clean_registry) -> Path:
    """An empty submissions folder; tests drop toy methods into it."""
    folder = tmp_path / "submissions"
    folder.mkdir()
    return folder


@pytest.fixture
def run_toy(submissions: Path, tiny_tree: Path, tmp_path: Path):
    """`bhbench.api.run` on the tiny tree with the submissions folder: `run_toy("toy")` writes the toy
    first when no source of it is there; `source=` writes the method's file (`<method>.py`) instead.
    Records go to tmp_path/results unless `results=` says otherwise; FPS is not timed unless
    `fps_images=` asks. Keywords naming a field of `api.Where` (data, task, regime, mag...) make its
    `where`; the others go to `api.run` as they are."""
    from bhbench import api

    fields = {f.name for f in dataclasses.fields(api.Where)}

    def run(methods: str | list[str] = "toy", *, source: str | None = None, **options) -> api.RunResult:
        names = [methods] if isinstance(methods, str) else methods
        if source is not None:
            (submissions / f"{names[0]}.py").write_text(source)
        elif "toy" in names and not (submissions / "toy.py").exists():
            (submissions / "toy.py").write_text(toy_source("toy"))
        where = api.Where(**{"data": tiny_tree, **{k: options.pop(k) for k in fields & set(options)}})
        options = {"results": tmp_path / "results", "fps_images": 0, **options}
        return api.run(names, where, submissions=submissions, **options)

    return run
