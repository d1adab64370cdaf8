"""Method registry: names -> (class, parameter defaults, method card), lookup with "did you mean",
and discovery of built-ins, `submissions/` and installed packages (entry-point group
`bhbench.methods`).

The registry keys on names, not classes: one class may be registered under many names, each with
its own parameter defaults (`register("resnet50_bcnn", BilinearCNN, backbone="resnet50", card=...)`),
so a new variant is one line. The one-class-one-name case keeps the decorator form
`@register("name", family=..., reference=..., authors=..., licence=...)`.

State lives in a `Registry` object. The module-level functions act on `DEFAULT`, looked up at call
time, so a test may swap in a copy (`monkeypatch.setattr(registry, "DEFAULT", registry.DEFAULT.copy())`).
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar, overload

from bhbench.errors import UserError
from bhbench.method import Method

M = TypeVar("M", bound=type[Method])

ENTRY_POINT_GROUP = "bhbench.methods"


@dataclass(frozen=True)
class MethodCard:
    """What `bhbench list`, `bhbench check` and every record say about a method."""

    family: str = "submission"
    reference: str = ""  # paper, preprint or repository the idea comes from
    summary: str = ""  # one line; empty: the first line of the class docstring
    authors: str = ""  # required of submissions by `bhbench check`
    licence: str = ""  # SPDX identifier; required of submissions
    facts: Mapping[str, Any] = field(default_factory=dict)  # shown by `bhbench list`, e.g. dim=162

    @classmethod
    def from_keywords(cls, **keywords: Any) -> MethodCard:
        """The decorator's keywords: card fields by name, anything else a listed fact."""
        names = {f.name for f in fields(cls)} - {"facts"}
        return cls(
            **{k: v for k, v in keywords.items() if k in names},
            facts={k: v for k, v in keywords.items() if k not in names},
        )


@dataclass(frozen=True)
class Entry:
    """One registered name: its class, the parameter defaults it adds, its card and origin."""

    name: str
    cls: type[Method]
    card: MethodCard
    origin: str  # module file the registration came from
    defaults: Mapping[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return self.card.family

    @property
    def reference(self) -> str:
        return self.card.reference

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.cls.tasks)

    @property
    def summary(self) -> str:
        if self.card.summary:
            return self.card.summary
        doc = inspect.getdoc(self.cls) or ""
        return doc.splitlines()[0] if doc else ""

    @property
    def details(self) -> dict[str, Any]:
        """Facts `bhbench list` shows: authors and licence when given, then the card's facts."""
        given = {k: v for k, v in (("authors", self.card.authors), ("licence", self.card.licence)) if v}
        return {**given, **self.card.facts}

    def param_defaults(self) -> dict[str, Any]:
        """Every parameter of this name with its default: the class's, overridden by the registered ones."""
        return {**self.cls.param_defaults(), **self.defaults}

    def param_names(self) -> list[str]:
        return self.cls.param_names()


@dataclass(frozen=True)
class DiscoveryError:
    source: str  # file or entry point that failed
    message: str


def _origin_of(obj: Any) -> str:
    module = sys.modules.get(obj.__module__)
    return getattr(module, "__file__", None) or obj.__module__


def _caller_origin() -> str:
    """File of the code calling `register` (what a duplicate-name error points at)."""
    frame = inspect.currentframe()
    here = frame.f_code.co_filename if frame else __file__
    while frame is not None and frame.f_code.co_filename == here:
        frame = frame.f_back
    return frame.f_code.co_filename if frame is not None else "<unknown>"


class Registry:
    """Registered names, and which plugin sources were already imported (and which failed)."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._errors: list[DiscoveryError] = []
        self._discovered: set[str] = set()

    def copy(self) -> Registry:
        """An independent registry holding the same names (for tests that register their own)."""
        new = Registry()
        new._entries, new._errors, new._discovered = dict(self._entries), list(self._errors), set(self._discovered)
        return new

    # --- registering ---------------------------------------------------------------------------

    def register(
        self, name: str, cls: type[Method] | None = None, /, *, card: MethodCard | None = None, **keywords: Any
    ) -> Any:
        """Register `cls` under `name`.

        `register(name, cls, card=MethodCard(...), **defaults)` may be called many times on one class:
        each name gets its own parameter defaults (they must be constructor parameters of `cls`).
        Without `cls` it is a class decorator for the one-class-one-name case, and its keywords are
        the card's fields (`family`, `reference`, `authors`, `licence`, `summary`; anything else is a
        listed fact such as `dim=39`). A name already taken by another registration is an error
        naming both origins."""
        if cls is None:
            if card is not None and keywords:
                raise TypeError("@register takes either card=MethodCard(...) or card keywords, not both")
            chosen = card if card is not None else MethodCard.from_keywords(**keywords)

            def wrap(target: M) -> M:
                self._add(name, target, chosen, {}, _origin_of(target))
                return target

            return wrap
        self._add(name, cls, card if card is not None else MethodCard(), keywords, _caller_origin())
        return cls

    def _add(self, name: str, cls: Any, card: MethodCard, defaults: dict[str, Any], origin: str) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise TypeError(f"register({name!r}) needs a subclass of bhbench.Method, got {cls!r}")
        unknown = sorted(set(defaults) - set(cls.param_names()))
        if unknown:
            raise TypeError(f"register({name!r}): {cls.__name__} has no parameter {', '.join(unknown)}")
        taken = self._entries.get(name)
        same = taken is not None and taken.origin == origin and taken.cls.__qualname__ == cls.__qualname__
        if taken is not None and not same:
            raise UserError(f"method name {name!r} is registered twice: by {taken.origin} and by {origin}")
        self._entries[name] = Entry(name, cls, card, origin, dict(defaults))

    # --- lookup ----------------------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        return sorted(self._entries.values(), key=lambda e: (e.family, e.name))

    def list_methods(self, pattern: str | None = None) -> list[Entry]:
        """Entries by family then name; `pattern` keeps names matching a shell pattern or one family."""
        return [
            e for e in self.entries() if pattern is None or fnmatch.fnmatchcase(e.name, pattern) or e.family == pattern
        ]

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else "; `bhbench list` shows them all"
            raise UserError(f"unknown method {name!r}{hint}") from None

    def create(self, name: str, **params: Any) -> Method:
        """A new instance of `name`: its registered defaults, then `params` on top."""
        entry = self.get(name)
        unknown = sorted(set(params) - set(entry.param_names()))
        if unknown:
            close = difflib.get_close_matches(unknown[0], entry.param_names(), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else f"its parameters are {', '.join(entry.param_names())}"
            raise UserError(f"{name} has no parameter {', '.join(unknown)}; {hint}")
        try:
            return entry.cls(**copy.deepcopy({**entry.defaults, **params}))
        except TypeError as exc:
            raise UserError(f"{name}: {exc}; its parameters are {entry.param_names()}") from None

    def resolve(self, patterns: Iterable[str]) -> list[str]:
        """Expand names, shell wildcards (`pftas_*`) and family names (`handcrafted`), keeping order."""
        names: list[str] = []
        families = {e.family for e in self._entries.values()}
        for pattern in patterns:
            if pattern in self._entries:
                matched = [pattern]
            elif pattern in families:
                matched = [e.name for e in self.entries() if e.family == pattern]
            elif any(ch in pattern for ch in "*?["):
                matched = sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))
                if not matched:
                    raise UserError(f"no method matches {pattern!r}; `bhbench list` shows them all")
            else:
                self.get(pattern)  # raises with "did you mean"
                matched = []
            names.extend(n for n in matched if n not in names)
        return names

    # --- discovery -------------------------------------------------------------------------------

    def _guarded(self, source: str, action: Callable[[], Any]) -> None:
        if source in self._discovered:
            return
        self._discovered.add(source)
        try:
            action()
        except Exception as exc:  # a broken plugin must not stop the others
            last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f" (line {last.lineno})" if last is not None and last.filename == source else ""
            self._errors.append(DiscoveryError(source, f"{type(exc).__name__}: {exc}{where}"))

    def discover(self, submissions: Path | None = None) -> None:
        """Import built-ins and installed plugins (entry points) and every submission file. Idempotent.
        Failures are collected in `discovery_errors()`; the remaining methods stay usable."""
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            self._guarded(f"entry point {ep.name} = {ep.value}", ep.load)
        for path in submission_files(submissions if submissions is not None else default_submissions_dir()):
            self._guarded(str(path.resolve()), lambda p=path: _load_file(p))

    def load_submission(self, path: Path) -> list[Entry]:
        """Import one submission (a `.py` file or a folder holding `method.py`) and return the methods
        it registered. Unlike `discover`, a failure is raised as a UserError naming the file."""
        file = path / "method.py" if path.is_dir() else path
        if not (file.is_file() and file.suffix == ".py"):
            raise UserError(f"{path}: not a submission (expected a .py file or a folder holding method.py)")
        key = str(file.resolve())
        self._guarded(key, lambda: _load_file(file.resolve()))
        failure = next((e for e in self._errors if e.source == key), None)
        if failure is not None:
            raise UserError(f"{file}: cannot be imported: {failure.message}")
        found = [e for e in self.entries() if Path(e.origin).resolve() == file.resolve()]
        if not found:
            raise UserError(f"{file} registers no method; decorate a bhbench.Method subclass with @register(...)")
        return found

    def discovery_errors(self) -> list[DiscoveryError]:
        return list(self._errors)


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


DEFAULT = Registry()


# Thin module-level access to DEFAULT (looked up on every call, so tests can swap it).


@overload
def register(name: str, /, *, card: MethodCard | None = None, **keywords: Any) -> Callable[[M], M]: ...
@overload
def register(name: str, cls: M, /, *, card: MethodCard | None = None, **keywords: Any) -> M: ...
def register(name: str, cls: type[Method] | None = None, /, *, card: MethodCard | None = None, **keywords: Any) -> Any:
    return DEFAULT.register(name, cls, card=card, **keywords)


register.__doc__ = Registry.register.__doc__


def entries() -> list[Entry]:
    return DEFAULT.entries()


def list_methods(pattern: str | None = None) -> list[Entry]:
    return DEFAULT.list_methods(pattern)


def get(name: str) -> Entry:
    return DEFAULT.get(name)


def create(name: str, **params: Any) -> Method:
    return DEFAULT.create(name, **params)


def resolve(patterns: Iterable[str]) -> list[str]:
    return DEFAULT.resolve(patterns)


def discover(submissions: Path | None = None) -> None:
    DEFAULT.discover(submissions)


def load_submission(path: Path) -> list[Entry]:
    return DEFAULT.load_submission(path)


def discovery_errors() -> list[DiscoveryError]:
    return DEFAULT.discovery_errors()
