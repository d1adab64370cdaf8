"""Figures, method pages, compare and export, on records of two toy methods and the majority row."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import toy_source

from bhbench import api, registry, scoring
from bhbench.cli import main
from bhbench.leaderboard import compare, read
from bhbench.metric import BOOTSTRAPPED


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory, tiny_tree: Path):
    """Records of two toy methods (one with a worse feature size) and the leaderboard built from them."""
    tmp = tmp_path_factory.mktemp("board")
    subs = tmp / "submissions"
    subs.mkdir()
    (subs / "toy.py").write_text(toy_source("toy"))
    (subs / "blurry.py").write_text(toy_source("blurry").replace("size: int = 16", "size: int = 1"))
    out, board = tmp / "results", tmp / "board"
    mp = pytest.MonkeyPatch()
    mp.setattr(scoring, "BOOTSTRAP_RESAMPLES", 2000)  # enough for three rows; the default takes longer
    mp.setattr(registry, "DEFAULT", registry.DEFAULT.copy())  # the toy submissions register globally
    ran = api.run(["toy", "blurry", "majority"], api.Where(tiny_tree), results=out, fps_images=0, submissions=subs)
    assert ran.ok and len(ran.records) == 15
    assert api.leaderboard(out, board).output == board
    yield out, board
    mp.undo()


def _check(out: Path, board: Path) -> int:
    return main(["leaderboard", "--check", "--results", str(out), "--output", str(board)])


def test_figures_are_embedded_and_regenerated_byte_for_byte(board):
    out, folder = board
    text = (folder / "README.md").read_text()
    figures = sorted((folder / "figures").glob("*.svg"))
    names = {f.name.rsplit("-", 1)[1] for f in figures}
    assert names == {"forest.svg", "magnifications.svg", "roc.svg"}
    for f in figures:
        assert f"(figures/{f.name})" in text
        assert b"<dc:date>" not in f.read_bytes()
    assert "majority (reference)" in text and "95% CI" in text
    header = (folder / "leaderboard.csv").read_text().splitlines()[0].split(",")
    for m in BOOTSTRAPPED:  # every declared metric, with its interval
        assert {f"{m.name}_{part}" for part in ("mean", "std", "lo", "hi")} <= set(header)
    assert _check(out, folder) == 0


def test_an_edited_or_stray_figure_fails_the_check(board):
    out, folder = board
    figure = sorted((folder / "figures").glob("*forest.svg"))[0]
    original = figure.read_bytes()
    try:
        figure.write_bytes(original.replace(b"toy", b"yot", 1))
        assert _check(out, folder) == 1
    finally:
        figure.write_bytes(original)
    stray = folder / "figures" / "old-section-forest.svg"
    stray.write_bytes(original)
    try:
        assert _check(out, folder) == 1
    finally:
        stray.unlink()
    assert _check(out, folder) == 0


def test_figures_of_another_matplotlib_release_are_noted_not_compared(board, capsys):
    out, folder = board
    drawn_with = folder / "figures" / "drawn-with.txt"
    figure = sorted((folder / "figures").glob("*forest.svg"))[0]
    readme = folder / "README.md"
    saved = {p: p.read_bytes() for p in (drawn_with, figure, readme)}
    try:
        drawn_with.write_text("matplotlib 0.0.1\n")
        figure.write_bytes(saved[figure].replace(b"toy", b"yot", 1))  # what another release might draw
        assert _check(out, folder) == 0
        assert "drawn with matplotlib 0.0.1" in capsys.readouterr().err
        readme.write_bytes(saved[readme].replace(b"toy", b"yot", 1))  # tables are compared whatever the release
        assert _check(out, folder) == 1
    finally:
        for path, blob in saved.items():
            path.write_bytes(blob)
    assert _check(out, folder) == 0


def test_report_writes_a_page_the_leaderboard_links(board, tmp_path):
    out, folder = board
    page_root = tmp_path / "pages"
    assert main(["report", "--method", "toy", "--results", str(out), "--output", str(page_root)]) == 0
    page = (page_root / "reports" / "toy.md").read_text()
    assert "| fold" in page and "Per-patient scores" in page and "Expected calibration error" in page
    for m in BOOTSTRAPPED:  # a line each: mean ± std over folds and the 95% interval
        (line,) = [x for x in page.splitlines() if x.startswith(f"| {m.label} ")]
        assert line.count("[") == 1 and line.count("±") == 1
    for kind in ("roc", "confusion", "reliability"):
        assert f"-{kind}.svg)" in page
        assert list((page_root / "reports" / "figures").glob(f"toy-*-{kind}.svg"))
    assert main(["leaderboard", "--results", str(out), "--output", str(page_root)]) == 0
    assert "[toy](reports/toy.md)" in (page_root / "README.md").read_text()
    assert _check(out, page_root) == 0  # the page is rebuilt and verified with the leaderboard
    page_file = page_root / "reports" / "toy.md"
    page_file.write_text(page.replace("| 1 ", "| 9 ", 1))
    assert _check(out, page_root) == 1
    assert main(["report", "--method", "nosuch", "--results", str(out), "--output", str(page_root)]) == 2


def test_compare_gives_the_paired_difference_of_the_boards_headlines(board, capsys):
    out, folder = board
    rows = pd.read_csv(folder / "leaderboard.csv").set_index("method")
    (line,) = compare.compare(read([out]).sections, "toy", "majority").to_dict("records")
    assert line["a_headline"] == pytest.approx(rows.loc["toy", "headline_mean"], abs=1e-6)
    assert line["b_headline"] == pytest.approx(rows.loc["majority", "headline_mean"], abs=1e-6)
    assert line["difference"] == pytest.approx(line["a_headline"] - line["b_headline"])
    assert line["lo"] <= line["difference"] <= line["hi"] and 0 < line["p"] <= 1 and line["common_folds"] == 5
    capsys.readouterr()
    assert main(["compare", "toy", "majority", "--results", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"{100 * line['difference']:+.1f}" in text and f"{100 * line['lo']:+.1f}" in text
    assert main(["compare", "toy", "nosuch", "--results", str(out)]) == 2


def test_export_writes_latex_csv_and_patient_scores(board, tmp_path):
    out, _ = board
    assert (
        main(["export", "--method", "toy", "--method", "maj*", "--results", str(out), "--output", str(tmp_path)]) == 0
    )
    board_rows = pd.read_csv(board[1] / "leaderboard.csv").set_index("method")
    table = pd.read_csv(tmp_path / "table.csv").set_index("method")
    assert sorted(table.index) == ["majority", "toy"]
    for name in table.index:  # the board's numbers, to the CSV's six significant digits
        for column in ("rank", "headline_mean", "headline_lo", "headline_hi", "auc_mean", "brier_mean"):
            assert table.loc[name, column] == pytest.approx(board_rows.loc[name, column], rel=1e-5), (name, column)
    tex = (tmp_path / "table.tex").read_text()
    toy = board_rows.loc["toy"]
    assert "\\begin{tabular}" in tex and f"{100 * toy.headline_mean:.1f} $\\pm$ {100 * toy.headline_std:.1f}" in tex
    patients = pd.read_csv(tmp_path / "patients.csv")
    assert list(patients.columns[:5]) == ["dataset", "protocol", "method", "fold", "patient"]
    assert set(patients["method"]) == {"toy", "majority"} and patients.groupby("method")["fold"].nunique().eq(5).all()


@pytest.fixture
def two_folders(board, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """The board's records split in two results folders: a committed-style one without `toy`, and a
    user's folder (the default scratch one, $BHBENCH_RESULTS) holding only the fresh `toy` row."""
    import shutil

    out, _ = board
    committed, mine = tmp_path / "committed", tmp_path / "mine"
    shutil.copytree(out, committed)
    (dataset,) = [d.name for d in out.iterdir() if d.is_dir()]
    for method in committed.glob(f"{dataset}/*/toy"):
        shutil.rmtree(method)
    for method in out.glob(f"{dataset}/*/toy"):
        shutil.copytree(method, mine / method.relative_to(out))
    for shared in ("manifest.csv", "splits"):
        copy = shutil.copytree if (out / dataset / shared).is_dir() else shutil.copy
        copy(out / dataset / shared, mine / dataset / shared)
    monkeypatch.setenv("BHBENCH_RESULTS", str(mine))
    return committed, mine


def _said(capsys: pytest.CaptureFixture) -> str:
    """What a command printed on either stream, without the line breaks and spaces of its wrapping."""
    captured = capsys.readouterr()
    return "".join((captured.out + captured.err).split())


def _listing(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*")}


def test_a_fresh_row_is_compared_reported_and_exported_beside_committed_rows(two_folders, tmp_path, capsys):
    committed, mine = two_folders
    both = ["--results", str(committed), "--results", str(mine)]
    before = _listing(committed)
    capsys.readouterr()
    assert main(["compare", "toy", "majority", *both]) == 0
    text = _said(capsys)
    # only the two methods' records (majority's from the board, toy's from the user's folder); blurry's are not read
    assert f"read5recordsfrom{committed}and5from{mine}" in text and "toy" in text
    assert main(["report", "--method", "toy", *both]) == 0
    page = (mine / "reports" / "toy.md").read_text()  # the default: the user's folder
    assert "| section" in page and " of 3 |" in page  # ranked among the committed rows of its section
    assert main(["export", "--method", "toy", "--method", "majority", *both, "--output", str(tmp_path / "x")]) == 0
    table = pd.read_csv(tmp_path / "x" / "table.csv")
    assert sorted(table["method"]) == ["majority", "toy"] and table["rank"].notna().all()
    assert _listing(committed) == before  # read-only


def test_a_row_in_two_folders_is_read_from_the_first(two_folders, board):
    committed, mine = two_folders
    out, _ = board
    got = api.compare("toy", "majority", [out, mine])  # out holds toy too: out's records are read
    assert got.read == f"read 10 records from {out} and 0 from {mine}; 5 record(s) of {mine} are also in {out}: " \
        "the first folder's are read"  # fmt: skip


def test_compare_without_a_common_section_names_the_folders_read(two_folders, capsys):
    committed, mine = two_folders
    assert main(["compare", "toy", "nosuch", "--results", str(committed), "--results", str(mine)]) == 2
    assert f"in{committed},{mine}holds" in _said(capsys)


def test_report_never_writes_the_board_and_its_check_still_passes(two_folders, tmp_path, monkeypatch, capsys):
    committed, mine = two_folders
    monkeypatch.chdir(tmp_path)  # a checkout: leaderboard/results is the committed board
    (tmp_path / "leaderboard").mkdir()
    committed.rename(tmp_path / "leaderboard" / "results")
    assert main(["leaderboard"]) == 0
    assert main(["report", "--method", "toy"]) == 0  # default folders: the committed board, then the user's
    assert "(committed,read-only)" in _said(capsys)
    assert (mine / "reports" / "toy.md").exists() and not (tmp_path / "leaderboard" / "reports").exists()
    assert main(["leaderboard", "--check"]) == 0
    assert main(["report", "--method", "majority", "--output", "leaderboard"]) == 2
    assert "onlybhbenchleaderboardwrites" in _said(capsys).replace("`", "")
    assert main(["leaderboard", "--report", "majority"]) == 0  # a maintainer adds a committed page
    assert "[majority](reports/majority.md)" in (tmp_path / "leaderboard" / "README.md").read_text()
    assert main(["leaderboard", "--check"]) == 0


def test_a_remembered_table_serves_only_the_files_it_was_computed_from(board, tmp_path, monkeypatch):
    from bhbench.leaderboard import memo
    from bhbench.leaderboard.aggregate import frame

    out, _ = board
    monkeypatch.setenv("BHBENCH_CACHE", str(tmp_path / "cache"))  # nothing remembered yet
    first = api.export(["toy"], [out], tmp_path / "a").rows
    (section,) = read([out], lambda *_: True).sections
    key, counts = memo.digest([out], section.dataset.id, section.protocol.id)
    assert counts == {out: 15}
    pd.testing.assert_frame_equal(memo.recall(key), frame(section))  # exact, through JSON

    def computed(*_):
        raise AssertionError("recomputed a table it had")

    monkeypatch.setattr("bhbench.leaderboard.tables", computed)
    again = api.export(["toy"], [out], tmp_path / "b").rows
    pd.testing.assert_frame_equal(first, again)
    # an audit file changes what the table holds: the remembered one no longer serves
    audit = next(out.rglob("toy/*/fold1.json")).parent / "audit.json"
    audit.write_text('{"verdict": "fail", "reason": "by hand", "code": "x"}')
    try:
        assert memo.digest([out], section.dataset.id, section.protocol.id)[0] != key
        with pytest.raises(AssertionError, match="recomputed"):
            api.export(["toy"], [out], tmp_path / "c")
    finally:
        audit.unlink()
