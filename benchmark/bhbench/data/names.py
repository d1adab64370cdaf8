"""BreaKHis file and folder names, parsed strictly.

`SOB_M_DC-14-13412-100-005.png`: biopsy procedure SOB, class M(alignant) or B(enign), subtype,
year, patient id, magnification, sequence number. The patient token used for grouping is
`<year>-<id>` (`14-13412`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bhbench.protocol import MAGNIFICATIONS

SUBTYPE_FOLDERS: dict[str, str] = {
    "A": "adenosis",
    "F": "fibroadenoma",
    "PT": "phyllodes_tumor",
    "TA": "tubular_adenoma",
    "DC": "ductal_carcinoma",
    "LC": "lobular_carcinoma",
    "MC": "mucinous_carcinoma",
    "PC": "papillary_carcinoma",
}
BENIGN_SUBTYPES = ("A", "F", "PT", "TA")
CLASS_FOLDERS = {"B": "benign", "M": "malignant"}

_NAME = re.compile(
    r"^SOB_(?P<cls>[BM])_(?P<subtype>[A-Z]{1,2})-(?P<patient>\d{2}-[0-9A-Z]+)"
    rf"-(?P<mag>{'|'.join(map(str, MAGNIFICATIONS))})-(?P<seq>\d{{3}})\.png$"
)


@dataclass(frozen=True)
class ImageName:
    tumor_class: str  # "B" or "M"
    subtype: str  # A F PT TA DC LC MC PC
    patient: str  # "14-13412"
    magnification: int
    seq: int

    def filename(self) -> str:
        return f"SOB_{self.tumor_class}_{self.subtype}-{self.patient}-{self.magnification}-{self.seq:03d}.png"

    def relpath(self) -> str:
        """Path below `histology_slides/` in the official layout."""
        return (
            f"breast/{CLASS_FOLDERS[self.tumor_class]}/SOB/{SUBTYPE_FOLDERS[self.subtype]}/"
            f"SOB_{self.tumor_class}_{self.subtype}_{self.patient}/{self.magnification}X/{self.filename()}"
        )


def parse_name(filename: str) -> ImageName:
    """Parse a BreaKHis image file name; ValueError says what is wrong with it."""
    m = _NAME.match(filename)
    if m is None:
        raise ValueError(f"{filename!r} is not a BreaKHis image name (expected like SOB_B_A-14-22549AB-100-001.png)")
    cls, subtype = m["cls"], m["subtype"]
    if subtype not in SUBTYPE_FOLDERS:
        raise ValueError(f"{filename!r}: unknown subtype {subtype!r} (one of {', '.join(SUBTYPE_FOLDERS)})")
    if (subtype in BENIGN_SUBTYPES) != (cls == "B"):
        raise ValueError(f"{filename!r}: subtype {subtype} does not belong to class {cls}")
    return ImageName(cls, subtype, m["patient"], int(m["mag"]), int(m["seq"]))


def folder_disagreements(parts: tuple[str, ...], name: ImageName) -> list[str]:
    """Compare the folders above a file (…/<class>/SOB/<subtype>/<patient>/<mag>X/) with its name."""
    if len(parts) < 6:
        return [f"is not in the <class>/SOB/<subtype>/<patient folder>/<mag>X/ layout ({'/'.join(parts)})"]
    cls_dir, _sob, sub_dir, patient_dir, mag_dir = parts[-6:-1]
    problems = []
    if cls_dir != CLASS_FOLDERS[name.tumor_class]:
        problems.append(f"class folder {cls_dir!r} but the name says {CLASS_FOLDERS[name.tumor_class]!r}")
    if sub_dir != SUBTYPE_FOLDERS[name.subtype]:
        problems.append(f"subtype folder {sub_dir!r} but the name says {SUBTYPE_FOLDERS[name.subtype]!r}")
    expected_patient = f"SOB_{name.tumor_class}_{name.subtype}_{name.patient}"
    if patient_dir != expected_patient:
        problems.append(f"patient folder {patient_dir!r} but the name says {expected_patient!r}")
    if mag_dir != f"{name.magnification}X":
        problems.append(f"magnification folder {mag_dir!r} but the name says {name.magnification}X")
    return problems
