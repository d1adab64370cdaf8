"""The cross-stain split, its size-matched random twin, and the stain-shift penalty."""

from __future__ import annotations

import numpy as np
import pytest

from bhbench import leaderboard
from bhbench.data import synthetic
from bhbench.data.images import decode
from bhbench.data.index import index_tree
from bhbench.errors import DataError, UserError
from bhbench.leaderboard.robustness import penalties
from bhbench.protocol import Protocol
from bhbench.splits import (
    cross_stain_split,
    image_stain,
    leaked_patients,
    patient_of,
    patient_stains,
    stain_groups,
    stain_random_split,
)


@pytest.fixture(scope="module")
def tiny(tiny_tree):
    dataset = index_tree(tiny_tree, "synthetic")
    paths = dict(zip(dataset.table["key"], dataset.table["relpath"], strict=True))
    return dataset.table, lambda key: decode(dataset.path(paths[key]))


@pytest.fixture(scope="module")
def groups(tiny) -> tuple[list[str], list[str]]:
    table, load = tiny
    return stain_groups(patient_stains(table, load, seed=0), seed=0)


def _patients(names: list[str]) -> set[str]:
    return {patient_of(n) for n in names}


def _spread(vectors: dict[str, np.ndarray], a: list[str]) -> float:
    """Distance between the mean true stain of `a` and of everyone else, in standard deviations."""
    x = np.array(list(vectors.values()))
    z = (x - x.mean(0)) / x.std(0)
    inside = np.isin(list(vectors), a)
    return float(np.linalg.norm(z[inside].mean(0) - z[~inside].mean(0)))


def test_stain_groups_are_seeded_and_follow_the_generators_stain_vectors(tiny, groups):
    table, load = tiny
    a, b = groups
    assert stain_groups(patient_stains(table, load, seed=0), seed=0) == groups
    assert sorted(a + b) == sorted(table["patient"].unique()) and not set(a) & set(b)
    truth = {p.name: np.r_[p.haematoxylin, p.eosin] for p in synthetic._cohort(synthetic.TINY)}
    rng = np.random.default_rng(0)
    chance = [_spread(truth, list(rng.choice(list(truth), len(a), replace=False))) for _ in range(200)]
    assert _spread(truth, a) > np.percentile(chance, 99)  # the groups differ in the stain patients were given


def test_grouping_reads_pixels_only(tiny, groups, tmp_path):
    table, load = tiny
    by_patient = table.groupby("patient")[["tumor_class", "subtype"]].first()
    shuffled = by_patient.sample(frac=1, random_state=1).set_axis(by_patient.index)
    relabelled = table.drop(columns=["tumor_class", "subtype"]).join(shuffled, on="patient")
    assert not (relabelled["subtype"].to_numpy() == table["subtype"].to_numpy()).all()
    fresh = patient_stains(relabelled, load, seed=0, cache=tmp_path)  # estimated again, not read from the cache
    assert stain_groups(fresh, seed=0) == groups


def test_cross_stain_trains_on_one_group_and_tests_on_the_other_both_ways(tiny, groups):
    table, load = tiny
    split = cross_stain_split(table, Protocol(split="cross-stain"), load)
    first, second = split.folds
    assert (_patients(first.train), _patients(first.test)) == (set(groups[0]), set(groups[1]))
    assert sorted(first.train) == sorted(second.test) and sorted(first.test) == sorted(second.train)
    assert not leaked_patients(first.train, first.test) and not split.leaky
    assert split.hash == cross_stain_split(table, Protocol(split="cross-stain"), load).hash


def test_stain_random_has_the_cross_stain_sizes_and_both_classes_on_each_side(tiny, groups):
    table, load = tiny
    protocol = Protocol(split="stain-random")
    split = stain_random_split(table, protocol, load)
    assert [len(_patients(f.train)) for f in split.folds] == [len(g) for g in groups]
    classes = table.groupby("patient")["tumor_class"].first()
    for fold in split.folds:
        assert not leaked_patients(fold.train, fold.test)
        assert len(_patients(fold.train)) + len(_patients(fold.test)) == len(classes)
        for side in (fold.train, fold.test):
            assert set(classes[sorted(_patients(side))]) == {"B", "M"}
    assert _patients(split.folds[0].train) != set(groups[0])  # random, not the stain groups
    assert split.hash == stain_random_split(table, protocol, load).hash
    assert split.hash != stain_random_split(table, Protocol(split="stain-random", seed=1), load).hash


def test_a_stain_group_without_a_class_is_a_clear_error(tiny, monkeypatch):
    table, load = tiny
    classes = table.groupby("patient")["tumor_class"].first()
    benign, malignant = sorted(classes.index[classes == "B"]), sorted(classes.index[classes == "M"])
    monkeypatch.setattr("bhbench.splits.stain_groups", lambda *_: (benign + malignant[:5], malignant[5:]))
    n = len(malignant) - 5
    with pytest.raises(UserError, match=rf"group B \({n} patients\) holds malignant; each group needs every class"):
        cross_stain_split(table, Protocol(split="cross-stain"), load)


def test_runs_on_both_splits_give_a_stain_shift_penalty_inside_its_interval(run_toy, tmp_path):
    for split in ("cross-stain", "stain-random"):
        result = run_toy(split=split)
        assert result.ok and sorted(r.split.fold for r in result.records) == [1, 2]
        assert {r.split.kind for r in result.records} == {split}
    read = leaderboard.read([tmp_path / "results"])
    assert all(c.accepted for c in read.checked)
    cross, random = sorted(read.sections, key=lambda s: s.protocol.split)
    (penalty,) = penalties(random, cross)
    assert penalty.label == "toy" and np.isfinite([penalty.gap, penalty.low, penalty.high]).all()
    assert penalty.gap == pytest.approx(penalty.random - penalty.cross_stain)
    assert penalty.low <= penalty.gap <= penalty.high and penalty.low < penalty.high
    with pytest.raises(UserError, match="compares a stain-random and a cross-stain section"):
        penalties(cross, random)


def test_a_patient_whose_images_hold_no_stain_is_named(tiny, tmp_path):
    table, load = tiny
    blank = np.full((84, 128, 3), 250, np.uint8)  # background only: nothing to estimate stain from
    assert image_stain(blank) is None and image_stain(load(table["key"].iloc[0])) is not None
    patient = table["patient"].iloc[0]
    keys = set(table.loc[table["patient"] == patient, "key"])
    with pytest.raises(DataError, match=f"patient {patient}: none of 4 sampled images yields stain vectors"):
        patient_stains(table, lambda key: blank if key in keys else load(key), cache=tmp_path)
