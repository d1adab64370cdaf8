"""The plugin contract: what a method can and cannot see, params, cloning."""

import pickle

import numpy as np
import pytest
from builders import train_set

from bhbench import Method, NotFittedError, TestSet, check_is_fitted

FORBIDDEN = (
    "y",
    "label",
    "labels",
    "malignant",
    "subtype",
    "magnification",
    "patient",
    "patients",
    "filename",
    "path",
)


def _images(n=4):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (20, 30, 3), dtype=np.uint8) for _ in range(n)]


def _reachable_strings(obj, depth=0, seen=None):
    """Every string and array reachable through attributes, dicts and sequences of `obj`."""
    seen = seen if seen is not None else set()
    if id(obj) in seen or depth > 6:
        return
    seen.add(id(obj))
    if isinstance(obj, (str, np.ndarray)):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _reachable_strings(k, depth + 1, seen)
            yield from _reachable_strings(v, depth + 1, seen)
    elif isinstance(obj, (list, tuple, set)):
        for v in obj:
            yield from _reachable_strings(v, depth + 1, seen)
    elif hasattr(obj, "__dict__"):
        yield from _reachable_strings(vars(obj), depth + 1, seen)


def test_stored_test_set_exposes_no_labels_patients_or_magnifications(tiny_tree):
    from bhbench.data.images import ImageStore
    from bhbench.data.index import index_tree, stage

    dataset = index_tree(tiny_tree, "synthetic")
    dataset.table = dataset.table.head(5)
    store = ImageStore()
    stage(dataset, store)
    test = TestSet.build("binary", keys=list(dataset.table["key"]), store=str(store.root))
    public = {a for a in dir(test) if not a.startswith("__")}
    assert not public & set(FORBIDDEN)
    # nothing reachable from the object spells a file name, patient token or label
    needles = set(dataset.table["filename"]) | set(dataset.table["patient"]) | set(dataset.table["relpath"])
    for value in _reachable_strings(test):
        if isinstance(value, str):
            assert not any(n in value for n in needles), value
    assert test.image(0).shape[2] == 3
    clone = pickle.loads(pickle.dumps(test))  # workers may fan out over processes
    assert np.array_equal(clone.image(1), test.image(1))


def test_train_set_carries_labels_and_subsets_keep_them_aligned():
    imgs = _images()
    train = train_set([0, 1, 0, 1], imgs, patients=["p1", "p2", "p3", "p4"], magnification=[40, 100, 200, 400])
    sub = train.subset([3, 1])
    assert list(sub.patient) == ["p4", "p2"] and list(sub.y) == [1, 1]
    assert np.array_equal(sub.image(0), imgs[3])
    held_out = train.as_test([0])
    assert isinstance(held_out, TestSet) and not hasattr(held_out, "y")
    assert train.batch([0, 2], (8, 8)).shape == (2, 8, 8, 3)


class Params(Method):
    def __init__(self, alpha: float = 1.0, layers: tuple = (1, 2)):
        self.alpha = alpha
        self.layers = layers


def test_params_clone_and_set():
    m = Params(alpha=3.0)
    assert m.get_params() == {"alpha": 3.0, "layers": (1, 2)}
    c = m.clone()
    assert c is not m and c.get_params() == m.get_params()
    m.set_params(alpha=5.0)
    assert c.alpha == 3.0
    with pytest.raises(ValueError, match="no parameter 'beta'"):
        m.set_params(beta=1)


class Learner(Method):
    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, train):
        self.mean_ = 0.5
        return self


def test_the_fitted_state_guard_reads_trailing_underscore_attributes():
    method = Learner()
    with pytest.raises(NotFittedError, match="^Learner is not fitted: call fit before predicting$"):
        check_is_fitted(method)
    check_is_fitted(method.fit(None))  # learned state: passes
    with pytest.raises(NotFittedError):
        check_is_fitted(method.clone())  # a clone is unfitted


def test_the_check_battery_refuses_a_default_outside_its_declaration(clean_registry):
    from typing import Annotated

    from bhbench import Interval, checks

    class Bad(Method):
        def __init__(self, k: Annotated[int, Interval(1, None)] = 0):  # evaluated, read back as text
            self.k = k

    clean_registry.register("bad_default", Bad)
    with pytest.raises(checks.CheckFailed, match=r"^default\(s\) outside .*: k=0 \(expected an integer >= 1\)$"):
        checks.CHECKS["params"](checks.Battery(clean_registry.get("bad_default")))
