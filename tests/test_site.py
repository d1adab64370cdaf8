"""The static leaderboard site (`site/` of the output folder): its files in the board, `--check` on
them, and in a real headless Chromium: sorting, filtering and a link to a method page."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import toy_source

from bhbench import api, leaderboard, registry, scoring
from bhbench.leaderboard import site


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory, tiny_tree: Path):
    """Records of the toy and both reference rows on the binary task, the toy alone on the subtype
    task, and the board with the toy's method page, written from them."""
    tmp = tmp_path_factory.mktemp("site")
    subs = tmp / "submissions"
    subs.mkdir()
    (subs / "toy.py").write_text(toy_source("toy"))
    out, board = tmp / "results", tmp / "board"
    mp = pytest.MonkeyPatch()
    mp.setattr(scoring, "BOOTSTRAP_RESAMPLES", 2000)  # enough for three rows; the default takes longer
    mp.setattr(registry, "DEFAULT", registry.DEFAULT.copy())  # the toy submission registers globally
    for methods, task in ((["toy", "majority", "stratified"], "binary"), (["toy"], "subtype")):
        ran = api.run(methods, api.Where(tiny_tree, task=task), results=out, fps_images=0, submissions=subs)
        assert ran.ok
    assert api.leaderboard(out, board, add_pages=["toy"]).ok
    yield out, board
    mp.undo()


def _rows(index: str) -> list[str]:
    return re.findall(r"<tr data-family.*?</tr>", index)


def test_the_site_has_every_row_with_its_filters_a_bar_and_its_method_page(board):
    _, out = board
    index = (out / "site/index.html").read_text()
    rows = _rows(index)
    assert len(rows) == 4  # three binary rows, one subtype row
    toy = [r for r in rows if ">toy</a>" in r]
    assert len(toy) == 2 and all('data-family="test"' in r and 'href="reports/toy.html"' in r for r in toy)
    assert sum("data-reference" in r and 'data-family="reference"' in r for r in rows) == 2
    assert all('<svg class="ci"' in r for r in rows)  # the headline interval drawn in every row
    assert 'data-task="binary"' in index and 'data-task="subtype"' in index
    assert "<h1>toy</h1>" in (out / "site/reports/toy.html").read_text()
    for figure in (out / "figures").glob("*.svg"):
        assert (out / "site/figures" / figure.name).read_bytes() == figure.read_bytes()
        assert f'src="figures/{figure.name}"' in index


def test_the_site_fetches_nothing_from_elsewhere(board):
    _, out = board
    pages = [p.read_text() for p in (out / "site").rglob("*.html")]
    assert len(pages) == 2
    assert not any(re.search(r'(src|href)="(https?:)?//', text) for text in pages)


def test_links_to_markdown_pages_point_at_their_html_pages():
    converted = site.markdown_html("[a](reports/a.md) [b](https://example.org/b.md)")
    assert 'href="reports/a.html"' in converted and 'href="https://example.org/b.md"' in converted


def test_check_names_an_edited_site_page_and_write_removes_an_orphan(board, tmp_path):
    results, built = board
    out = Path(shutil.copytree(built, tmp_path / "board"))
    page = out / "site/reports/toy.html"
    page.write_text(page.read_text().replace("<h1>toy</h1>", "<h1>toy, edited</h1>"))
    orphan = out / "site/reports/gone.html"
    orphan.write_text("<h1>gone</h1>")
    (out / "papers").mkdir()
    (out / "papers/mine2026.md").write_text("# Mine et al. 2026\n\nClaims re-measured.\n")  # own manifest's
    differs = "is not what the records produce; run `bhbench leaderboard`"
    assert leaderboard.stale([results], out) == [
        f"{out / 'site/index.html'} {differs}",  # it links the new paper page
        f"{out / 'site/papers/mine2026.html'} {differs}",
        f"{page} {differs}",
        f"{orphan} is produced by no record; run `bhbench leaderboard`",
    ]
    leaderboard.write([results], out)
    assert not orphan.exists() and leaderboard.stale([results], out) == []
    assert "<h1>Mine et al. 2026</h1>" in (out / "site/papers/mine2026.html").read_text()
    assert 'href="papers/mine2026.html"' in (out / "site/index.html").read_text()


# --- in a real browser ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by selenium; skipped where either is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    yield driver
    driver.quit()


def _open(browser, board) -> None:
    browser.get((board[1] / "site/index.html").as_uri())


def _binary_rows(browser) -> list:
    return browser.find_elements("css selector", 'section[data-task="binary"] table.board tbody tr')


def _methods(rows: list) -> list[str]:
    return [r.find_elements("css selector", "td")[1].text for r in rows]


def _shown(browser) -> list[str]:
    """The method names of the binary section's rows the page shows, sorted."""
    return sorted(m.split(" ")[0] for m in _methods([r for r in _binary_rows(browser) if r.is_displayed()]))


@pytest.mark.browser
def test_clicking_a_column_title_sorts_its_table(browser, board):
    _open(browser, board)
    header = browser.find_element("xpath", '//section[@data-task="binary"]//table[@class="board"]//th[.="PRR"]')
    column = len(header.find_elements("xpath", "preceding-sibling::th"))
    header.click()
    rows = _binary_rows(browser)
    values = [float(r.find_elements("css selector", "td")[column].get_attribute("data-sort")) for r in rows]
    assert values == sorted(values) and values[0] < values[-1]
    ascending = _methods(rows)
    header.click()
    assert _methods(_binary_rows(browser)) == ascending[::-1]


@pytest.mark.browser
def test_filters_hide_rows_and_sections(browser, board):
    _open(browser, board)
    assert _shown(browser) == ["majority", "stratified", "toy"]
    browser.find_element("css selector", 'input[data-filter="hide-smoke-reference"]').click()
    assert _shown(browser) == ["toy"]
    browser.find_element("css selector", 'input[data-filter="hide-smoke-reference"]').click()
    family = browser.find_element("css selector", 'select[data-filter="family"]')
    family.find_element("css selector", 'option[value="reference"]').click()
    assert _shown(browser) == ["majority", "stratified"]
    family.find_element("css selector", 'option[value=""]').click()
    task = browser.find_element("css selector", 'select[data-filter="task"]')
    task.find_element("css selector", 'option[value="subtype"]').click()
    assert not browser.find_element("css selector", 'section[data-task="binary"]').is_displayed()
    assert browser.find_element("css selector", 'section[data-task="subtype"]').is_displayed()


@pytest.mark.browser
def test_a_method_link_opens_its_page(browser, board):
    _open(browser, board)
    browser.find_element("css selector", 'section[data-task="binary"] a[href="reports/toy.html"]').click()
    assert browser.current_url.endswith("/site/reports/toy.html")
    assert browser.find_element("tag name", "h1").text == "toy"
    assert browser.find_element("css selector", 'img[src^="figures/toy-"]').get_attribute("naturalWidth") != "0"
