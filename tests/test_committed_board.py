"""What the committed board says about itself: how bhbench and each method are cited (CITATION.cff,
the citation column), what each section tests on, and that no section is the complete BreaKHis."""

from __future__ import annotations

from importlib.metadata import metadata
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _cells(markdown: str) -> list[list[str]]:
    """The stripped cells of every table line (header and body; the separator line is skipped)."""
    return [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines() if line.startswith("| ")]


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
    assert cited["pftas_svm"].startswith("Spanhol et al., IEEE TBME 2016") and "Liu" in cited["fast_bcnn"]
    assert cited["majority"] == cited["stratified"] != cited["pftas_svm"]


def test_each_section_says_what_it_tests_on_and_flags_few_patients():
    text = (ROOT / "leaderboard" / "README.md").read_text()
    datasets = text.split("\n## ")[1:]
    sections = [(d.splitlines()[0], s) for d in datasets for s in d.split("\n### ")[1:]]
    assert sections and all("| test patients per fold |" in s for _, s in sections if "| #" in s)
    table = pd.read_csv(ROOT / "leaderboard" / "leaderboard.csv")
    for dataset, section in sections:
        title = section.splitlines()[0]
        if "| test images" not in section:  # the protocol-matters tables are sections without rows
            continue
        few = "**Few test patients:**" in section
        # the 283-image sample tests 40X and 200X on one or two patients a fold, the 441-image union's
        # official folds 200X on two in some folds; the synthetic patient-level splits test every
        # magnification on 25
        if "(283 images" in dataset and ("official split" in title or "patient split" in title):
            assert few and "at 40X, 200X" in section, title
        if "(441 images" in dataset and "official split" in title:
            assert few and "at 200X" in section, title
        if "patient split" in title and dataset.startswith("Synthetic"):
            assert not few, title
    assert len(set(table["dataset"])) >= 2


def test_the_banner_says_no_section_is_the_complete_breakhis():
    text = (ROOT / "leaderboard" / "README.md").read_text()
    assert "No section here measures the complete BreaKHis (7,909 images, 82 patients) yet." in text
    assert "bhbench data download" in text and "--data BreaKHis_v1 --results leaderboard/results" in text


def test_the_robustness_section_covers_both_datasets_and_every_normalisation():
    text = (ROOT / "leaderboard" / "README.md").read_text()
    section = text[text.index("## Robustness to stain") : text.index("## Published reference numbers")]
    tables = section.split("\n### ")[1:]
    titles = [t.splitlines()[0] for t in tables]
    assert len(titles) == 2 and sum(t.startswith("Synthetic") for t in titles) == 1, titles  # and the real sample
    for table in tables:
        rows = _cells(table)
        by_norm = {(r[0], r[1]): r for r in rows[1:]}
        # every hand-crafted row and the reference rows on raw pixels, and the SVM rows, the reference
        # rows and a deep row under each normalisation, with their drops and stain-shift penalties
        raw = [f"{d}_{c}" for d in ("lbp", "clbp", "lpq", "glcm", "orb", "pftas") for c in ("svm", "1nn", "qda", "rf")]
        shown = [(m, "none") for m in [*raw, "majority", "stratified", "fast_bcnn"]]
        normalised = ("pftas_svm", "lbp_svm", "majority", "stratified", "fast_bcnn")
        shown += [(m, n) for m in normalised for n in ("macenko", "reinhard")]
        for method, norm in shown:
            assert by_norm[(method, norm)][-1] != "–", (method, norm)  # the penalty
            assert by_norm[(method, norm)][3] != "–", (method, norm)  # the drop at the lightest shift
        assert "![headline against shift strength](figures/robustness-" in table
        figure = table.split("](", 1)[1].split(")", 1)[0]
        assert (ROOT / "leaderboard" / figure).is_file()


def test_the_real_sample_is_measured_at_every_magnification_and_the_papers_pages_are_linked():
    # mini/ and more/ joined (`bhbench data union`): every official fold tests all four magnifications
    table = pd.read_csv(ROOT / "leaderboard" / "leaderboard.csv")
    union = table[table["dataset"] == "breakhis-17981b70"]
    for protocol in ("binary-mi-official", "binary-ms-official", "subtype-mi-official", "subtype-ms-official"):
        ranked = union[(union["protocol"] == protocol) & (union["block"] == "ranked")]
        assert len(ranked) >= 24, protocol  # the hand-crafted grid
        for mag in ("40X", "100X", "200X", "400X"):
            assert ranked[f"{mag}_mean"].notna().all(), (protocol, mag)
    twins = {"binary-mi-image-kfold-seed0", "binary-mi-patient-seed0", "binary-ms-patient-seed0"}
    assert twins <= set(union["protocol"])
    text = (ROOT / "leaderboard" / "README.md").read_text()
    for paper in ("spanhol2016", "bayramoglu2016", "liu2020"):
        assert f"[{paper}](papers/{paper}.md)" in text and (ROOT / "leaderboard" / "papers" / f"{paper}.md").is_file()
    bayramoglu = (ROOT / "leaderboard" / "papers" / "bayramoglu2016.md").read_text()
    assert "learning-curve.svg)" in bayramoglu and "transfer.svg)" in bayramoglu


@pytest.mark.parametrize(("name", "experiment"), [("cnn", "cnn-mi"), ("mtcnn", "mtcnn")])
def test_bayramoglus_cnns_trained_by_the_paper_recipe_are_ranked_and_their_cost_shown(name, experiment):
    table = pd.read_csv(ROOT / "leaderboard" / "leaderboard.csv")
    synthetic = table[table["dataset"].str.startswith("synthetic") & (table["protocol"] == "binary-mi-patient-seed0")]
    paper = synthetic[(synthetic["name"] == name) & (synthetic["recipe"] == "paper")]  # not the learning curve's
    assert len(paper) and (paper["block"] == "ranked").all() and (paper["folds"] == 5).all()
    page = (ROOT / "leaderboard" / "papers" / "bayramoglu2016.md").read_text()
    cells = _cells(next(part for part in page.split("\n## ") if part.startswith("Synthetic")))
    headline = next(r for r in cells if r[0] == f"{experiment} (`{name} recipe=paper`, mi)" and r[1] == "headline")
    assert headline[4] != "–"  # the leak-free value
    # five folds of the 6.7 M-parameter network, epochs run (at most 100) and training seconds per fold
    cost = next(r for r in cells if r[0] == experiment and r[1] == "both")
    assert cost[2] == "5" and cost[3] == "6.7 M" and int(cost[4].split()[0]) <= 100 and float(cost[5]) > 0
