"""`bhbench paper`: manifests, claim verdicts, the page, and records reused on a second call."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import toy_source

from bhbench.cli import main
from bhbench.errors import UserError
from bhbench.leaderboard import papers as paper
from bhbench.leaderboard.papers import FAILS, HOLDS, UNSURE, Estimate, above, combine, inside, over_folds, unpaired

TOY_PAPER = """
citation = "A toy paper"

[protocol]
split = "image-kfold"
task = "binary"
magnifications = [40, 100, 200, 400]
recipe = "nearest class mean"
metric = "image"

[[experiment]]
id = "toy"
method = "toy"
regime = "mi"

[[experiment]]
id = "majority"
method = "majority"
regime = "mi"

[[published]]
row = "toy"
statistic = "accuracy"
value = 90.0
source = "Table 1"
verified = "made up for the test"

[[claim]]
text = "the toy is at least as good as the majority"
kind = "at_least"
row = "toy"
than = "majority"
statistics = ["headline"]

[[claim]]
text = "the toy's accuracy is 90"
kind = "equals"
row = "toy"
statistics = ["accuracy"]
value = 90.0
within = 50

[[figure]]
kind = "transfer"
methods = ["toy"]
"""


@pytest.mark.parametrize("name", paper.known())
def test_shipped_manifests_parse_and_name_existing_rows(name: str) -> None:
    from bhbench import registry

    manifest = paper.read(name)
    rows = {e.id for e in manifest.experiments}
    assert manifest.claims and manifest.published
    for claim in manifest.claims:
        assert {claim.row, *claim.than} <= rows
    assert {p.row for p in manifest.published} <= rows
    registry.resolve([e.method for e in manifest.experiments])  # raises on a method that does not exist


def test_known_papers_are_the_three_seed_papers() -> None:
    assert {"spanhol2016", "bayramoglu2016", "liu2020"} <= set(paper.known())


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (('kind = "at_least"', 'kind = "bigger"'), "claim[0].kind"),
        (('row = "toy"\nstatistic', 'row = "nobody"\nstatistic'), "published[0].row"),
        (('split = "image-kfold"', "split = 3"), "protocol.split"),
        (("[40, 100, 200, 400]", "[40, 50]"), "protocol.magnifications"),
        (('statistics = ["accuracy"]', 'statistics = ["speed"]'), "claim[1].statistics"),
        (('recipe = "nearest class mean"', 'recipe = "x"\ncolour = "red"'), "protocol.colour"),
        (('kind = "transfer"', 'kind = "pie"'), "figure[0].kind"),
        (('methods = ["toy"]', 'methods = ["toy", "majority"]'), "figure[0].methods"),  # one method's matrix
    ],
)
def test_a_bad_key_is_one_line_naming_file_and_key(tmp_path: Path, change: tuple[str, str], key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(TOY_PAPER.replace(*change))
    with pytest.raises(UserError) as caught:
        paper.read(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}:") and "\n" not in message


def test_interval_verdicts() -> None:
    assert above(Estimate(0.05, 0.01, 0.09), 0.0) == HOLDS
    assert above(Estimate(-0.05, -0.09, -0.01), 0.0) == FAILS
    assert above(Estimate(0.01, -0.03, 0.05), 0.0) == UNSURE
    assert above(Estimate(-0.01, -0.015, 0.02), -0.02) == HOLDS  # within the margin allowed
    assert inside(Estimate(0.80, 0.78, 0.82), 0.801, 0.05) == HOLDS
    assert inside(Estimate(0.60, 0.55, 0.65), 0.801, 0.05) == FAILS
    assert inside(Estimate(0.75, 0.60, 0.90), 0.801, 0.05) == UNSURE
    assert inside(Estimate(0.8, math.nan, math.nan), 0.8, 0.05) == UNSURE  # one fold: no interval
    assert combine([HOLDS, UNSURE]) == UNSURE and combine([HOLDS, FAILS]) == FAILS and combine([HOLDS]) == HOLDS


def test_interval_of_a_statistic_no_draw_defines_is_undecided() -> None:
    nothing = paper.interval(np.array([np.nan, np.nan]))
    assert all(math.isnan(x) for x in nothing)
    assert above(Estimate(0.1, *nothing), 0.0) == UNSURE
    lo, hi = paper.interval(np.r_[np.nan, np.linspace(0, 1, 1001)])
    assert lo == pytest.approx(0.025) and hi == pytest.approx(0.975)


def test_interval_over_folds_and_unpaired_difference() -> None:
    e = over_folds([0.8, 0.82, 0.78, 0.8, 0.8])
    assert e.value == pytest.approx(0.8) and e.lo < 0.8 < e.hi
    d = unpaired(Estimate(0.9, 0.87, 0.93), Estimate(0.8, 0.76, 0.84))
    assert d.value == pytest.approx(0.1) and d.lo == pytest.approx(0.1 - 0.05) and d.hi == pytest.approx(0.15)


@pytest.mark.parametrize(
    ("split", "fits"),
    [
        # no official folds beside synthetic data: the paper's protocol is the leak-free split, its records shared
        ("official", 2 * 5),
        pytest.param("image-kfold", 2 * 2 * 5, marks=pytest.mark.slow),  # two protocols, two rows, five folds
    ],
)
def test_paper_runs_both_protocols_then_only_renders(
    tiny_tree: Path, submissions: Path, tmp_path: Path, split: str, fits: int
) -> None:
    from bhbench import api

    (submissions / "toy.py").write_text(toy_source("toy"))
    manifest = tmp_path / "toy2020.toml"
    manifest.write_text(TOY_PAPER.replace('split = "image-kfold"', f'split = "{split}"'))
    kwargs = dict(results=tmp_path / "results", submissions=submissions)
    first = api.paper(manifest, tiny_tree, **kwargs)
    assert first.fitted == fits
    text = first.page.read_text()
    assert first.page == tmp_path / "results" / "papers" / "toy2020.md"
    assert f"{split} split" in text and "| toy (`toy`, mi)" in text
    assert bool(first.notes) == (split == "official")
    assert [v[0] for v in first.verdicts] == ["the toy is at least as good as the majority", "the toy's accuracy is 90"]
    if split == "official":  # the same records on both sides: no inflation, the same verdicts
        assert "| 0.0 [" in text and all(a == b for _, a, b in first.verdicts)
    second = api.paper(manifest, tiny_tree, **kwargs)
    assert second.fitted == 0
    assert second.page.read_text() == text


def test_cli_unknown_paper_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["paper", "nosuch2016"]) == 2
    err = capsys.readouterr()
    text = (err.out + err.err).strip()
    assert "unknown paper 'nosuch2016'" in text and "bayramoglu2016" in text
    assert "Traceback" not in text and len(text.splitlines()) == 1


def test_the_board_page_holds_what_bhbench_paper_writes_and_the_figures(
    tiny_tree: Path, submissions: Path, tmp_path: Path, run_toy
) -> None:
    from bhbench import api, leaderboard
    from bhbench.leaderboard.render import dataset_title

    (submissions / "toy.py").write_text(toy_source("toy"))
    path = tmp_path / "toy2020.toml"
    text = TOY_PAPER.replace('split = "image-kfold"', 'split = "patient"')
    path.write_text(text.replace('kind = "transfer"', 'kind = "learning_curve"'))
    results = tmp_path / "results"
    done = api.paper(path, tiny_tree, results=results, submissions=submissions)
    manifest, found = paper.read(path), leaderboard.read([results]).sections
    text, svgs = paper.board_page(manifest, found, leaderboard.tables(found))
    assert text is not None and done.table in text  # the same rows found the same way, nothing run
    assert f"## {dataset_title(found[0].dataset)}" in text
    assert svgs == {} and "![" not in text  # no learning-curve point was run: no figure
    run_toy("toy", results=results, train_fraction=0.5)
    found = leaderboard.read([results]).sections
    text, svgs = paper.board_page(manifest, found, leaderboard.tables(found))
    slug = found[0].dataset.id
    assert list(svgs) == [f"{slug}-toy2020-learning-curve.svg"] and svgs[f"{slug}-toy2020-learning-curve.svg"]
    assert f"(../figures/{slug}-toy2020-learning-curve.svg)" in text


def test_a_paper_no_record_measures_has_no_board_page() -> None:
    assert paper.board_page(paper.read("bayramoglu2016"), [], {}) == (None, {})


@pytest.mark.slow  # ~25 s: runs, renders, checks and prunes a page
def test_the_committed_kind_of_page_is_written_checked_and_removed_with_its_records(run_toy, tmp_path: Path) -> None:
    from bhbench import leaderboard

    results = run_toy("lbp_svm", regime="ms").results  # a row of spanhol2016's, on the tiny tree
    out = tmp_path / "board"
    leaderboard.write([results], out)
    page = out / "papers" / "spanhol2016.md"
    assert "| lbp (`lbp_svm`, ms)" in page.read_text()
    assert "[spanhol2016](papers/spanhol2016.md)" in (out / "README.md").read_text()
    assert (out / "site" / "papers" / "spanhol2016.html").is_file()
    assert not (out / "papers" / "liu2020.md").exists()  # none of its rows was run
    page.write_text(page.read_text().replace("lbp (`lbp_svm`", "lbp (`lbp_svm`, edited"))
    assert f"{page} is not what the records produce; run `bhbench leaderboard`" in leaderboard.stale([results], out)
    for record in results.rglob("*.json"):
        record.unlink()
    leaderboard.write([results], out)
    assert not page.exists()  # produced by no record any more: removed with the other orphans
