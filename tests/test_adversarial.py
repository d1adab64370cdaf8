"""Attacks a submission could try on the blind test set, each through an ordinary run (`api.run`): it must
end in a failed record or score at chance. (Filesystem walks, /proc, the parent's command line and
open file descriptors under the sandbox: tests/test_sandbox.py.)"""

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import toy_source

from bhbench import api, sandbox
from bhbench.record import RunRecord

CHANCE = 0.65  # an honest toy scores ~0.8 on the tiny set; order and joins scored 1.0 before blinding

# Ignores every pixel: calls the last (1 - benign share of training) of the test set malignant, by
# the position it was handed ("position") or after sorting the handles ("handle").
ORDER_ATTACK = '''
import numpy as np
from bhbench import Method, register


@register("order_attack", family="test", reference="bhbench adversarial tests")
class OrderAttack(Method):
    """Reads the answer from the order of the test set."""

    transductive = {transductive}

    def __init__(self, by: str = "position"):
        self.by = by

    def fit(self, train):
        self.benign_ = float(np.mean(train.y == 0))
        return self

    def predict_proba(self, test):
        n = len(test)
        rank = np.arange(n) if self.by == "position" else np.argsort(np.argsort(test.cache_keys))
        p = np.where(rank >= round(self.benign_ * n), 0.99, 0.01)
        return np.stack([1 - p, p], axis=1)
'''

# Reads every table the harness writes (records, predictions, manifests, split files, index tables
# in the cache, the committed leaderboard) and tries to join what it was handed to file names: by
# handle, and by position against each split file's sorted test list. It reports what it found in
# its fit info, which the record keeps.
JOIN_ATTACK = """
import json
import re
from pathlib import Path

import numpy as np
from bhbench import Method, register

ROOTS = {roots!r}
NAME = re.compile(r"SOB_([BM])_[A-Z]+-[0-9]+-[0-9A-Za-z]+-[0-9]+-[0-9]+\\.png")


def tables():
    by_key, test_lists, read = {{}}, [], 0
    for root in ROOTS:
        for path in Path(root).rglob("*"):
            if path.suffix not in (".csv", ".json", ".txt", ".tsv") or not path.is_file():
                continue
            text = path.read_text(errors="ignore")
            read += 1
            for line in text.splitlines():
                name = NAME.search(line)
                if name:
                    for token in re.findall(r"[0-9a-f]{{16,}}", line):
                        by_key[token] = name.group(1)
            if path.suffix == ".json" and '"folds"' in text:
                doc = json.loads(text)
                for fold in doc.get("folds", []) if isinstance(doc, dict) else []:
                    if isinstance(fold, dict) and "test" in fold:
                        test_lists.append([NAME.search(n).group(1) for n in fold["test"]])
    return by_key, test_lists, read


@register("join_attack", family="test", reference="bhbench adversarial tests")
class JoinAttack(Method):
    \"\"\"Looks its test images up in the harness's tables.\"\"\"

    transductive = True  # so that what it scores is what the join gave it

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, train):
        return self

    def predict_proba(self, test):
        by_key, test_lists, read = tables()
        keys = list(test.cache_keys or [None] * len(test))  # None while the harness times FPS
        hits = [by_key.get(k) for k in keys]
        same_length = [t for t in test_lists if len(t) == len(keys)]
        self.found_ = {{"tables": read, "pairs": len(by_key), "handle_hits": sum(h is not None for h in hits),
                        "position_lists": len(same_length)}}
        if any(hits):
            labels = hits
        elif same_length:
            labels = same_length[0]
        else:
            labels = [None] * len(keys)
        p = np.array([0.99 if c == "M" else 0.01 if c == "B" else 0.5 for c in labels])
        return np.stack([1 - p, p], axis=1)

    def fit_info(self):
        return self.found_
"""

# Honest predictions; reports every environment value, in os.environ and in the block the process
# was started with, that names the dataset, the results or a BreaKHis file, and whether the
# installation secret (which keys every handle) is there to read.
SNOOP = toy_source("snoop").replace(
    "        return e / e.sum(1, keepdims=True)\n",
    """        import os
        from pathlib import Path
        words = {words!r}
        initial = Path("/proc/self/environ").read_bytes().decode(errors="replace").split("\\0")
        values = [*os.environ.values(), *initial]
        self.found_ = sorted({{v for v in values for w in words if w in v}})
        self.secret_ = Path({secret!r}).exists()
        return e / e.sum(1, keepdims=True)
""",
) + ("\n    def fit_info(self):\n        return {{'found': self.found_, 'secret_visible': self.secret_}}\n")

needs_sandbox = pytest.mark.skipif(sandbox.unavailable() is not None, reason=f"no sandbox: {sandbox.unavailable()}")


def _records(result) -> list[RunRecord]:  # noqa: ANN001
    """A hostile run's records: a fold may fail (the record says why), but every fold has one."""
    assert len(result.records) == 5
    return result.records


def _auc(records: list[RunRecord]) -> float:
    return float(np.mean([r.metrics.overall.auc for r in records]))


def test_order_attack_fails_the_contract_check(run_toy):
    for record in _records(run_toy("order_attack", source=ORDER_ATTACK.format(transductive=False))):
        # Position-based answers disagree when a sample comes back in another order and subset; a
        # fold whose small sample happened to agree is scored, and at chance.
        assert record.status == "failed" or record.metrics.overall.auc < CHANCE
        if record.status == "failed":
            assert "depend on the other test images" in record.error


@pytest.mark.parametrize("by", ["position", "handle"])
def test_order_attack_that_skips_the_check_scores_at_chance(run_toy, by):
    records = _records(run_toy("order_attack", source=ORDER_ATTACK.format(transductive=True), params={"by": by}))
    assert all(r.status == "ok" and r.method.transductive for r in records)
    assert _auc(records) < CHANCE


def test_join_table_attack_matches_no_handle(run_toy, tiny_tree, tmp_path):
    out = tmp_path / "results"
    run_toy()  # records, predictions, manifest and split file to read
    repository = Path(__file__).resolve().parents[1] / "leaderboard"
    roots = [str(out), os.environ["BHBENCH_CACHE"], str(tiny_tree), str(repository)]

    # Without the sandbox, so that every table is there to read.
    records = _records(run_toy("join_attack", source=JOIN_ATTACK.format(roots=roots), sandbox="off"))
    for record in records:
        found = record.method.fit_info
        assert found["pairs"] >= 328 and found["position_lists"] >= 1  # it did read the manifest and splits
        assert found["handle_hits"] == 0
    assert _auc(records) < CHANCE


@needs_sandbox
def test_sandboxed_method_finds_no_path_to_data_results_or_secret(run_toy, tiny_tree, tmp_path, monkeypatch):
    out = tmp_path / "results"
    cache = os.environ["BHBENCH_CACHE"]
    monkeypatch.setenv("BHBENCH_DATA", str(tiny_tree))  # a user's setting the method must not inherit
    words = [str(tiny_tree), str(out), "SOB_", "BreaKHis"]
    source = SNOOP.format(words=words, secret=str(Path(cache) / "secret"))
    records = _records(run_toy("snoop", source=source, sandbox="on"))
    assert Path(cache, "secret").exists()  # the harness made it: handles are keyed by it
    for record in records:
        assert record.status == "ok"
        assert record.method.fit_info == {"found": [], "secret_visible": False}


# Issue 23, attack 1: top-level code that finds the dataset the harness is about to use (`--data` in
# sys.argv, BHBENCH_DATA, the synthetic cache), hashes every image's pixels with the label in its
# file name, and answers from that table; and patches the harness in memory. Wherever the file is
# imported it notes its process id in a marker file.
MODULE_ATTACK = """
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

import bhbench
from bhbench import Method, register


def _note():
    try:
        with open({marker!r}, "a") as fh:
            fh.write(json.dumps({{"pid": os.getpid()}}) + "\\n")
    except OSError:
        pass


_note()
bhbench.PATCHED_BY_SUBMISSION = True  # had this run in the harness, the harness would now carry it


def _roots():
    argv = sys.argv
    found = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--data"]
    found += [os.environ.get("BHBENCH_DATA", ""), os.environ.get("BHBENCH_CACHE", "")]
    found += [str(Path.home() / ".cache" / "bhbench")]
    return [Path(r) for r in found if r and Path(r).is_dir()]


TABLE = {{}}
for _root in _roots():
    from bhbench.data.images import decode

    for _png in _root.rglob("SOB_*.png"):
        try:
            TABLE[hashlib.sha256(decode(_png.read_bytes()).tobytes()).hexdigest()] = float("_M_" in _png.name)
        except Exception:
            pass


@register("table_builder", family="test", reference="bhbench adversarial tests")
class TableBuilder(Method):
    \"\"\"Answers from a table of pixel hashes built when its module was imported.\"\"\"

    tasks = ("binary",)

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, train):
        return self

    def predict_proba(self, test):
        p = np.array([TABLE.get(hashlib.sha256(test.image(i).tobytes()).hexdigest(), 0.5) for i in range(len(test))])
        return np.stack([1 - p, p], axis=1)

    def fit_info(self):
        return {{"table": len(TABLE)}}
"""


def _harness_clean(marker: Path) -> None:
    import bhbench

    assert not hasattr(bhbench, "PATCHED_BY_SUBMISSION")  # the harness was never patched
    pids = [line for line in marker.read_text().splitlines()] if marker.exists() else []
    assert not any(f'"pid": {os.getpid()}' in p for p in pids), pids  # nor did the module run in it


def test_module_level_code_never_runs_in_the_harness(run_toy, submissions, tiny_tree, tmp_path, monkeypatch):
    """list, check, run and leaderboard read the submission's card without executing it; with
    `--sandbox off` its module runs only in the worker process, never in the harness."""
    marker = tmp_path / "marker"
    monkeypatch.setenv("BHBENCH_DATA", str(tiny_tree))
    (submissions / "attack.py").write_text(MODULE_ATTACK.format(marker=str(marker)))
    assert "table_builder" in [e.name for e in api.methods(submissions=submissions)]
    assert not marker.exists()
    assert api.check(["table_builder"], sandbox="off", submissions=submissions).ok
    assert marker.exists()  # imported, by the check worker
    _harness_clean(marker)
    out = tmp_path / "results"
    # The control: outside the sandbox the worker does find the data, and the table wins outright.
    records = _records(run_toy("table_builder", sandbox="off"))
    assert all(r.method.fit_info["table"] >= 328 for r in records) and _auc(records) > 0.99
    assert api.leaderboard(out, tmp_path / "board").ok
    api.leaderboard(out, tmp_path / "board", check=True)
    _harness_clean(marker)


@needs_sandbox
def test_module_level_table_builder_finds_nothing_under_the_sandbox(
    run_toy, submissions, tiny_tree, tmp_path, monkeypatch
):
    """`bhbench run --sandbox on` (and `check --sandbox on`): the module runs only in the sandboxed
    worker, which sees no dataset, no cache and no marker folder: its table is empty, it scores at
    chance, and no process outside the sandbox ever ran it."""
    marker = tmp_path / "marker"
    monkeypatch.setenv("BHBENCH_DATA", str(tiny_tree))
    (submissions / "attack.py").write_text(MODULE_ATTACK.format(marker=str(marker)))
    assert "table_builder" in [e.name for e in api.methods(submissions=submissions)]
    assert api.check(["table_builder"], sandbox="on", submissions=submissions).ok
    records = _records(run_toy("table_builder", sandbox="on"))
    assert all(r.status == "ok" and r.method.fit_info == {"table": 0} for r in records)
    assert _auc(records) < CHANCE  # every probability 0.5
    assert api.leaderboard(tmp_path / "results", tmp_path / "board").ok
    assert not marker.exists()  # it never ran outside the sandbox, harness included
    _harness_clean(marker)
