"""Method registry: names -> (class, parameter defaults, method card), lookup with "did you mean",
and discovery of built-ins, `submissions/` and installed packages (entry-point group
`bhbench.methods`).

The trust boundary (DESIGN.md section 2): only bhbench's own baselines (the `builtin` entry point of
the bhbench distribution) are imported by the harness. A submission or any other plugin is untrusted:
the harness reads its cards from source (`bhbench.cards`, an `ast` parse, never an import) and holds
a stand-in class that knows the parameters but cannot fit; its module runs only in a worker, which
discovers with `run_code=True`.

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
import functools
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

from bhbench import cards
from bhbench.config import ENTRY_POINT_GROUP
from bhbench.constraints import Declared
from bhbench.errors import UserError
from bhbench.method import Method

M = TypeVar("M", bound=type[Method])


@dataclass(frozen=True)
class MethodCard:
    """What `bhbench list`, `bhbench check` and every record say about a method."""

    family: str = "submission"
    reference: str = ""  # paper, preprint or repository the idea comes from
    summary: str = ""  # one line; empty: the first line of the class docstring
    authors: str = ""  # required of submissions by `bhbench check`
    licence: str = ""  # SPDX identifier; required of submissions
    # What data pretrained weights were trained on ("ImageNet-1k"); "" for none. A model that saw
    # BreaKHis is contaminated, so the card says it and records keep it.
    weights_data: str = ""
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
    # Untrusted code: the class as read from source (`cls` is then a stand-in that cannot fit).
    source: cards.ClassInfo | None = None
    line: int = 0  # of the registration, when read from source

    @property
    def trusted(self) -> bool:
        return self.source is None

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
    def transductive(self) -> bool:
        return bool(self.cls.transductive)

    @property
    def summary(self) -> str:
        if self.card.summary:
            return self.card.summary
        if self.source is not None:
            return self.source.doc
        doc = inspect.getdoc(self.cls) or ""
        return doc.splitlines()[0] if doc else ""

    @property
    def details(self) -> dict[str, Any]:
        """Facts `bhbench list` shows: authors, licence and weights data when given, then the card's facts."""
        card = self.card
        given = {k: v for k, v in (("authors", card.authors), ("licence", card.licence)) if v}
        if card.weights_data:
            given["weights"] = card.weights_data
        return {**given, **card.facts}

    @functools.cached_property
    def info(self) -> cards.ClassInfo:
        """The class as a card: read from source (untrusted), or from the imported class."""
        return self.source if self.source is not None else cards.from_class(self.cls)

    def declarations(self) -> dict[str, Declared]:
        """Each constructor parameter's allowed values, from its annotation (an untrusted class's read from source)."""
        return {p.name: p.declared for p in self.info.params}

    def declares(self, hook: str) -> bool:
        """Whether the class defines an optional hook (`search_space`, `check_params`...)."""
        return hook in self.info.hooks

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

    def _add(
        self,
        name: str,
        cls: Any,
        card: MethodCard,
        defaults: dict[str, Any],
        origin: str,
        source: cards.ClassInfo | None = None,
        line: int = 0,
    ) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise TypeError(f"register({name!r}) needs a subclass of bhbench.Method, got {cls!r}")
        unknown = sorted(set(defaults) - set(cls.param_names()))
        if unknown:
            raise TypeError(f"register({name!r}): {cls.__name__} has no parameter {', '.join(unknown)}")
        info = source if source is not None else cards.from_class(cls)
        declared = {p.name: p.declared for p in info.params}
        for key, value in defaults.items():
            if not declared[key].check(value)[0]:
                message = f"register({name!r}): {key}={value!r} is not allowed: expected {declared[key].text()}"
                raise cards.CardError(f"{origin}:{line}: {message}") if source is not None else TypeError(message)
        taken = self._entries.get(name)
        same = taken is not None and taken.origin == origin and taken.cls.__qualname__ == cls.__qualname__
        if taken is not None and not same:
            where = f"{origin}:{line}" if line else origin
            raise UserError(f"method name {name!r} is registered twice: by {taken.origin} and by {where}")
        if same and taken is not None and taken.source is None and source is not None:
            return  # the class itself is already here (a worker imported it): keep it, not a stand-in
        self._entries[name] = Entry(name, cls, card, origin, dict(defaults), source, line)

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
        source = source.removeprefix("run:")
        try:
            action()
        except cards.CardError as exc:  # already one line naming file and line
            self._errors.append(DiscoveryError(source, str(exc)))
        except Exception as exc:  # a broken plugin must not stop the others
            last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f" (line {last.lineno})" if last is not None and last.filename == source else ""
            self._errors.append(DiscoveryError(source, f"{type(exc).__name__}: {exc}{where}"))

    def discover(self, submissions: Path | None = None, *, run_code: bool = False) -> None:
        """Register bhbench's baselines (imported: trusted) and the methods of installed plugins and
        submission files. Idempotent. Without `run_code` (the harness) an untrusted file's cards are
        read from its source and none of its code runs; a worker passes `run_code=True` and imports
        it. Failures are collected in `discovery_errors()`; the remaining methods stay usable."""
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            source = f"entry point {ep.name} = {ep.value}"
            if run_code or _trusted(ep):
                self._guarded(f"run:{source}", ep.load)
            else:
                self._guarded(source, lambda ep=ep: self._read_files(cards.package_files(ep.module)))
        for path in submission_files(submissions if submissions is not None else default_submissions_dir()):
            key = str(path.resolve())
            if run_code:
                self._guarded(f"run:{key}", lambda p=path: _load_file(p.resolve()))
            else:
                self._guarded(key, lambda p=path: self._read_files([p.resolve()]))

    def discover_trusted(self) -> None:
        """Only bhbench's own baselines (the leaderboard's fallback for records that predate stored defaults)."""
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if _trusted(ep):
                self._guarded(f"run:entry point {ep.name} = {ep.value}", ep.load)

    def _read_files(self, files: list[Path]) -> None:
        """Register the cards of untrusted source files without running them (all or none of a file's)."""
        found = [(file, r) for file in files for r in cards.read_file(file)]
        for file, reg in found:
            self.add_card(reg, str(file))

    def add_card(self, reg: cards.Registration, origin: str) -> None:
        if reg.card is not None:
            unknown = sorted(set(reg.card) - {f.name for f in fields(MethodCard)})
            if unknown:
                raise cards.CardError(f"{origin}:{reg.line}: MethodCard has no field {', '.join(unknown)}")
            card = MethodCard(**reg.card)
        else:
            card = MethodCard.from_keywords(**reg.keywords)
        bad = [f.name for f in fields(MethodCard) if f.name != "facts" and not isinstance(getattr(card, f.name), str)]
        if bad:
            raise cards.CardError(f"{origin}:{reg.line}: card field(s) {', '.join(bad)} must be strings")
        unknown = sorted(set(reg.defaults) - {p.name for p in reg.cls.params})
        if unknown:
            raise cards.CardError(f"{origin}:{reg.line}: {reg.cls.qualname} has no parameter {', '.join(unknown)}")
        if "param_defaults" in reg.cls.hooks:
            raise cards.CardError(
                f"{origin}:{reg.cls.line}: {reg.cls.qualname} overrides param_defaults; spell its parameters out "
                "in __init__ (cards are read without running the file)"
            )
        self._add(reg.name, _stand_in(reg.cls, origin), card, dict(reg.defaults), origin, reg.cls, reg.line)

    def load_submission(self, path: Path, *, run_code: bool = False) -> list[Entry]:
        """Register one submission (a `.py` file or a folder holding `method.py`) and return its
        methods: its cards read from source, or (`run_code`, in a worker) the file imported. Unlike
        `discover`, a failure is raised as a UserError naming the file."""
        file = path / "method.py" if path.is_dir() else path
        if not (file.is_file() and file.suffix == ".py"):
            raise UserError(f"{path}: not a submission (expected a .py file or a folder holding method.py)")
        key = str(file.resolve())
        if run_code:
            self._guarded(f"run:{key}", lambda: _load_file(file.resolve()))
        else:
            self._guarded(key, lambda: self._read_files([file.resolve()]))
        failure = next((e for e in self._errors if e.source == key), None)
        if failure is not None:
            raise UserError(failure.message if not run_code else f"{file}: cannot be imported: {failure.message}")
        found = [e for e in self.entries() if Path(e.origin).resolve() == file.resolve()]
        if not found:
            raise UserError(f"{file} registers no method; decorate a bhbench.Method subclass with @register(...)")
        return found

    def discovery_errors(self) -> list[DiscoveryError]:
        return list(self._errors)


def _trusted(ep: importlib.metadata.EntryPoint) -> bool:
    """bhbench's own baselines: the `builtin` entry point of the bhbench distribution itself."""
    dist = getattr(ep, "dist", None)
    return ep.name == "builtin" and ep.value == "bhbench_baselines" and dist is not None and dist.name == "bhbench"


class StandIn(Method):
    """Base of the classes the harness holds for untrusted methods: built from the source-read card,
    they take and store parameters like the real class, but their code is not there to run."""

    _source: cards.ClassInfo
    _origin: str  # the file the card was read from

    def __init__(self, **params: Any) -> None:
        defaults = self.param_defaults()
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword argument(s) {', '.join(unknown)}")
        values = {**defaults, **params}
        missing = [k for k, v in values.items() if v is inspect.Parameter.empty]
        if missing:
            raise TypeError(f"{type(self).__name__}() missing argument(s) {', '.join(missing)}")
        for key, value in values.items():
            setattr(self, key, value)

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        return {p.name: p.default for p in cls._source.params}

    def fit(self, train: Any) -> Method:
        raise RuntimeError(f"{type(self).__name__} is untrusted code: it runs only in a worker")

    def predict_proba(self, test: Any) -> Any:
        raise RuntimeError(f"{type(self).__name__} is untrusted code: it runs only in a worker")


def _stand_in(info: cards.ClassInfo, origin: str) -> type[Method]:
    namespace: dict[str, Any] = {
        "_source": info,
        "tasks": info.tasks,
        "transductive": info.transductive,
        "__doc__": info.doc,
        "__module__": __name__,
    }
    namespace["_origin"] = origin
    return type(info.qualname, (StandIn,), namespace)


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


def builtin_defaults(name: str) -> dict[str, Any] | None:
    """Parameter defaults of one of bhbench's own baselines (None for any other name): what the
    leaderboard compares a record's parameters with when the record predates stored defaults. Never
    a plugin's or a submission's, so the board does not depend on what is installed."""
    DEFAULT.discover_trusted()
    entry = DEFAULT._entries.get(name)
    if entry is None or not entry.trusted or not _is_builtin(entry.origin):
        return None
    return entry.param_defaults()


@functools.cache
def _builtin_folders() -> tuple[Path, ...]:
    spec = importlib.util.find_spec("bhbench_baselines")
    return tuple(Path(p).resolve() for p in (spec.submodule_search_locations or ())) if spec else ()


def _is_builtin(origin: str) -> bool:
    return any(Path(origin).resolve().is_relative_to(f) for f in _builtin_folders())


def discover(submissions: Path | None = None, *, run_code: bool = False) -> None:
    DEFAULT.discover(submissions, run_code=run_code)


def load_submission(path: Path, *, run_code: bool = False) -> list[Entry]:
    return DEFAULT.load_submission(path, run_code=run_code)


def discovery_errors() -> list[DiscoveryError]:
    return DEFAULT.discovery_errors()
