"""How bhbench and the methods on its board are to be cited: CITATION.cff and the citation column."""

from __future__ import annotations

from importlib.metadata import metadata
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_citation_file_is_valid_cff_for_this_version():
    doc = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    installed = metadata("bhbench")
    assert doc["cff-version"] == "1.2.0" and doc["message"] and doc["title"].startswith("bhbench")
    assert doc["authors"] and all("name" in a or "family-names" in a for a in doc["authors"])
    assert str(doc["version"]) == installed["Version"] and doc["license"] == installed["License"]


def test_every_committed_row_names_where_it_comes_from():
    table = pd.read_csv(ROOT / "leaderboard" / "leaderboard.csv")
    assert table["reference_row"].dtype == bool
    assert table["citation"].notna().all() and (table["citation"].str.len() > 0).all()
    cited = dict(zip(table["name"], table["citation"], strict=False))
    assert cited["pftas_svm"].startswith("Spanhol et al. 2016")
    assert cited["majority"] == cited["stratified"] != cited["pftas_svm"]
