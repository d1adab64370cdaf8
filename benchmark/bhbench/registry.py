"""Method registry: `@register`, lookup with "did you mean", and discovery of built-ins,
`submissions/` and installed packages (entry-point group `bhbench.methods`)."""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bhbench.errors import UserError
from bhbench.method import Method

M = TypeVar("M", bound=type[Method])

ENTRY_POINT_GROUP = "bhbench.methods"


@dataclass(frozen=True)
class Entry:
    name: str
    cls: type[Method]
    family: str
    reference: str
    origin: str  # module file the class was registered from
    details: dict[str, Any] = field(default_factory=dict)  # shown by `bhbench list` (e.g. dimension)

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.cls.tasks)

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.cls) or ""
        return doc.splitlines()[0] if doc else ""


@dataclass(frozen=True)
class DiscoveryError:
    source: str  # file or entry point that failed
    message: str


_REGISTRY: dict[str, Entry] = {}
_ERRORS: list[DiscoveryError] = []
_DISCOVERED: set[str] = set()


def _origin_of(cls: type) -> str:
    module = sys.modules.get(cls.__module__)
    return getattr(module, "__file__", None) or cls.__module__


def register(name: str, *, family: str = "submission", reference: str = "", **details: Any) -> Callable[[M], M]:
    """Class decorator adding a Method subclass under `name`. A taken name is an error naming both
    origins. `details` are free-form facts `bhbench list` shows (e.g. ``dim=162``)."""

    def wrap(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise TypeError(f"@register({name!r}) must decorate a subclass of bhbench.Method")
        origin = _origin_of(cls)
        taken = _REGISTRY.get(name)
        if taken is not None and not (taken.origin == origin and taken.cls.__qualname__ == cls.__qualname__):
            raise UserError(f"method name {name!r} is registered twice: by {taken.origin} and by {origin}")
        cls.name, cls.family, cls.reference = name, family, reference
        _REGISTRY[name] = Entry(name, cls, family, reference, origin, dict(details))
        return cls

    return wrap


def default_submissions_dir() -> Path:
    return Path(os.environ.get("BHBENCH_SUBMISSIONS", "submissions"))


def _load_file(path: Path) -> None:
    module_name = f"bhbench_submissions.{path.parent.name if path.name == 'method.py' else path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise


def submission_files(folder: Path) -> list[Path]:
    """`*.py` files and `<folder>/method.py` packages in a submissions folder, README and _private skipped."""
    if not folder.is_dir():
        return []
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(("_", ".")):
            continue
        if entry.is_file() and entry.suffix == ".py":
            found.append(entry)
        elif entry.is_dir() and (entry / "method.py").is_file():
            found.append(entry / "method.py")
    return found


def _guarded(source: str, action: Callable[[], Any]) -> None:
    if source in _DISCOVERED:
        return
    _DISCOVERED.add(source)
    try:
        action()
    except Exception as exc:  # a broken plugin must not stop the others
        last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" (line {last.lineno})" if last is not None and last.filename == source else ""
        _ERRORS.append(DiscoveryError(source, f"{type(exc).__name__}: {exc}{where}"))


def discover(submissions: Path | None = None) -> None:
    """Import built-ins and installed plugins (entry points) and every submission file. Idempotent.
    Failures are collected in `discovery_errors()`; the remaining methods stay usable."""
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        _guarded(f"entry point {ep.name} = {ep.value}", ep.load)
    for path in submission_files(submissions if submissions is not None else default_submissions_dir()):
        _guarded(str(path.resolve()), lambda p=path: _load_file(p))


def load_submission(path: Path) -> list[Entry]:
    """Import one submission (a `.py` file or a folder holding `method.py`) and return the methods
    it registered. Unlike `discover`, a failure is raised as a UserError naming the file."""
    file = path / "method.py" if path.is_dir() else path
    if not (file.is_file() and file.suffix == ".py"):
        raise UserError(f"{path}: not a submission (expected a .py file or a folder holding method.py)")
    key = str(file.resolve())
    _guarded(key, lambda: _load_file(file.resolve()))
    failure = next((e for e in _ERRORS if e.source == key), None)
    if failure is not None:
        raise UserError(f"{file}: cannot be imported: {failure.message}")
    found = [e for e in entries() if Path(e.origin).resolve() == file.resolve()]
    if not found:
        raise UserError(f"{file} registers no method; decorate a bhbench.Method subclass with @register(...)")
    return found


def discovery_errors() -> list[DiscoveryError]:
    return list(_ERRORS)


def entries() -> list[Entry]:
    return sorted(_REGISTRY.values(), key=lambda e: (e.family, e.name))


def get(name: str) -> Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `bhbench list` shows them all"
        raise UserError(f"unknown method {name!r}{hint}") from None


def create(name: str, **params: Any) -> Method:
    entry = get(name)
    try:
        return entry.cls(**params)
    except TypeError as exc:
        raise UserError(f"{name}: {exc}; its parameters are {entry.cls.param_names()}") from None


def resolve(patterns: Iterable[str]) -> list[str]:
    """Expand names, shell wildcards (`pftas_*`) and family names (`handcrafted`), keeping order."""
    names: list[str] = []
    families = {e.family for e in _REGISTRY.values()}
    for pattern in patterns:
        if pattern in _REGISTRY:
            matched = [pattern]
        elif pattern in families:
            matched = [e.name for e in entries() if e.family == pattern]
        elif any(ch in pattern for ch in "*?["):
            matched = sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))
            if not matched:
                raise UserError(f"no method matches {pattern!r}; `bhbench list` shows them all")
        else:
            get(pattern)  # raises with "did you mean"
            matched = []
        names.extend(n for n in matched if n not in names)
    return names
