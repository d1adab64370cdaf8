"""The code that made a record: a method's source files, found by reading imports (never running
them), hashed with the harness version."""

from __future__ import annotations

import ast
import hashlib
import os
from importlib import metadata
from pathlib import Path
from typing import Any


def code_files(module_file: str | Path) -> list[Path]:
    """The source files that define a method: the .py files of its package folder (a built-in
    family, a folder submission with method.py), or the one file of a single-file submission; then,
    for a package, the modules of its top-level package that those files import, transitively (the
    probe fits the hand-crafted classifiers: editing them must change the probe's fingerprint).
    Imports are read with ast, never executed. Those of `__init__.py` files are not followed: there
    they register methods (`bhbench_baselines/__init__.py` imports every family)."""
    path = Path(module_file).resolve()
    folder = path.parent
    if path.name in ("__init__.py", "method.py") or (folder / "__init__.py").is_file():
        own = sorted(folder.glob("*.py"))
    else:
        own = [path]
    top = folder
    while (top.parent / "__init__.py").is_file():
        top = top.parent
    if not (top / "__init__.py").is_file():  # not inside a package: nothing to resolve imports against
        return own
    found, todo = set(own), [f for f in own if f.name != "__init__.py"]
    while todo:
        for module in _imported_modules(todo.pop(), top.parent):
            if module not in found:
                found.add(module)
                if module.name != "__init__.py":
                    todo.append(module)
    return own + sorted(found - set(own))


def _imported_modules(file: Path, root: Path) -> set[Path]:
    """Source files under `root` (the folder holding `file`'s top-level package) that `file` imports,
    at module level or inside functions: `import a.b`, `from a.b import c` (module c, else a.b's own
    file) and relative imports."""
    package = file.parent.relative_to(root).parts
    found: set[Path] = set()

    def add(parts: tuple[str, ...] | list[str]) -> bool:
        if not parts or parts[0] != package[0]:  # another distribution: its version is recorded instead
            return False
        for candidate in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
            if candidate.is_file():
                found.add(candidate)
                return True
        return False

    for node in ast.walk(ast.parse(file.read_bytes(), str(file))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name.split("."))
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1] if node.level else ())
            base += node.module.split(".") if node.module else []
            submodules = [add([*base, alias.name]) for alias in node.names]
            if not all(submodules):  # some names are defined in the module `base` itself
                add(base)
    return found


def code_fingerprint(files: list[Path]) -> dict[str, Any]:
    """Hash of a method's source files and the harness version: a record names the code that made it.
    Files are named relative to the first one's folder (the method's own: `classifiers.py`; another
    family's: `../handcrafted/classifiers.py`)."""
    harness = metadata.version("bhbench")
    digest = hashlib.sha256(f"bhbench {harness}\n".encode())
    names = [Path(os.path.relpath(f, files[0].parent)).as_posix() for f in files]
    for name, f in zip(names, files, strict=True):
        # Line endings normalised: a Windows checkout of the same commit has the same code.
        digest.update(f"{name}\n".encode() + f.read_bytes().replace(b"\r\n", b"\n") + b"\0")
    return {"hash": digest.hexdigest()[:10], "files": names, "harness": harness}
