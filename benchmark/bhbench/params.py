"""A method's parameters as a user sets and reads them: `--set` values checked against the
constructor before any job starts, and the non-default ones named wherever a row is shown.

A value must fit the constructor's annotation (`epochs: int | None`) or, where there is none, the
type of its default; a method may add ranges with a `validate_params(cls, params)` classmethod that
raises ValueError naming the parameter and what it allows.
"""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any

from bhbench import registry
from bhbench.errors import UserError

VALIDATE = "validate_params"  # the optional range hook a method declares

_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list"}


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls.__init__)
    except Exception:  # an annotation naming something not importable here: fall back on defaults
        return {}


def _expected(name: str, cls: type, default: Any) -> Any:
    """The type a value must have: the annotation, else the default's type, else anything."""
    hint = _hints(cls).get(name)
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
    cls = registry.get(name).cls
    defaults = registry.create(name).get_params()
    checked = {}
    for key, value in values.items():
        if key not in defaults:
            raise UserError(f"{name} has no parameter {key!r}; its parameters are {', '.join(defaults)}")
        hint = _expected(key, cls, defaults[key])
        ok, checked[key] = _fit(value, hint)
        if not ok:
            raise UserError(f"{name}: {key}={value!r} is not allowed: expected {_describe(hint)}")
    hook = getattr(cls, VALIDATE, None)
    if hook is not None:
        try:
            hook({**defaults, **checked})
        except (ValueError, UserError) as exc:
            raise UserError(f"{name}: {exc}") from None
    return checked


def non_default(name: str, params: dict[str, Any]) -> dict[str, Any] | None:
    """The parameters that differ from the method's registered defaults; None when no method of
    that name is registered here (nothing to compare with)."""
    try:
        defaults = registry.create(name).get_params()
    except UserError:
        return None
    return {k: v for k, v in params.items() if k not in defaults or defaults[k] != v}


def describe(name: str, params: dict[str, Any]) -> str | None:
    """`C=10, bins=16`: a row's non-default parameters, short enough for a table cell ("" for the
    defaults; None when the method is not registered here)."""
    changed = non_default(name, params)
    return None if changed is None else ", ".join(f"{k}={_short(v)}" for k, v in changed.items())


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
