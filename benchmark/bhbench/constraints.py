"""What values a method parameter allows, declared once in the constructor's annotation.

    def __init__(self, n_trees: Annotated[int, Interval(1, None)] = 100,
                 rate: Annotated[float, Interval(0, 1, closed="right")] | None = None,
                 kind: Literal["a", "b"] = "a"): ...

The annotation's type (`int`, `float`, `str`, `bool`, `list`, `dict`, `None`, unions, `Literal`
choices) says what kind of value; an `Interval` in `Annotated[...]` bounds a number. The harness
reads the annotation as source text (`Declared.parse`): an untrusted method's file is parsed, never
imported (`bhbench.cards`), so its ranges are checked before any job starts like a built-in's, and
a constraint that is not written as a literal is an error naming the file and line. A trusted
class's annotation is read the same way, from its text (an evaluated annotation prints as such
text), so there is one reader. Types the reader does not know are not checked.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Interval:
    """Numbers from `low` to `high` (None: unbounded); `closed` says which ends are included;
    `step` (integers only) keeps low, low + step, low + 2 step... (`Interval(3, None, step=2)`:
    odd numbers from 3)."""

    low: float | None = None
    high: float | None = None
    closed: Literal["both", "left", "right", "neither"] = "both"
    step: int | None = None

    def __post_init__(self) -> None:
        if self.closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"closed={self.closed!r}: expected 'both', 'left', 'right' or 'neither'")
        bounds = [b for b in (self.low, self.high) if b is not None]
        if any(not isinstance(b, (int, float)) or isinstance(b, bool) for b in bounds):
            raise ValueError("the bounds must be numbers or None")
        if self.step is not None and not (isinstance(self.step, int) and self.step > 0 and self.low is not None):
            raise ValueError("step must be a positive integer counted from a low bound")

    def admits(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.low is not None and (value < self.low or (value == self.low and self.closed in ("right", "neither"))):
            return False
        if self.high is not None and (value > self.high or (value == self.high and self.closed in ("left", "neither"))):
            return False
        return self.step is None or (value - self.low) % self.step == 0  # type: ignore[operator]

    def text(self) -> str:
        low = f"{'>=' if self.closed in ('both', 'left') else '>'} {self.low:g}" if self.low is not None else ""
        high = f"{'<=' if self.closed in ('both', 'right') else '<'} {self.high:g}" if self.high is not None else ""
        bounds = " and ".join(b for b in (low, high) if b)
        return bounds + (f" in steps of {self.step}" if self.step else "")

    def __repr__(self) -> str:  # constructor form: an evaluated annotation prints as parseable source
        return f"Interval({self.low!r}, {self.high!r}, closed={self.closed!r}, step={self.step!r})"


CONSTRAINTS = {"Interval": Interval}  # the vocabulary, by the name an annotation calls it

_TYPES: dict[str, type | None] = {
    "int": int, "float": float, "str": str, "bool": bool, "list": list, "List": list, "Sequence": list,
    "tuple": list, "Tuple": list, "dict": dict, "Dict": dict, "Mapping": dict, "None": None, "NoneType": None,
}  # fmt: skip
_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list",
          dict: "a JSON object", None: "null"}  # fmt: skip


@dataclass(frozen=True)
class Arm:
    """One alternative of a declaration: a type (None: null) with its intervals, or literal choices."""

    kind: type | None
    intervals: tuple[Interval, ...] = ()
    choices: tuple[Any, ...] | None = None

    def fit(self, value: Any) -> tuple[bool, Any]:
        if self.choices is not None:
            return any(value == c and type(value) is type(c) for c in self.choices), value
        if self.kind is None:
            return value is None, value
        if self.kind in (int, float):
            numeric = isinstance(value, int if self.kind is int else (int, float)) and not isinstance(value, bool)
            if not numeric or not all(i.admits(value) for i in self.intervals):
                return False, value
            return True, float(value) if self.kind is float else value
        return isinstance(value, self.kind), value

    def text(self) -> str:
        if self.choices is not None:
            return " or ".join(repr(c) for c in self.choices)
        return " ".join([_NAMES[self.kind], *(t for t in (i.text() for i in self.intervals) if t)])


@dataclass(frozen=True)
class Declared:
    """A parameter's allowed values: any of `arms`; no arms means anything (nothing declared)."""

    arms: tuple[Arm, ...] = ()

    @classmethod
    def parse(
        cls, annotation: str | None, default: Any = None, aliases: Mapping[str, ast.AST] | None = None
    ) -> Declared:
        """The declaration an annotation's source text makes (without one: the default's type);
        `aliases` are the module's top-level assignments, so `Count = Annotated[int, Interval(1, None)]`
        may be named. Raises ValueError when a constraint is not a literal call of the vocabulary."""
        if annotation is None:
            kind = type(default)
            return cls((Arm(kind),)) if default is not None and kind in _NAMES else cls()
        try:
            node = ast.parse(annotation, mode="eval").body
        except SyntaxError:
            return cls()
        arms = _arms(node, dict(aliases or {}), 0)
        return cls(()) if arms is None else cls(tuple(arms))

    def check(self, value: Any) -> tuple[bool, Any]:
        """(whether `value` is allowed, the value converted: an integer made a float where a number is declared)."""
        if not self.arms:
            return True, value
        for arm in self.arms:
            ok, converted = arm.fit(value)
            if ok:
                return True, converted
        return False, value

    def text(self) -> str:
        return " or ".join(arm.text() for arm in self.arms) or "anything"


def _arms(node: ast.AST, aliases: dict[str, ast.AST], depth: int) -> list[Arm] | None:
    """The alternatives `node` declares; None where it declares something the reader does not know."""
    if depth > 10:
        return None
    if isinstance(node, ast.Constant) and node.value is None:
        return [Arm(None)]
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and depth == 0:  # a quoted annotation
        return Declared.parse(node.value, aliases=aliases).arms or None
    if isinstance(node, ast.Name) and node.id in aliases:  # each alias once: no cycles
        return _arms(aliases[node.id], {k: v for k, v in aliases.items() if k != node.id}, depth + 1)
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = _last(node)
        return [Arm(_TYPES[name])] if name in _TYPES else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = _arms(node.left, aliases, depth + 1), _arms(node.right, aliases, depth + 1)
        return None if left is None or right is None else left + right
    if not isinstance(node, ast.Subscript):
        return None
    base = _last(node.value)
    args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    if base == "Literal":
        return [Arm(None, choices=tuple(_literal(a, "a Literal choice") for a in args))]
    if base in ("Optional", "Union"):
        parts = [_arms(a, aliases, depth + 1) for a in args] + ([[Arm(None)]] if base == "Optional" else [])
        return None if any(p is None for p in parts) else [arm for p in parts for arm in p]  # type: ignore[union-attr]
    if base == "Annotated":
        inner = _arms(args[0], aliases, depth + 1)
        intervals = tuple(c for c in (_constraint(a) for a in args[1:]) if c is not None)
        if not intervals or inner is None:
            return inner
        if any(arm.kind not in (int, float) for arm in inner):
            raise ValueError(f"Interval bounds numbers; {ast.unparse(args[0])} is not int or float")
        return [Arm(arm.kind, arm.intervals + intervals) for arm in inner]
    return [Arm(_TYPES[base])] if base in _TYPES else None


def _constraint(node: ast.AST) -> Interval | None:
    """An `Annotated` metadata item: a call of the vocabulary with literal arguments (other
    metadata, such as a string, is not ours and is left alone)."""
    if not isinstance(node, ast.Call):
        return None
    name = _last(node.func)
    if name not in CONSTRAINTS:
        raise ValueError(f"{ast.unparse(node.func)} is not a constraint bhbench knows ({', '.join(CONSTRAINTS)})")
    args = [_literal(a, f"an argument of {name}") for a in node.args]
    keywords = {k.arg: _literal(k.value, f"{name}'s {k.arg}=") for k in node.keywords if k.arg is not None}
    if len(keywords) != len(node.keywords):
        raise ValueError(f"**keywords in {name}(...) are not a literal")
    try:
        return CONSTRAINTS[name](*args, **keywords)
    except TypeError as exc:
        raise ValueError(f"{ast.unparse(node)[:60]}: {exc}") from None


def _literal(node: ast.AST, what: str) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(f"{what} is not a literal ({ast.unparse(node)[:60]})") from None


def _last(node: ast.AST) -> str:
    """`typing.Optional` -> `Optional`; `bhbench.Interval` -> `Interval`."""
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
