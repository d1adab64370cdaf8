"""Method cards read from source without running it (DESIGN.md section 2, the trust boundary).

The harness never imports a submission or a third-party plugin: what `bhbench list`, `check`, `run`
and the others need to know before a job (names, card, tasks, parameters with their defaults and
annotations) is read here from an `ast` parse of the file. Two registration forms are understood,
both at a module's top level with literal arguments:

    @register("name", family="...", reference="...", weights_data="ImageNet-1k", dim=39)
    class Mine(Method): ...

    register("name", Mine, card=MethodCard(family="...", ...), param=default, ...)

The class's `tasks` and `transductive` attributes and its `__init__` signature (literal defaults;
annotations kept as source text and read as what each parameter allows, `bhbench.constraints`) come
from the class or its bases defined in the same file; a base from bhbench itself (or its baselines,
both trusted) is imported and read as it is. Anything the parse cannot read as data (a computed
card value, a `register` call in a loop, a base class from another package) is a CardError naming
the file and line: an AST read cannot be widened to running the code, so the card must be literal.
A sandboxed worker returning cards as data was the other option; the parse is chosen because
`bhbench list` then starts no process and stays fast.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bhbench.constraints import Declared
from bhbench.errors import UserError

EMPTY = inspect.Parameter.empty
# Class attributes whose definition matters to the harness: hooks it calls (in the worker) or whose
# presence it reports. `param_defaults` overridden means the signature does not say the parameters.
HOOKS = ("check_params", "search_space", "predict_aux", "fit_info", "param_defaults")
# Modules a base class may come from and be imported to read it: bhbench's own code.
TRUSTED_PREFIXES = ("bhbench", "bhbench_baselines")
_METHOD_BASES = {"Method", "bhbench.Method", "bhbench.method.Method"}


class CardError(UserError):
    """A card that cannot be read as data; the message starts with `file:line:`."""


@dataclass(frozen=True)
class Param:
    name: str
    default: Any  # EMPTY when the constructor gives none
    annotation: str | None  # source text, e.g. "int | None"
    declared: Declared  # the values it allows, read from the annotation (or the default's type)

    def type_text(self) -> str:
        """The types it allows, `float | None` ("any" when nothing is declared)."""
        kinds: dict[str, None] = {}  # in order, once each
        for arm in self.declared.arms:
            for kind in [type(c) for c in arm.choices] if arm.choices is not None else [arm.kind]:
                kinds["None" if kind is None or kind is type(None) else kind.__name__] = None
        return " | ".join(kinds) or "any"

    def constraint_text(self) -> str:
        """Its declared choices and intervals, `one of 'sqrt', 'log2'; > 0 and <= 1` ("" for none)."""
        parts = []
        for arm in self.declared.arms:
            if arm.choices is not None:
                parts.append("one of " + ", ".join(map(repr, arm.choices)))
            parts += [text for text in (i.text() for i in arm.intervals) if text]
        return "; ".join(parts)


@dataclass(frozen=True)
class ClassInfo:
    """What a Method subclass declares, as read from its source."""

    qualname: str
    tasks: tuple[str, ...]
    transductive: bool
    doc: str  # first line of the docstring (the class's or an in-file base's)
    params: tuple[Param, ...]
    hooks: frozenset[str]
    line: int


@dataclass(frozen=True)
class Registration:
    """One `register(...)` found in a file."""

    name: str
    keywords: dict[str, Any]  # decorator form: card fields and facts
    card: dict[str, Any] | None  # call form: `card=MethodCard(...)`'s keywords
    defaults: dict[str, Any]  # call form: parameter defaults this name adds
    cls: ClassInfo
    line: int


def _literal(node: ast.AST, file: Path, what: str, constants: dict[str, ast.AST] | None = None) -> Any:
    try:
        return _fold(node, constants or {}, 0)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError, ZeroDivisionError, OverflowError):
        raise CardError(
            f"{file}:{node.lineno}: {what} is not a literal ({ast.unparse(node)[:60]}); cards are read "
            "without running the file, so write the value itself"
        ) from None


_ARITHMETIC = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
               ast.FloorDiv: lambda a, b: a // b, ast.Div: lambda a, b: a / b}  # fmt: skip


def _fold(node: ast.AST, constants: dict[str, ast.AST], depth: int) -> Any:
    """A literal, or arithmetic on numbers, `len()` of a literal and names of module-level constants
    built so (`dim=N_FEATURES`): data the parse can compute without running anything."""
    if depth > 50:
        raise ValueError("too deep")
    try:
        return ast.literal_eval(node)
    except ValueError:
        pass
    if isinstance(node, ast.Name) and node.id in constants:
        return _fold(constants[node.id], {k: v for k, v in constants.items() if k != node.id}, depth + 1)
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        a, b = _fold(node.left, constants, depth + 1), _fold(node.right, constants, depth + 1)
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b)):
            raise ValueError("arithmetic on numbers only")  # "a" * 10**9 would be a memory bomb
        return _ARITHMETIC[type(node.op)](a, b)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_fold(node.operand, constants, depth + 1)
    if isinstance(node, ast.Call) and _dotted(node.func) == "len" and len(node.args) == 1 and not node.keywords:
        return len(_fold(node.args[0], constants, depth + 1))
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [_fold(e, constants, depth + 1) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    raise ValueError("not a literal")


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


class _Module:
    """One parsed file: its top-level classes, what its names were imported from, its registrations."""

    def __init__(self, file: Path):
        self.file = file
        try:
            self.tree = ast.parse(file.read_bytes(), filename=str(file))
        except SyntaxError as exc:
            raise CardError(f"{file}:{exc.lineno}: syntax error: {exc.msg}") from None
        except (OSError, ValueError) as exc:
            raise CardError(f"{file}:1: cannot be read: {exc}") from None
        self.classes = {n.name: n for n in self.tree.body if isinstance(n, ast.ClassDef)}
        self.imported: dict[str, str] = {}  # local name -> "module.name" or "module"
        for node in self.tree.body:
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    self.imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    self.imported[alias.asname or alias.name.partition(".")[0]] = alias.name
        # Names assigned once at the top level: a card may name such a constant (`dim=N_FEATURES`).
        assigned: dict[str, list[ast.AST]] = {}
        for node in self.tree.body:
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assigned.setdefault(target.id, []).append(node.value)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                assigned.setdefault(node.target.id, []).append(node.value)
        self.constants = {k: v[0] for k, v in assigned.items() if len(v) == 1}
        self._infos: dict[str, ClassInfo] = {}

    def qualified(self, node: ast.AST) -> str:
        """`register` -> `bhbench.register` when imported so; unknown names stay as written."""
        text = _dotted(node)
        head, dot, rest = text.partition(".")
        if head in self.imported:
            return self.imported[head] + dot + rest
        return text

    def is_register(self, node: ast.AST) -> bool:
        text = self.qualified(node)
        return text.rpartition(".")[2] == "register" and (text == "register" or text.startswith("bhbench"))

    # --- registrations ------------------------------------------------------------------------------

    def registrations(self) -> list[Registration]:
        found: list[Registration] = []
        accepted: set[int] = set()
        for node in self.tree.body:
            if isinstance(node, ast.ClassDef):
                for deco in node.decorator_list:
                    if isinstance(deco, ast.Call) and self.is_register(deco.func):
                        accepted.add(id(deco))
                        found.append(self._decorated(deco, node))
            elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and self.is_register(node.value.func):
                accepted.add(id(node.value))
                found.append(self._called(node.value))
        for node in ast.walk(self.tree):  # any other call of register only running the file could resolve
            if isinstance(node, ast.Call) and self.is_register(node.func) and id(node) not in accepted:
                raise CardError(
                    f"{self.file}:{node.lineno}: register(...) must be a decorator of a top-level class or a "
                    "top-level call with literal arguments (cards are read without running the file)"
                )
        return found

    def _name(self, call: ast.Call) -> str:
        if not call.args:
            raise CardError(f"{self.file}:{call.lineno}: register(...) needs the method's name first")
        name = _literal(call.args[0], self.file, "the registered name", self.constants)
        if not isinstance(name, str) or not name:
            raise CardError(f"{self.file}:{call.lineno}: the registered name must be a non-empty string")
        return name

    def _keywords(self, call: ast.Call, what: str) -> dict[str, Any]:
        out = {}
        for kw in call.keywords:
            if kw.arg is None:
                raise CardError(f"{self.file}:{kw.value.lineno}: **{ast.unparse(kw.value)[:40]} in {what} is not "
                                "a literal; name each keyword")  # fmt: skip
            out[kw.arg] = _literal(kw.value, self.file, f"{what} value {kw.arg}=", self.constants)
        return out

    def _decorated(self, call: ast.Call, node: ast.ClassDef) -> Registration:
        name = self._name(call)
        if len(call.args) > 1:
            raise CardError(f"{self.file}:{call.lineno}: @register takes the name and keywords only")
        keywords = {kw.arg: kw for kw in call.keywords}
        card = None
        if "card" in keywords:
            if len(keywords) > 1:
                raise CardError(f"{self.file}:{call.lineno}: @register takes card=MethodCard(...) or card keywords")
            card = self._card(keywords["card"])
            keywords_read: dict[str, Any] = {}
        else:
            keywords_read = self._keywords(call, "@register")
        return Registration(name, keywords_read, card, {}, self.info(node.name, call.lineno), call.lineno)

    def _called(self, call: ast.Call) -> Registration:
        name = self._name(call)
        if len(call.args) != 2 or not isinstance(call.args[1], ast.Name):
            raise CardError(f"{self.file}:{call.lineno}: expected register({name!r}, ClassName, card=..., **defaults)")
        card_node = next((kw.value for kw in call.keywords if kw.arg == "card"), None)
        rest = ast.Call(call.func, [], [kw for kw in call.keywords if kw.arg != "card"], lineno=call.lineno)
        defaults = self._keywords(rest, f"register({name!r})")
        card = self._card(card_node) if card_node is not None else {}
        return Registration(name, {}, card, defaults, self.info(call.args[1].id, call.lineno), call.lineno)

    def _card(self, node: ast.AST) -> dict[str, Any]:
        if not (isinstance(node, ast.Call) and self.qualified(node.func).rpartition(".")[2] == "MethodCard"):
            raise CardError(f"{self.file}:{node.lineno}: card= must be MethodCard(...) written in the call")
        if node.args:
            raise CardError(f"{self.file}:{node.lineno}: MethodCard(...) takes keywords only")
        return self._keywords(node, "MethodCard(...)")

    # --- classes ------------------------------------------------------------------------------------

    def info(self, name: str, line: int, seen: tuple[str, ...] = ()) -> ClassInfo:
        if name in self._infos:
            return self._infos[name]
        node = self.classes.get(name)
        if node is None or name in seen:
            raise CardError(
                f"{self.file}:{line}: class {name} is not defined at the top level of this file (cards are "
                "read without running the file)"
            )
        body = _ClassBody(self, node)
        inherited = [self._base(b, node, (*seen, name)) for b in node.bases]
        if not inherited:
            raise CardError(f"{self.file}:{node.lineno}: class {name} must subclass bhbench.Method")

        def first(attr: str, default: Any) -> Any:
            for info in inherited:
                if info is not None:
                    return getattr(info, attr)
            return default

        info = ClassInfo(
            qualname=name,
            tasks=body.tasks if body.tasks is not None else first("tasks", ("binary", "subtype")),
            transductive=body.transductive if body.transductive is not None else first("transductive", False),
            doc=body.doc if body.doc is not None else first("doc", ""),
            params=body.params if body.params is not None else first("params", ()),
            hooks=body.hooks.union(*(i.hooks for i in inherited if i is not None)),
            line=node.lineno,
        )
        self._infos[name] = info
        return info

    def _base(self, base: ast.AST, node: ast.ClassDef, seen: tuple[str, ...]) -> ClassInfo | None:
        """A base's declarations (None: bhbench.Method itself, which declares the defaults)."""
        text = self.qualified(base)
        if text in _METHOD_BASES:
            return None
        if isinstance(base, ast.Name) and base.id in self.classes:
            return self.info(base.id, node.lineno, seen)
        module, _, attr = text.rpartition(".")
        if module.partition(".")[0] in TRUSTED_PREFIXES:
            try:
                return from_class(getattr(importlib.import_module(module), attr))
            except (ImportError, AttributeError) as exc:
                raise CardError(f"{self.file}:{node.lineno}: base class {text}: {exc}") from None
        raise CardError(
            f"{self.file}:{node.lineno}: base class {ast.unparse(base)[:60]} of {node.name} is neither defined in "
            "this file nor bhbench's own (cards are read without running code)"
        )


class _ClassBody:
    """What one class statement itself declares (None where it declares nothing)."""

    def __init__(self, module: _Module, node: ast.ClassDef):
        file = module.file
        self.tasks: tuple[str, ...] | None = None
        self.transductive: bool | None = None
        self.params: tuple[Param, ...] | None = None
        self.hooks: set[str] = set()
        doc = ast.get_docstring(node)
        self.doc = doc.strip().splitlines()[0] if doc and doc.strip() else None
        for stmt in node.body:
            target, value = None, None
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                target, value = stmt.targets[0].id, stmt.value
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                target, value = stmt.target.id, stmt.value
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                target = stmt.name
                if stmt.name == "__init__":
                    self.params = _signature(stmt, file, module.constants)
            if target == "tasks" and value is not None:
                tasks = _literal(value, file, f"{node.name}.tasks", module.constants)
                if not (isinstance(tasks, (tuple, list)) and all(isinstance(t, str) for t in tasks)):
                    raise CardError(f"{file}:{stmt.lineno}: {node.name}.tasks must be a tuple of task names")
                self.tasks = tuple(tasks)
            elif target == "transductive" and value is not None:
                self.transductive = bool(_literal(value, file, f"{node.name}.transductive", module.constants))
            elif target in HOOKS and (value is None or not _is_none(value)):
                self.hooks.add(target)


def _is_none(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _signature(
    fn: ast.FunctionDef | ast.AsyncFunctionDef, file: Path, constants: dict[str, ast.AST]
) -> tuple[Param, ...]:
    args = fn.args
    positional = [*args.posonlyargs, *args.args][1:]  # without self
    defaults: list[ast.AST | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = [*zip(positional, defaults, strict=True), *zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    params = []
    for arg, node in pairs:
        default = EMPTY if node is None else _literal(node, file, f"the default of parameter {arg.arg}", constants)
        annotation = _annotation_source(arg.annotation)
        try:
            declared = Declared.parse(annotation, default, constants)
        except ValueError as exc:
            raise CardError(f"{file}:{arg.lineno}: parameter {arg.arg}: {exc}; cards are read without running the "
                            "file, so write the constraint with literal arguments") from None  # fmt: skip
        params.append(Param(arg.arg, default, annotation, declared))
    return tuple(params)


def _annotation_source(node: ast.AST | None) -> str | None:
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a quoted annotation: its text
        return node.value
    return ast.unparse(node)


def from_class(cls: type) -> ClassInfo:
    """The same information read from a (trusted, imported) class."""
    from bhbench.method import Method, parameters

    try:  # trusted code: its annotations may be evaluated, so aliases (`Count | None`) resolve
        signature = inspect.signature(cls, eval_str=True)
    except Exception:  # a name only a type checker sees: the annotations as written
        signature = inspect.signature(cls)
    params = tuple(
        Param(p.name, p.default, text, Declared.parse(text, p.default))
        for p in parameters(signature)
        for text in [_annotation_text(p.annotation)]
    )
    doc = inspect.getdoc(cls) or ""
    return ClassInfo(
        qualname=cls.__qualname__,
        tasks=tuple(cls.tasks),
        transductive=bool(cls.transductive),
        doc=doc.splitlines()[0] if doc else "",
        params=params,
        hooks=frozenset(h for h in HOOKS if _defines(cls, h, Method)),
        line=0,
    )


def _defines(cls: type, attr: str, base: type) -> bool:
    """Whether a class between `cls` and `base` defines `attr` (and not to None)."""
    for k in cls.__mro__:
        if k is base:
            return False
        if attr in vars(k):
            return vars(k)[attr] is not None
    return False


def _annotation_text(annotation: Any) -> str | None:
    if annotation is inspect.Parameter.empty:
        return None
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def read_file(file: Path) -> list[Registration]:
    """Every registration in a Python file, read without running it; a CardError names file and line."""
    return _Module(file).registrations()


def package_files(module: str) -> list[Path]:
    """The source files of an installed module or package, found without importing it (an entry
    point's `pkg.methods`: the top-level package's location, then folders down to the module)."""
    import importlib.util

    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)  # a top-level name: finders only, no package code runs
    if spec is None:
        raise UserError(f"module {top} is not installed")
    if spec.submodule_search_locations:
        place = Path(next(iter(spec.submodule_search_locations)))
        for part in rest:
            place = place / part
        if place.is_dir():
            return sorted(p for p in place.rglob("*.py") if "__pycache__" not in p.parts)
        if place.with_suffix(".py").is_file():
            return [place.with_suffix(".py")]
        raise UserError(f"module {module} is not found beside {top}")
    if spec.origin and spec.origin.endswith(".py") and not rest:
        return [Path(spec.origin)]
    raise UserError(f"module {module} has no Python source to read its cards from")
