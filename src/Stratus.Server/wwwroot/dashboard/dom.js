// Small helpers that build the page's elements. Text always goes in as text nodes, never as
// HTML: key names, audit details and model names are shown, not interpreted.

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes))
    if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value === true ? "" : String(value));
  for (const child of children.flat())
    if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
  return node;
}

/** A table with a caption; columns are { label, value(row), number? }. On a narrow screen it
 *  scrolls sideways in a region that the keyboard can reach (and scroll) too. */
export function table(caption, columns, rows, empty = "None yet.") {
  if (rows.length === 0) return el("p", {}, empty);
  return el("div", { class: "table-scroll", tabindex: 0, role: "region", "aria-label": caption },
    el("table", {},
      el("caption", {}, caption),
      el("thead", {}, el("tr", {}, columns.map(c => el("th", { scope: "col", class: c.number ? "number" : null }, c.label)))),
      el("tbody", {}, rows.map(row => el("tr", {}, columns.map(c => el("td", { class: c.number ? "number" : null }, c.value(row))))))));
}

/** Figures as a description list: [label, value, id?]. */
export function figures(items) {
  return el("dl", { class: "figures" },
    items.map(([label, value, id]) => el("div", {}, el("dt", {}, label), el("dd", { id }, value))));
}

export const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
export const decimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

/** An instant as UTC to the second, "2026-01-05 14:03:27 UTC", in every panel alike (the browser's
 *  locale printed it without a zone, which reads differently from each operator's screen, and
 *  apart from the server's logs and the CLI's times, which are UTC); the exact instant is its
 *  title and datetime. A time of day alone where the day goes without saying. */
export function time(iso, { dayless = false } = {}) {
  if (!iso) return "—";
  const exact = new Date(iso).toISOString();
  const shown = exact.replace("T", " ").slice(dayless ? 11 : 0, 19) + " UTC";
  return el("time", { datetime: exact, title: exact }, shown);
}

/** A state in words with a mark, so it does not depend on colour. */
export function state(ok, text) {
  return el("span", { class: ok ? "state-ok" : "state-bad" }, text);
}

/** An actor as the audit log records it (cli:<user>, or a key's id) with the name the API gives a
 *  key (actor_name, submitted_by_name, cancel_requested_by_name): a key by its name, its id beside
 *  it; another actor as it is. */
export function actor(id, name) {
  return name ? [name, " ", el("code", {}, `(${id})`)] : id;
}
