// The leaderboard site's only script: click a column title to sort its table, choose filters to
// hide sections and rows. Cells may carry data-sort, the value to order by; else their text.
"use strict";

function sortKey(cell) {
  const raw = cell.dataset.sort ?? cell.textContent.trim();
  const number = parseFloat(raw);
  return raw !== "" && !Number.isNaN(number) && /^[-+\d.]/.test(raw) ? number : raw.toLowerCase();
}

function compare(a, b) {
  if (a === "" || b === "") return (a === "") - (b === ""); // empty cells last either way
  if (typeof a === typeof b) return a < b ? -1 : a > b ? 1 : 0;
  return typeof a === "number" ? -1 : 1;
}

function sortBy(th) {
  const table = th.closest("table");
  const column = [...th.parentNode.children].indexOf(th);
  const descending = th.getAttribute("aria-sort") === "ascending";
  table.querySelectorAll("th[aria-sort]").forEach((h) => h.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", descending ? "descending" : "ascending");
  const body = table.tBodies[0];
  const rows = [...body.rows].map((row) => [sortKey(row.cells[column]), row]);
  rows.sort((x, y) => {
    const order = compare(x[0], y[0]);
    return descending && x[0] !== "" && y[0] !== "" ? -order : order;
  });
  rows.forEach(([, row]) => body.appendChild(row));
}

function applyFilters(form) {
  const chosen = {};
  form.querySelectorAll("select").forEach((s) => { if (s.value) chosen[s.dataset.filter] = s.value; });
  const hideExtra = form.querySelector("[data-filter=hide-smoke-reference]").checked;
  let any = false;
  document.querySelectorAll("section.board").forEach((section) => {
    const fits = ["dataset", "task", "regime", "split"].every((k) => !chosen[k] || section.dataset[k] === chosen[k]);
    let shown = 0;
    section.querySelectorAll("div.block").forEach((block) => {
      let rows = 0;
      block.querySelectorAll("tbody tr").forEach((tr) => {
        const extra = "smoke" in tr.dataset || "reference" in tr.dataset;
        tr.hidden = !fits || (chosen.family && tr.dataset.family !== chosen.family) || (hideExtra && extra);
        rows += tr.hidden ? 0 : 1;
      });
      block.hidden = rows === 0;
      shown += rows;
    });
    section.hidden = shown === 0;
    any = any || shown > 0;
  });
  document.querySelectorAll("h2[data-dataset]").forEach((h) => {
    h.hidden = !document.querySelector(`section.board[data-dataset="${h.dataset.dataset}"]:not([hidden])`);
  });
  document.querySelector("p.empty").hidden = any;
}

document.querySelectorAll("main table thead th").forEach((th) => th.addEventListener("click", () => sortBy(th)));
const filters = document.querySelector("form.filters");
if (filters) filters.addEventListener("change", () => applyFilters(filters));
