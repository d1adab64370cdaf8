"""A method's parameters as a user sets and reads them: `--set` values checked against the
constructor before any job starts, and the non-default ones named wherever a row is shown.

A value must fit the constructor's annotation (`epochs: int | None`) or, where there is none, the
type of its default; a method may add ranges with a `validate_params(cls, params)` classmethod that
raises ValueError naming the parameter and what it allows.

Everything comes from the registry's card: defaults and annotations as source text, so an untrusted
method (a submission, a plugin) is checked without importing it. Its `validate_params` hook is its
own code, so the harness runs it for bhbench's baselines only; an untrusted method's ranges are its
worker's to enforce.
"""

from __future__ import annotations

import ast
import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from bhbench import registry
from bhbench.errors import UserError

VALIDATE = "validate_params"  # the optional range hook a method declares

_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list"}


def _hints(entry: registry.Entry) -> dict[str, Any]:
    if not entry.trusted:  # annotations as written: never evaluated in this process
        return {k: _from_text(v) for k, v in entry.annotations().items()}
    try:
        return typing.get_type_hints(entry.cls.__init__)
    except Exception:  # an annotation naming something not importable here: fall back on defaults
        return {}


_TEXT_TYPES: dict[str, Any] = {
    "int": int, "float": float, "str": str, "bool": bool, "list": list, "List": list, "Sequence": list,
    "tuple": tuple, "Tuple": tuple, "dict": dict, "Dict": dict, "None": type(None), "Any": Any,
}  # fmt: skip


def _from_text(text: str) -> Any:
    """The annotation `int | None`, `Optional[float]`, `Literal["a", "b"]`... as a type to check
    values against; anything else is Any (not checked)."""
    try:
        return _hint_of(ast.parse(text, mode="eval").body, 0)
    except (SyntaxError, ValueError, TypeError, RecursionError):
        return Any


def _hint_of(node: ast.AST, depth: int) -> Any:
    if depth > 10:
        return Any
    if isinstance(node, ast.Constant):
        if node.value is None:
            return type(None)
        return _from_text(node.value) if isinstance(node.value, str) and depth == 0 else Any
    if isinstance(node, (ast.Name, ast.Attribute)):
        return _TEXT_TYPES.get(node.id if isinstance(node, ast.Name) else node.attr, Any)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return typing.Union[_hint_of(node.left, depth + 1), _hint_of(node.right, depth + 1)]  # noqa: UP007
    if isinstance(node, ast.Subscript):
        base = node.value.id if isinstance(node.value, ast.Name) else getattr(node.value, "attr", "")
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if base == "Optional":
            return typing.Union[_hint_of(args[0], depth + 1), type(None)]  # noqa: UP007
        if base == "Union":
            return typing.Union[tuple(_hint_of(a, depth + 1) for a in args)]  # noqa: UP007
        if base == "Literal":
            return typing.Literal[tuple(ast.literal_eval(a) for a in args)]
        return _TEXT_TYPES.get(base, Any)
    return Any


def _expected(name: str, entry: registry.Entry, default: Any) -> Any:
    """The type a value must have: the annotation, else the default's type, else anything."""
    hint = _hints(entry).get(name)
    if hint is not None:
        return hint
    if default is None or default is inspect.Parameter.empty:
        return Any
    return type(default) if type(default) in _NAMES else Any


def _fit(value: Any, hint: Any) -> tuple[bool, Any]:
    """(whether `value` fits `hint`, the value converted: an integer where a float is expected)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True, value
    if hint is None or hint is type(None):
        return value is None, value
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(hint):
            ok, converted = _fit(value, arm)
            if ok:
                return True, converted
        return False, value
    if origin is typing.Literal:
        return value in typing.get_args(hint), value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint in (list, tuple) or origin in (list, tuple):
        return isinstance(value, list), value
    if isinstance(hint, type):
        return isinstance(value, hint), value
    return True, value  # an annotation we cannot check


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if hint is None or hint is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (list, tuple):
        return "a list"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def validate(name: str, values: dict[str, Any]) -> dict[str, Any]:
    """`values` checked (and integers made floats where floats are expected) against method `name`;
    a bad one is a one-line UserError naming the parameter and what it allows."""
    entry = registry.get(name)
    defaults = entry.param_defaults()
    checked = {}
    for key, value in values.items():
        if key not in defaults:
            raise UserError(f"{name} has no parameter {key!r}; its parameters are {', '.join(defaults)}")
        hint = _expected(key, entry, defaults[key])
        ok, checked[key] = _fit(value, hint)
        if not ok:
            raise UserError(f"{name}: {key}={value!r} is not allowed: expected {_describe(hint)}")
    hook = getattr(entry.cls, VALIDATE, None) if entry.trusted else None
    if hook is not None:
        try:
            hook({**defaults, **checked})
        except (ValueError, UserError) as exc:
            raise UserError(f"{name}: {exc}") from None
    return checked


def resolve(names: Sequence[str], sets: Mapping[str, Any], device: str | None = None) -> dict[str, dict[str, Any]]:
    """For each method in `names`, the values of `sets` it accepts, checked and converted (`device`
    set where the method has a `device` parameter). A bad value, or a key no method in `names`
    accepts, is a one-line UserError: every command checks `--set` here, before any job starts."""
    resolved: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for name in names:
        accepted = defaults(name)
        mine = {k: v for k, v in sets.items() if k in accepted}
        if device is not None and "device" in accepted:
            mine["device"] = device
        used |= set(mine)
        resolved[name] = validate(name, mine)
    unused = sorted(set(sets) - used)
    if unused:
        raise UserError(f"no selected method has parameter(s) {', '.join(unused)}")
    return resolved


def defaults(name: str) -> dict[str, Any]:
    """Method `name`'s effective parameter defaults: its constructor's, overlaid with the ones its
    registration adds. Read from the declaration; the method is not constructed."""
    return registry.get(name).param_defaults()


def non_default(name: str, params: dict[str, Any], defaults: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The parameters that differ from the method's defaults (`defaults`, e.g. as a record stored
    them, else the registered ones); None when there is nothing to compare with."""
    if defaults is None:
        try:
            defaults = registry.get(name).param_defaults()
        except UserError:
            return None
    return {k: v for k, v in params.items() if k not in defaults or defaults[k] != v}


def describe(name: str, params: dict[str, Any], defaults: dict[str, Any] | None = None) -> str | None:
    """`C=10, bins=16`: a row's non-default parameters, short enough for a table cell ("" for the
    defaults; None when there are no defaults to compare with)."""
    changed = non_default(name, params, defaults)
    return None if changed is None else ", ".join(f"{k}={_short(v)}" for k, v in changed.items())


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
