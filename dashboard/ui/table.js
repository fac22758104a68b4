/**
 * A table that stays usable with thousands of rows: a filter box (every word
 * must appear in the row's text), sorting by a column (click its head), and
 * pages of `pageSize` rows. Only the rows of the page are in the DOM.
 *
 * Columns: `{ title, field, text(row), value?(row), cell?(td, row), numeric? }`;
 * `text` is what the cell shows and what the filter searches, `value` what
 * sorting compares (default: `text`), `cell` may decorate the cell. Each row is
 * a `<tr data-key=KEY>`, each cell a `<td data-field=FIELD>`.
 */
export class PagedTable {
  #columns;
  #key;
  #pageSize;
  #rows = [];
  #page = 0;
  #sort = null;
  #filter = "";
  #body;
  #counter;
  #pageLabel;
  #previous;
  #next;

  constructor(root, { columns, key, pageSize = 50, placeholder = "filter", sort = null }) {
    this.#columns = columns;
    this.#key = key;
    this.#pageSize = pageSize;
    this.#sort = sort;
    root.classList.add("paged-table");
    const tools = element("div", { className: "tools" });
    const filter = element("input", { type: "search", className: "filter", placeholder });
    filter.addEventListener("input", () => {
      this.#filter = filter.value.trim().toLowerCase();
      this.#page = 0;
      this.render();
    });
    this.#counter = element("span", { className: "count" });
    this.#previous = element("button", { type: "button", className: "previous", textContent: "‹" });
    this.#next = element("button", { type: "button", className: "next", textContent: "›" });
    this.#pageLabel = element("span", { className: "page" });
    this.#previous.addEventListener("click", () => this.#turn(-1));
    this.#next.addEventListener("click", () => this.#turn(1));
    tools.append(filter, this.#counter, this.#previous, this.#pageLabel, this.#next);
    const head = element("tr");
    for (const column of columns) {
      const th = element("th", { textContent: column.title, title: "sort" });
      if (column.numeric) th.classList.add("numeric");
      th.addEventListener("click", () => {
        const descending = this.#sort?.field === column.field ? !this.#sort.descending : false;
        this.#sort = { field: column.field, descending };
        this.render();
      });
      head.append(th);
    }
    this.#body = element("tbody");
    const table = element("table");
    table.append(element("thead"), this.#body);
    table.tHead.append(head);
    root.replaceChildren(tools, table);
  }

  /** Shows `rows` (the whole list; the table filters, sorts and pages it). */
  update(rows) {
    this.#rows = rows;
    this.render();
  }

  render() {
    const words = this.#filter.split(/\s+/).filter((word) => word !== "");
    const shown = words.length === 0 ? [...this.#rows] : this.#rows.filter((row) => {
      const text = this.#columns.map((column) => column.text(row)).join(" ").toLowerCase();
      return words.every((word) => text.includes(word));
    });
    if (this.#sort !== null) this.#sortRows(shown);
    const pages = Math.max(1, Math.ceil(shown.length / this.#pageSize));
    this.#page = Math.min(this.#page, pages - 1);
    const start = this.#page * this.#pageSize;
    const rows = shown.slice(start, start + this.#pageSize).map((row) => this.#rowOf(row));
    this.#body.replaceChildren(...rows);
    this.#counter.textContent = shown.length === this.#rows.length
      ? `${this.#rows.length} rows`
      : `${shown.length} of ${this.#rows.length} rows`;
    this.#pageLabel.textContent = `page ${this.#page + 1} of ${pages}`;
    this.#previous.disabled = this.#page === 0;
    this.#next.disabled = this.#page >= pages - 1;
  }

  #turn(by) {
    this.#page += by;
    this.render();
  }

  #sortRows(rows) {
    const column = this.#columns.find((one) => one.field === this.#sort.field);
    if (column === undefined) return;
    const valueOf = column.value ?? column.text;
    const sign = this.#sort.descending ? -1 : 1;
    rows.sort((a, b) => {
      const [x, y] = [valueOf(a), valueOf(b)];
      if (typeof x === "number" && typeof y === "number") return sign * (x - y);
      return sign * String(x).localeCompare(String(y), "en", { numeric: true });
    });
  }

  #rowOf(row) {
    const tr = element("tr");
    tr.dataset.key = this.#key(row);
    for (const column of this.#columns) {
      const td = element("td", { textContent: column.text(row) });
      td.dataset.field = column.field;
      if (column.numeric) td.classList.add("numeric");
      column.cell?.(td, row);
      tr.append(td);
    }
    return tr;
  }
}

/** `document.createElement(tag)` with properties set. */
export function element(tag, properties = {}) {
  return Object.assign(document.createElement(tag), properties);
}
