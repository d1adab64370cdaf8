"""An untrusted method's `search_space` drawn in a worker (`bhbench tune`).

The harness holds only a stand-in of a submission's class (`registry.StandIn`); its search space is
the submission's code, so it runs in a helper process, in the sandbox where there is one, which
imports the submission. Each `trial.suggest_*` call it makes comes back to the harness as JSON,
is answered from the real optuna trial, and the drawn parameters return as JSON. Nothing the helper
sends is unpickled.
"""

from __future__ import annotations

import atexit
import json
import socket
import sys
from pathlib import Path
from typing import Any

from bhbench.errors import UserError

MESSAGE_CAP = 64 * 1024
TIMEOUT = 120.0  # seconds for one drawing (imports included)
_HELPERS: dict[tuple[str, str], tuple[Any, Any]] = {}  # (origin, class) -> (process, connection)


def draw(origin: str, name: str, trial: Any) -> dict[str, Any]:
    """Parameters drawn by the search space of class `name` (its qualified name) defined in file `origin`."""
    process, conn = _helper(origin, name)
    conn.send_bytes(json.dumps({"draw": name}).encode())
    while True:
        doc = _receive(conn, name)
        if "params" in doc and isinstance(doc["params"], dict):
            return doc["params"]
        call, args, kwargs = doc.get("call"), doc.get("args"), doc.get("kwargs")
        if not (isinstance(call, str) and call.startswith("suggest_") and isinstance(args, list)
                and isinstance(kwargs, dict)):  # fmt: skip
            _stop(origin, name)
            raise UserError(f"{name}.search_space: {doc.get('error') or 'the helper sent a malformed request'}")
        try:
            value = getattr(trial, call)(*args, **kwargs)
        except (AttributeError, TypeError, ValueError) as exc:
            value, error = None, f"{type(exc).__name__}: {exc}"
        else:
            error = None
        conn.send_bytes(json.dumps({"value": value, "error": error}).encode())


def _receive(conn: Any, name: str) -> dict[str, Any]:
    if not conn.poll(TIMEOUT):
        raise UserError(f"{name}.search_space did not answer within {TIMEOUT:g} s")
    try:
        doc = json.loads(conn.recv_bytes(MESSAGE_CAP))
    except (EOFError, OSError, ValueError):
        raise UserError(f"{name}.search_space: its helper process died or sent something other than JSON") from None
    if not isinstance(doc, dict):
        raise UserError(f"{name}.search_space: the helper sent a malformed reply")
    return doc


def _helper(origin: str, name: str) -> tuple[Any, Any]:
    key = (origin, name)
    found = _HELPERS.get(key)
    if found is not None and (found[0].poll() if hasattr(found[0], "poll") else None) is None:
        return found
    from multiprocessing.connection import Connection

    from bhbench import sandbox

    launcher, _ = sandbox.choose("auto")
    file = Path(origin)
    folder = file.parent if file.name in ("method.py", "__init__.py") else file
    command = [sys.executable, "-I", "-c", "from bhbench.remote import main; main()"]
    mine, theirs = socket.socketpair()
    try:
        if launcher == "bubblewrap":
            process = sandbox.launch([*command, str(theirs.fileno()), origin], [str(folder)], [],
                                     pass_fds=(theirs.fileno(),))  # fmt: skip
        else:
            import subprocess

            process = subprocess.Popen([*command, str(theirs.fileno()), origin], pass_fds=(theirs.fileno(),))
    finally:
        theirs.close()
    conn = Connection(mine.detach())
    _HELPERS[key] = (process, conn)
    if len(_HELPERS) == 1:
        atexit.register(_stop_all)
    return process, conn


def _stop(origin: str, name: str) -> None:
    found = _HELPERS.pop((origin, name), None)
    if found is not None:
        found[1].close()
        found[0].kill()


def _stop_all() -> None:
    for origin, name in list(_HELPERS):
        _stop(origin, name)


class _Proxy:
    """The trial as the search space sees it: `suggest_*` calls asked of the harness."""

    def __init__(self, conn: Any):
        self._conn = conn

    def __getattr__(self, attr: str) -> Any:
        if not attr.startswith("suggest_"):
            raise AttributeError(f"the trial offers suggest_* calls only, not {attr}")

        def ask(*args: Any, **kwargs: Any) -> Any:
            self._conn.send_bytes(json.dumps({"call": attr, "args": list(args), "kwargs": kwargs}).encode())
            doc = json.loads(self._conn.recv_bytes())
            if doc.get("error"):
                raise ValueError(doc["error"])
            return doc["value"]

        return ask


def main() -> None:
    """The helper: import the method's file (its code runs here), then draw on request."""
    from multiprocessing.connection import Connection

    from bhbench import registry

    conn, origin = Connection(int(sys.argv[1])), Path(sys.argv[2]).resolve()
    registry.discover(Path("/nonexistent"), run_code=True)  # installed plugins (a package's relative imports)

    def classes() -> dict[str, Any]:
        return {e.cls.__qualname__: e.cls for e in registry.entries() if Path(e.origin).resolve() == origin}

    try:
        if not classes():
            registry.load_submission(origin, run_code=True)
    except Exception as exc:
        conn.send_bytes(json.dumps({"error": str(exc)}).encode())
        return
    while True:
        try:
            request = json.loads(conn.recv_bytes())
        except EOFError:
            return
        try:
            params = classes()[request["draw"]].search_space(_Proxy(conn))
            conn.send_bytes(json.dumps({"params": params}).encode())
        except Exception as exc:
            conn.send_bytes(json.dumps({"error": f"raised {type(exc).__name__}: {exc}"}).encode())
