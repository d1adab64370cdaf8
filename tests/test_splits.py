"""Official folds in both forms, generated patient splits, image k-fold, leak detection."""

from pathlib import Path

import pandas as pd
import pytest
from conftest import FOLDS, MINI, needs_real

from bhbench.data.index import index_tree
from bhbench.errors import DataError
from bhbench.splits import (
    image_kfold,
    leaked_patients,
    official_leaks,
    official_split,
    patient_split,
    read_official,
)


@needs_real
def test_official_folds_parse_to_7909_entries_each():
    table = read_official(FOLDS)
    assert table.groupby("fold").size().to_dict() == {k: 7909 for k in range(1, 6)}
    assert set(table["group"]) == {"train", "test"}
    fold1 = table[table["fold"] == 1]["group"].value_counts()
    assert (fold1["train"], fold1["test"]) == (5005, 2904)


@needs_real
def test_official_protocol_leaks_patient_13412_in_folds_1_3_5_only():
    leaks = official_leaks(read_official(FOLDS))
    assert leaks == {1: ["14-13412"], 2: [], 3: ["14-13412"], 4: [], 5: ["14-13412"]}


@needs_real
def test_folds_csv_form_reads_the_same_protocol(tmp_path: Path):
    table = read_official(FOLDS)
    prefix = "BreaKHis_v1/histology_slides/breast/"
    csv = pd.DataFrame(
        {
            "fold": table["fold"],
            "mag": table["magnification"],
            "grp": table["group"],
            "filename": prefix + table["filename"],
        }
    )
    csv.to_csv(tmp_path / "Folds.csv", index=False)
    again = read_official(tmp_path)
    pd.testing.assert_frame_equal(again.reset_index(drop=True), table.reset_index(drop=True))


@needs_real
def test_official_split_on_mini_uses_present_images_and_lists_the_rest():
    dataset = index_tree(MINI)
    split = official_split(read_official(FOLDS), dataset.table["filename"].tolist())
    assert len(split.folds) == 5
    for fold in split.folds:
        assert len(fold.train) + len(fold.test) == 283
    assert len(split.missing) == 7909 - 283


def test_malformed_fold_line_names_file_and_line(tmp_path: Path):
    (tmp_path / "dsfold1.txt").write_text(
        "SOB_B_A-14-22549AB-100-001.png|100|1|train\nSOB_B_A-14-22549AB-100-002.png|100|1|validate\n"
    )
    with pytest.raises(DataError, match=r"dsfold1.txt, line 2: group 'validate'"):
        read_official(tmp_path)


def test_fold_line_with_wrong_magnification_is_refused(tmp_path: Path):
    (tmp_path / "dsfold1.txt").write_text("SOB_B_A-14-22549AB-100-001.png|40|1|train\n")
    with pytest.raises(DataError, match="line 1: magnification"):
        read_official(tmp_path)


@pytest.fixture(scope="module")
def tiny_table(tiny_tree):
    return index_tree(tiny_tree, "synthetic").table


def test_generated_patient_splits_are_disjoint_stratified_and_seeded(tiny_table):
    split = patient_split(tiny_table, seed=0)
    assert len(split.folds) == 5 and not split.leaky
    patients = tiny_table.groupby("patient")["subtype"].first()
    for fold in split.folds:
        assert leaked_patients(fold.train, fold.test) == []
        assert len(fold.train) + len(fold.test) == len(tiny_table)
        test_patients = set(tiny_table.set_index("filename").loc[fold.test, "patient"])
        share = len(test_patients) / len(patients)
        assert 0.25 <= share <= 0.35
        for subtype, group in patients.groupby(patients):  # every subtype on both sides
            assert 0 < len(set(group.index) & test_patients) < len(group), subtype
    assert patient_split(tiny_table, seed=0).hash == split.hash
    assert patient_split(tiny_table, seed=1).hash != split.hash
    assert len({tuple(sorted(f.test)) for f in split.folds}) == 5  # five different splits


def test_image_kfold_is_labelled_leaky(tiny_table):
    split = image_kfold(tiny_table, seed=0)
    assert split.leaky
    assert sum(len(f.test) for f in split.folds) == len(tiny_table)
    assert any(f.leaked_patients for f in split.folds)


def test_split_file_is_content_addressed(tiny_table, tmp_path: Path):
    split = patient_split(tiny_table, seed=0)
    path = split.save(tmp_path)
    assert split.hash[:16] in path.name
    assert split.save(tmp_path) == path
