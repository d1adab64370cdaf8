"""The leaderboard as a static web site under `site/` of the output folder: index.html holds every
section's tables (sortable, filterable, the headline interval drawn inline), the figures, the
protocol notes; each method page (and paper page, when the folder has some) becomes an HTML page.
Nothing is fetched at view time: the script and style sheet are this package's own (`assets/`).
The pages are part of `build`'s files, so `write`, `--check` and orphan removal cover them."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
from markdown_it import MarkdownIt
from markdown_it.token import Token

from bhbench.leaderboard import render
from bhbench.leaderboard.aggregate import Section, audit_failures, failures
from bhbench.leaderboard.papers import PAGES
from bhbench.metric import PER_SECOND
from bhbench.scoring import HEADLINE

SITE = "site"
ASSETS = Path(__file__).parent / "assets"
STYLE, SCRIPT = "site.css", "site.js"

# Shown above each block's table; the Markdown board's header explains the blocks at length.
BLOCK_CAPTIONS = {
    "ranked": "",
    "smoke": "Smoke results (CPU `quick` recipe): a check that the path works; not ranked.",
    "incomplete": "Incomplete rows (fewer folds than the rows above: stopped part way, or failed folds); not ranked.",
    "transductive": "Transductive methods (see the whole test set at once); not ranked with the rows above.",
    "audit_failed": "Failed the label-permutation audit; never ranked.",
}
SECTION_FILTERS = ("dataset", "task", "regime", "split")  # the row filter is the family

_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


def markdown_html(text: str) -> str:
    """Markdown as HTML, links to sibling Markdown pages pointing at their HTML pages."""
    tokens = _MARKDOWN.parse(text)
    for token in _links(tokens):
        href = str(token.attrGet("href") or "")
        if href.endswith(".md") and "://" not in href:
            token.attrSet("href", href.removesuffix(".md") + ".html")
    return _MARKDOWN.renderer.render(tokens, _MARKDOWN.options, {})


def _links(tokens: Iterable[Token]) -> Iterable[Token]:
    for token in tokens:
        if token.type == "link_open":
            yield token
        yield from _links(token.children or ())


def _inline(text: str) -> str:
    """One line of Markdown (a table cell) as inline HTML."""
    return markdown_html(text).strip().removeprefix("<p>").removesuffix("</p>")


def page(title: str, body: str, root: str = "") -> bytes:
    """A whole HTML page; `root` leads from the page's folder to the site's."""
    back = "" if not root else f'<p><a href="{root}index.html">← the leaderboard</a></p>\n'
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n"
        f'<link rel="stylesheet" href="{root}assets/{STYLE}">\n'
        f'<script defer src="{root}assets/{SCRIPT}"></script>\n'
        f"</head>\n<body>\n<main>\n{back}{body}\n</main>\n</body>\n</html>\n"
    ).encode()


def interval_bar(mean: float, lo: float, hi: float) -> str:
    """The headline's 95% interval as a small inline SVG on a 0–100% axis (empty when undefined)."""
    if any(math.isnan(v) for v in (mean, lo, hi)):
        return ""
    x = [f"{100 * v:.2f}" for v in (lo, hi - lo, mean)]
    return (
        f'<svg class="ci" viewBox="0 0 100 8" aria-hidden="true"><rect class="axis" x="0" y="3.5" width="100" '
        f'height="1"/><rect x="{x[0]}" y="1.5" width="{x[1]}" height="5"/><circle cx="{x[2]}" cy="4" r="2"/></svg>'
    )


def _cell(text: str, sort: float | str | None = None, raw: bool = False) -> str:
    """A table cell; `sort` is the value the script orders by (the cell's text when None)."""
    if isinstance(sort, float) and math.isnan(sort):
        sort = ""  # sorted last
    key = "" if sort is None else f' data-sort="{html.escape(str(sort))}"'
    return f"<td{key}>{text if raw else html.escape(text)}</td>"


def _number(value: object) -> float:
    return float("nan") if pd.isna(value) else float(value)  # type: ignore[arg-type]


def _headers(columns: list, ranked: bool, training: bool) -> list[str]:
    titles = ["#"] if ranked else []
    titles += ["method", "family", "folds"]
    for _, title, _, interval in columns:
        titles += [title, "95% CI"] if interval else [title]
    return titles + ["FPS model", "FPS e2e"] + (["training"] if training else [])


def _row(r: pd.Series, columns: list, ranked: bool, training: bool, family: str, pages: set[str]) -> str:
    smoke = ' data-smoke=""' if r["block"] == "smoke" else ""
    reference = ' data-reference=""' if r["reference_row"] else ""
    cells = [_cell(str(r["rank"]), int(r["rank"]))] if ranked else []
    folds = int(r["folds"])
    cells += [_cell(_inline(render.method_cell(r, pages)), r["method"], raw=True), _cell(family), _cell(str(folds))]
    for name, _, unit, interval in columns:
        mean = _number(r[f"{name}_mean"])
        cells.append(_cell(unit.pm(mean, _number(r[f"{name}_std"]), folds), mean))
        if interval:
            lo, hi = _number(r[f"{name}_lo"]), _number(r[f"{name}_hi"])
            bar = interval_bar(mean, lo, hi) if name == HEADLINE.name else ""
            cells.append(_cell(bar + html.escape(unit.interval(lo, hi)), lo, raw=True))
    for key in ("fps_model", "fps_end_to_end"):
        cells.append(_cell(PER_SECOND.text(_number(r[key])), _number(r[key])))
    if training:
        cells.append(_cell(", ".join(v for v in (r["recipe"], r["init"]) if v)))
    return f'<tr data-family="{html.escape(family)}"{smoke}{reference}>{"".join(cells)}</tr>'


def table_html(part: pd.DataFrame, families: dict[tuple, str], pages: set[str]) -> str:
    """One block of a section as a sortable table: every header sorts, every row says its filters."""
    ranked = part["block"].iloc[0] == "ranked"
    training = bool(part["recipe"].astype(bool).any())
    columns = render.board_columns(part)
    head = "".join(f"<th>{html.escape(t)}</th>" for t in _headers(columns, ranked, training))
    rows = [
        _row(r, columns, ranked, training, families[(r["name"], r["params_hash"], r["code"])], pages)
        for _, r in part.iterrows()
    ]
    body = "\n".join(rows)
    return f'<table class="board">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>'


def _families(section: Section) -> dict[tuple, str]:
    """(method, parameter hash, code) -> the family its card declares, keyed as the table's columns."""
    return {(r.name, r.params_hash, r.code or ""): r.first.method.family for r in section.rows}


def _filters(section: Section) -> dict[str, str]:
    p = section.protocol
    return {"dataset": section.dataset.id, "task": p.task, "regime": p.regime, "split": p.split}


def section_html(section: Section, table: pd.DataFrame, figs: list[str], pages: set[str]) -> str:
    """A section: title, notes on its data, figures, one table per block, failed runs."""
    attrs = "".join(f' data-{k}="{html.escape(v)}"' for k, v in _filters(section).items())
    parts = [f'<section class="board" id="{section.slug}"{attrs}>', f"<h3>{html.escape(section.protocol.title)}</h3>"]
    if section.leaky:
        parts.append('<p class="leaky"><strong>Leaky protocol:</strong> some patients are on both sides of the '
                     "split; these numbers overstate what a model does on new patients.</p>")  # fmt: skip
    parts.append(markdown_html("\n".join([render.environment_note(section), "", *render.test_material(section)])))
    for name in figs:
        what = name.removeprefix(f"{section.slug}-").removesuffix(".svg")
        caption = render.CAPTIONS[what]
        parts.append(f'<figure><img src="{render.FIGURES}/{name}" alt="{caption}" loading="lazy">'
                     f"<figcaption>{caption}</figcaption></figure>")  # fmt: skip
    families = _families(section)
    for block, caption in BLOCK_CAPTIONS.items():
        part = table[table["block"] == block] if len(table) else table
        if len(part):
            parts.append('<div class="block">' + (f"<p>{_inline(caption)}</p>" if caption else ""))
            parts += [table_html(part, families, pages), "</div>"]
    notes = [f"- {label}: {reason}" for label, reason in audit_failures(section)]
    notes += [f"- {name}: {n} of {total} fold(s) failed: {why}" for name, n, total, why in failures(section)]
    if notes:
        parts.append(markdown_html("Not ranked:\n\n" + "\n".join(notes)))
    return "\n".join([*parts, "</section>"])


def _select(name: str, values: Iterable[str]) -> str:
    options = "".join(f'<option value="{html.escape(v)}">{html.escape(v)}</option>' for v in sorted(set(values)))
    return f'<label>{name} <select data-filter="{name}"><option value="">all</option>{options}</select></label>'


def controls(sections: Sequence[Section]) -> str:
    """The filter bar: one choice per filter, from the values the board holds."""
    selects = "".join(_select(k, (_filters(s)[k] for s in sections)) for k in SECTION_FILTERS)
    selects += _select("family", (f for s in sections for f in _families(s).values()))
    toggle = '<label><input type="checkbox" data-filter="hide-smoke-reference"> hide smoke and reference rows</label>'
    return f'<form class="filters" onsubmit="return false">{selects}{toggle}</form>'


def index(
    sections: Sequence[Section],
    tables: dict[str, pd.DataFrame],
    figs: dict[str, list[str]],
    pages: set[str],
    source: str,
    readme: str,
    papers: Sequence[str] = (),
) -> bytes:
    """index.html: the protocol notes, the filters, every section, then what the Markdown board
    `readme` has after its sections (protocol matters, robustness, papers, published numbers) and
    links to the other `papers` pages (written from manifests of one's own)."""
    notes = render.header(source).split("\n", 2)[2]  # the Markdown's own title gives way to the page's
    body = ["<h1>bhbench leaderboard</h1>", markdown_html("\n".join(render.no_complete_breakhis(list(sections))))]
    body += [f'<details class="notes"><summary>How to read this board</summary>\n{markdown_html(notes)}</details>']
    body += [controls(sections), '<p class="empty" hidden>No row matches these filters.</p>']
    current = None
    for s in sections:
        if s.dataset.id != current:
            current = s.dataset.id
            body.append(
                f'<h2 data-dataset="{html.escape(current)}">{html.escape(render.dataset_title(s.dataset))}</h2>'
            )
        body.append(section_html(s, tables[s.slug], figs[s.slug], pages))
    body.append(markdown_html(after_sections(readme, sections)))
    if papers:
        links = "".join(f'<li><a href="{PAGES}/{name}.html">{html.escape(name)}</a></li>' for name in papers)
        body.append(f"<h2>Other paper pages</h2>\n<ul>{links}</ul>")
    return page("bhbench leaderboard", "\n".join(body))


def after_sections(readme: str, sections: Sequence[Section]) -> str:
    """The Markdown board from its first second-level heading that titles no dataset on."""
    titles = {f"## {render.dataset_title(s.dataset)}" for s in sections}
    lines = readme.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("## ") and line not in titles), len(lines))
    return "\n".join(lines[start:])


def markdown_page(text: str) -> bytes:
    """A Markdown page one folder below the site (a method or paper page) as HTML, titled by its heading."""
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    return page(first.lstrip("# ").strip() or "bhbench", markdown_html(text), root="../")


def papers(output: Path, board: dict[str, bytes]) -> dict[str, bytes]:
    """The paper pages by name: the board's, and any other the output folder holds (`bhbench paper
    --output` from a manifest of one's own)."""
    found = {p.stem: p.read_bytes() for p in sorted((output / PAGES).glob("*.md"))}
    found.update({n[len(PAGES) + 1 : -3]: b for n, b in board.items() if n.startswith(f"{PAGES}/")})
    return dict(sorted(found.items()))


def files(
    sections: Sequence[Section],
    tables: dict[str, pd.DataFrame],
    figs: dict[str, list[str]],
    board: dict[str, bytes],
    source: str,
    output: Path,
) -> dict[str, bytes]:
    """Every file of the site, by path relative to the output folder, from the board's other files
    (`board`: README.md, figures and method pages, copied or converted)."""
    reports = {n.removeprefix(f"{render.REPORTS}/").removesuffix(".md") for n in board if _is_report(n)}
    claims = papers(output, board)
    readme = board["README.md"].decode()
    own = [n for n in claims if f"{PAGES}/{n}.md" not in board]  # the board's own are linked from its README
    out = {f"{SITE}/index.html": index(sections, tables, figs, reports, source, readme, own)}
    for name, blob in board.items():
        if name.endswith(".svg"):
            out[f"{SITE}/{name}"] = blob
        elif _is_report(name):
            out[f"{SITE}/{name.removesuffix('.md')}.html"] = markdown_page(blob.decode())
    for name, blob in claims.items():
        out[f"{SITE}/{PAGES}/{name}.html"] = markdown_page(blob.decode())
    for asset in (STYLE, SCRIPT):
        out[f"{SITE}/assets/{asset}"] = (ASSETS / asset).read_bytes()
    return dict(sorted(out.items()))


def _is_report(name: str) -> bool:
    return name.startswith(f"{render.REPORTS}/") and name.endswith(".md")
