"""Section tables remembered between reading commands. A section's leaderboard lines
(`aggregate.frame`: a 20,000-draw bootstrap and Holm ranks) cost seconds, and a report or an export
needs every section holding its row, all rows, to rank it. They are kept in the cache, keyed by the
bytes of the section's record and audit files and the code and numpy that computed them, so a table
is reused only for exactly what produced it. `bhbench leaderboard` never reuses one: it verifies
every record against its predictions and recomputes, and remembers what it computed. A reading
command that reuses a table trusts that the predictions a record names still match its hash, as they
did when the table was computed; `bhbench leaderboard --check` is what verifies them."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bhbench.config import cache_dir
from bhbench.util import atomic_write

FORMAT = 1


@functools.cache
def _code() -> str:
    """The bhbench sources and the numpy release: what a table's numbers depend on besides the records."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256(f"{FORMAT} numpy {np.__version__}".encode())
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def digest(folders: Sequence[Path], dataset: str, protocol: str) -> tuple[str, dict[Path, int]]:
    """What a section's table is a function of, from the files alone (nothing parsed): the bytes of
    its record and audit files, a file of a later folder at the same place as an earlier one's left
    out as `read` leaves it, and the code. Also the record files found in each folder."""
    h = hashlib.sha256(_code().encode())
    seen: set[str] = set()
    counts: dict[Path, int] = {}
    for folder in folders:
        section = folder / dataset / protocol
        files = sorted(section.glob("*/*/fold*.json")) + sorted(section.glob("*/*/audit.json"))
        fresh = [f for f in files if f.relative_to(folder).as_posix() not in seen]
        counts[folder] = sum(f.name != "audit.json" for f in fresh)
        for f in fresh:
            seen.add(f.relative_to(folder).as_posix())
            h.update(f.relative_to(folder).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest(), counts


def _path(key: str) -> Path:
    return cache_dir("tables") / f"{key}.json"


def keep(key: str, table: pd.DataFrame) -> None:
    """Remember `table` under `key` (JSON: floats round-trip exactly, nothing is unpickled)."""
    doc = {
        "columns": list(table.columns),
        "dtypes": {c: str(t) for c, t in table.dtypes.items()},
        "rows": table.astype(object).where(table.notna(), None).to_numpy().tolist(),
    }
    atomic_write(_path(key), json.dumps(doc, default=_plain))


def recall(key: str) -> pd.DataFrame | None:
    """The table kept under `key`, or None."""
    try:
        doc = json.loads(_path(key).read_text())
        return pd.DataFrame(doc["rows"], columns=doc["columns"]).astype(doc["dtypes"])
    except (OSError, ValueError, KeyError, TypeError):  # not kept, or not readable: computed again
        return None


def _plain(value: object) -> object:
    """numpy scalars as the Python numbers JSON knows."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")
