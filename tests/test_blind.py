"""Blind test sets: handles, secret order and the contract check that `bhbench run` applies."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import train_set
from conftest import toy_source

from bhbench import results
from bhbench.blind import Area, partition_id
from bhbench.data.images import ImageStore

# A method that predicts like the toy and reports, through its fit info (which lands in the
# record in every sandbox mode), the handles it was given for training and for the test set.
SPY = toy_source("spy").replace(
    "        return e / e.sum(1, keepdims=True)\n",
    "        self.seen_ = list(test.cache_keys)\n        return e / e.sum(1, keepdims=True)\n",
).replace(
    "        x = self._features(train)\n",
    "        self.train_ = list(train.cache_keys)\n        x = self._features(train)\n",
) + ("\n    def fit_info(self):\n        return {'train': self.train_, 'test': self.seen_}\n")


def test_handles_are_keyed_by_secret_and_partition():
    one, other = partition_id(["a", "b"], ["c"]), partition_id(["a"], ["b", "c"])
    area = Area(one, secret=b"s" * 32)
    key = "0123456789abcdef" * 2
    assert area.handle(key) == Area(one, secret=b"s" * 32).handle(key)  # stable: caches hit on reruns
    assert area.handle(key) != key
    assert area.handle(key) != Area(other, secret=b"s" * 32).handle(key)  # another fold: another handle
    assert area.handle(key) != Area(one, secret=b"t" * 32).handle(key)  # unguessable without the secret
    assert Area(one, secret=b"s" * 32).root != Area(other, secret=b"s" * 32).root


def test_staged_pixels_are_links_named_by_handle(tmp_path: Path):
    store = ImageStore(tmp_path / "images")
    key = "ab" * 16
    store.path(key).parent.mkdir(parents=True)
    np.save(store.path(key), np.zeros((4, 4, 3), np.uint8))
    area = Area(partition_id(["x"], ["y"]), secret=b"k" * 32)
    (handle,) = area.stage([key], store)
    staged = area.store.path(handle)
    assert staged.stat().st_ino == store.path(key).stat().st_ino  # no copy of the pixels
    assert area.store.load(handle, (2, 2)).shape == (2, 2, 3)
    assert area.store.path(handle, (2, 2)).is_relative_to(area.cache)  # resized copies stay out of pixels/
    # The harness remakes that copy in its own store, and the next fold's area links it read-only.
    (area.store.path(handle, (2, 2))).write_bytes(b"a method's file is never copied")
    assert area.harvest(store) == 1 and store.shared_path(key, (2, 2), False).exists()
    assert np.load(store.shared_path(key, (2, 2), False)).shape == (2, 2, 3)
    other = Area(partition_id(["y"], ["x"]), secret=b"k" * 32)
    (moved,) = other.stage([key], store)
    linked = other.store.shared_path(moved, (2, 2), False)
    assert linked.stat().st_ino == store.shared_path(key, (2, 2), False).stat().st_ino
    assert other.store.load(moved, (2, 2)).shape == (2, 2, 3) and not other.store.path(moved, (2, 2)).exists()


def test_as_test_shuffles_and_restore_puts_rows_back():
    images = [np.full((2, 2, 3), i, np.uint8) for i in range(40)]
    train = train_set(np.zeros(40, int), images, patients=["p"] * 40)
    wanted = np.arange(5, 35)
    test = train.as_test(wanted)
    seen = np.array([test.image(i)[0, 0, 0] for i in range(len(test))])
    assert sorted(seen) == list(wanted) and list(seen) != list(wanted)
    assert list(test.restore(seen)) == list(wanted)


def test_each_fold_gets_a_fresh_order_of_handles_that_join_nothing(run_toy, tmp_path):
    out = tmp_path / "results"
    first = run_toy("spy", source=SPY).records
    again = run_toy("spy", force=True).records
    manifest = pd.read_csv(next(out.rglob("manifest.csv")))
    content_keys = set(manifest["key"])
    for a, b in zip(first, again, strict=True):
        assert a.status == b.status == "ok"
        seen_a, seen_b = a.method.fit_info["test"], b.method.fit_info["test"]
        assert set(seen_a) == set(seen_b)  # stable handles: derived-data caches hit across runs
        assert seen_a != seen_b  # a fresh order every run
        assert not content_keys & set(seen_a) and not content_keys & set(a.method.fit_info["train"])
        assert a.contract.checked >= 2 and a.contract.max_diff <= a.contract.tolerance
        assert a.method.transductive is False
        # Same images, same predictions: the order the method saw is undone before writing.
        pa = results.load_predictions(next(out.rglob(f"fold{a.split.fold}.json")), a)
        assert list(pa["filename"]) == sorted(pa["filename"])
    # One image, two folds: a handle it had as a training image is never its handle as a test image.
    train_1 = set(first[0].method.fit_info["train"])
    assert all(not train_1 & set(r.method.fit_info["test"]) for r in first[1:])


def test_order_induced_noise_only(run_toy):
    """An honest method's stored predictions do not change with the order it was handed."""
    before = _predictions(run_toy())
    after = _predictions(run_toy(force=True))
    for a, b in zip(before, after, strict=True):
        assert list(a["filename"]) == list(b["filename"])
        np.testing.assert_allclose(a["p_malignant"], b["p_malignant"], atol=1e-9)


def _predictions(result) -> list[pd.DataFrame]:  # noqa: ANN001
    return [results.load_predictions(j.job.where.record, j.record) for j in result.jobs]


BATCH_DEPENDENT = "e = e + 1e-3 * len(e)"  # smoothing that grows with the batch


@pytest.mark.parametrize("transductive", [False, True])
def test_contract_fails_a_batch_dependent_method_unless_declared(run_toy, transductive):
    source = toy_source("batchy", body=BATCH_DEPENDENT)
    if transductive:
        source = source.replace(
            '    """Nearest class mean of the mean colour."""\n', '    """..."""\n\n    transductive = True\n'
        )
    result = run_toy("batchy", source=source)
    records = result.records
    assert result.ok == transductive
    if transductive:
        assert all(r.status == "ok" and r.method.transductive and r.contract is None for r in records)
    else:
        assert all(r.status == "failed" for r in records)
        assert "depend on the other test images" in records[0].error
        assert "transductive = True" in records[0].error
        assert json.dumps(records[0].to_json()).count("metrics") == 1 and records[0].metrics is None
