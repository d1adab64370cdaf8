"""What the complete BreaKHis_v1 is (Spanhol et al., IEEE TBME 63(7), 2016), and how a tree differs.

Images per subtype and magnification and patients per subtype are counted from the authors' fold
files (dsfold1..5.txt each list all 7,909 images once). They agree with the per-class,
per-magnification table on the authors' dataset page
(web.inf.ufpr.br/vri/databases-software/breast-cancer-histopathological-database-breakhis), except
that the page gives 652 benign images at 40X where its own row total (1,995) and column total
(2,480) need 625. tests/test_download.py checks both agreements.
"""

from __future__ import annotations

import pandas as pd

from bhbench.data.names import BENIGN_SUBTYPES, CLASS_FOLDERS
from bhbench.protocol import MAGNIFICATIONS

# subtype -> images at 40X, 100X, 200X, 400X
IMAGES: dict[str, tuple[int, int, int, int]] = {
    "A": (114, 113, 111, 106),
    "F": (253, 260, 264, 237),
    "PT": (109, 121, 108, 115),
    "TA": (149, 150, 140, 130),
    "DC": (864, 903, 896, 788),
    "LC": (156, 170, 163, 137),
    "MC": (205, 222, 196, 169),
    "PC": (145, 142, 135, 138),
}
# Patients per subtype: 24 benign + 58 malignant = 82. Token 14-13412 appears under both DC and LC,
# so there are 81 distinct patient tokens.
PATIENTS: dict[str, int] = {"A": 4, "F": 10, "PT": 3, "TA": 7, "DC": 38, "LC": 5, "MC": 9, "PC": 6}
PATIENT_TOKENS = 81


def expected() -> dict[str, int]:
    """Every count `differences` compares, keyed by the label it prints."""
    counts = {"images": sum(map(sum, IMAGES.values()))}
    counts["patients"] = sum(PATIENTS.values())
    counts["patient tokens"] = PATIENT_TOKENS
    for cls, name in CLASS_FOLDERS.items():
        counts[f"{name} images"] = sum(sum(n) for s, n in IMAGES.items() if (s in BENIGN_SUBTYPES) == (cls == "B"))
    for subtype, per_mag in IMAGES.items():
        counts[f"{subtype} images"] = sum(per_mag)
        counts[f"{subtype} patients"] = PATIENTS[subtype]
    for i, mag in enumerate(MAGNIFICATIONS):
        counts[f"{mag}X images"] = sum(n[i] for n in IMAGES.values())
    for subtype, per_mag in IMAGES.items():
        for mag, n in zip(MAGNIFICATIONS, per_mag, strict=True):
            counts[f"{subtype} images at {mag}X"] = n
    return counts


def observed(table: pd.DataFrame) -> dict[str, int]:
    """The same counts for an index table (columns tumor_class, subtype, patient, magnification)."""
    counts = {
        "images": len(table),
        "patients": len(table.groupby(["subtype", "patient"])),
        "patient tokens": table["patient"].nunique(),
    }
    by_class = table["tumor_class"].value_counts()
    counts["benign images"] = int(by_class.get("B", 0))
    counts["malignant images"] = int(by_class.get("M", 0))
    for subtype in IMAGES:
        part = table[table["subtype"] == subtype]
        counts[f"{subtype} images"] = len(part)
        counts[f"{subtype} patients"] = part["patient"].nunique()
    by_mag = table["magnification"].value_counts()
    for mag in MAGNIFICATIONS:
        counts[f"{mag}X images"] = int(by_mag.get(mag, 0))
    cells = table.groupby(["subtype", "magnification"]).size()
    for subtype in IMAGES:
        for mag in MAGNIFICATIONS:
            counts[f"{subtype} images at {mag}X"] = int(cells.get((subtype, mag), 0))
    return counts


def differences(table: pd.DataFrame) -> list[str]:
    """One line per count that differs from the complete BreaKHis_v1; empty when it is complete.

    Per-cell (subtype x magnification) lines only appear when every total agrees, so a partial
    tree gets a readable list rather than 32 more lines saying the same thing.
    """
    want, have = expected(), observed(table)
    lines = {False: [], True: []}  # is the label a subtype x magnification cell?
    for label, n in want.items():
        if have[label] != n:
            gap = n - have[label]
            what = f"{gap:,} missing" if gap > 0 else f"{-gap:,} more than BreaKHis_v1"
            lines[" at " in label].append(f"{label}: {have[label]:,} of {n:,} ({what})")
    return lines[False] or lines[True]


def is_complete(table: pd.DataFrame) -> bool:
    return not differences(table)


def verdict(found: list[str]) -> list[str]:
    """The lines that report `differences(...)`: one when complete, else a heading and each count."""
    if not found:
        return ["complete BreaKHis_v1: every count per class, subtype and magnification as published"]
    return [f"not the complete BreaKHis_v1; {len(found)} count(s) differ from the published ones:"] + [
        f"  {line}" for line in found
    ]
