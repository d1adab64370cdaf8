"""File-name parsing: strict, round-trips, and agrees with the folder layout."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bhbench.data.names import SUBTYPE_FOLDERS, ImageName, folder_disagreements, parse_name

BENIGN = ["A", "F", "PT", "TA"]


def test_parses_the_documented_example():
    name = parse_name("SOB_B_A-14-22549AB-40-001.png")
    assert name == ImageName("B", "A", "14-22549AB", 40, 1)


@pytest.mark.parametrize(
    "bad",
    [
        "SOB_B_A-14-22549AB-40-001.PNG",  # extension
        "SOB_B_A-14-22549AB-50-001.png",  # magnification
        "SOB_B_XX-14-22549AB-40-001.png",  # subtype
        "SOB_M_A-14-22549AB-40-001.png",  # benign subtype under malignant
        "SOB_B_A-22549AB-40-001.png",  # no year
        "SOB_B_A-14-22549AB-40-1.png",  # sequence not 3 digits
        "notes.png",
    ],
)
def test_rejects_malformed_names_with_the_name_in_the_message(bad):
    with pytest.raises(ValueError, match="SOB|notes"):
        parse_name(bad)


names = st.builds(
    lambda sub, year, pid, suffix, mag, seq: ImageName(
        "B" if sub in BENIGN else "M", sub, f"{year:02d}-{pid}{suffix}", mag, seq
    ),
    st.sampled_from(list(SUBTYPE_FOLDERS)),
    st.integers(0, 99),
    st.integers(1, 99999),
    st.sampled_from(["", "A", "AB", "CD", "DE", "F"]),
    st.sampled_from([40, 100, 200, 400]),
    st.integers(1, 999),
)


@given(names)
def test_filename_round_trips(name):
    assert parse_name(name.filename()) == name


@given(names)
def test_official_relpath_agrees_with_its_name(name):
    parts = tuple(("histology_slides/" + name.relpath()).split("/"))
    assert folder_disagreements(parts, name) == []


@given(st.text(min_size=1, max_size=40))
def test_arbitrary_text_is_rejected_or_round_trips(text):
    try:
        name = parse_name(text)
    except ValueError:
        return
    assert name.filename() == text


def test_folder_disagreements_name_each_field():
    name = parse_name("SOB_M_DC-14-13412-100-005.png")
    parts = ("breast", "benign", "SOB", "lobular_carcinoma", "SOB_M_DC_14-99999", "40X", name.filename())
    problems = " ".join(folder_disagreements(parts, name))
    for word in ("class folder", "subtype folder", "patient folder", "magnification folder"):
        assert word in problems


def test_the_naming_vocabulary_is_the_protocols():
    """File names and folders spell the classes the protocol scores, in the protocol's order."""
    from bhbench.data.names import BENIGN_SUBTYPES, CLASS_FOLDERS
    from bhbench.protocol import MAGNIFICATIONS, TASK_CLASSES

    assert tuple(SUBTYPE_FOLDERS) == TASK_CLASSES["subtype"]
    assert tuple(CLASS_FOLDERS.values()) == TASK_CLASSES["binary"]
    assert TASK_CLASSES["subtype"][: len(BENIGN_SUBTYPES)] == BENIGN_SUBTYPES  # benign first, as label 0 is
    for mag in MAGNIFICATIONS:
        assert parse_name(f"SOB_M_DC-14-13412-{mag}-005.png").magnification == mag
    with pytest.raises(ValueError):
        parse_name("SOB_M_DC-14-13412-50-005.png")
