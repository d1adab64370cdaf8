"""A method's parameters as a user sets and reads them: `--set` values checked against the
method's declarations before any job starts, and the non-default ones named wherever a row is shown.

A parameter's constructor annotation declares what it allows (`bhbench.constraints`: a type,
`Literal` choices, `Annotated[int, Interval(1, None)]`); without one, the type of its default. The
declarations come from the registry's card, read from source for an untrusted method (a submission,
a plugin), so its values are checked here, in the harness, without importing it. This is the one
place values are checked: methods do not check them again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bhbench import registry
from bhbench.errors import UserError


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


def validate(name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` checked against method `name`'s declarations (and integers made floats where numbers
    are declared); a bad one is a one-line UserError naming the method, parameter, value and what
    is allowed."""
    entry = registry.get(name)
    declared = entry.declarations()
    checked = {}
    for key, value in values.items():
        if key not in declared:
            raise UserError(f"{name} has no parameter {key!r}; its parameters are {', '.join(declared)}")
        ok, checked[key] = declared[key].check(value)
        if not ok:
            raise UserError(f"{name}: {key}={value!r} is not allowed: expected {declared[key].text()}")
    return checked


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
