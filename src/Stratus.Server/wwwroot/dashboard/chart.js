// Inline SVG drawings: a rolling line chart and a bar for a table cell. Drawn here rather than
// with a chart library: a few dozen lines, no dependency, and nothing to load from elsewhere.

const svgNs = "http://www.w3.org/2000/svg";

function svg(tag, attributes, ...children) {
  const node = document.createElementNS(svgNs, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  node.append(...children);
  return node;
}

/** A line through values (oldest first, drawn to the right edge as the newest), scaled to their
 *  maximum, with the maximum and the span labelled; label describes it to a screen reader. */
export function lineChart(values, { label, span, unit }) {
  const width = 400, height = 110, left = 36, bottom = 18, top = 8;
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? (width - left) / (values.length - 1) : 0;
  const points = values.map((v, i) => `${(left + i * step).toFixed(1)},${(top + (height - bottom - top) * (1 - v / max)).toFixed(1)}`);
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label },
    svg("title", {}, label),
    svg("line", { class: "axis", x1: left, y1: height - bottom, x2: width, y2: height - bottom }),
    svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: height - bottom }),
    svg("text", { x: left - 4, y: top + 10, "text-anchor": "end" }, formatShort(max)),
    svg("text", { x: left - 4, y: height - bottom, "text-anchor": "end" }, "0"),
    svg("text", { x: left, y: height - 4 }, `${span} ago`),
    svg("text", { x: width, y: height - 4, "text-anchor": "end" }, `now (${unit})`));
  if (points.length > 0)
    chart.append(svg("polyline", { points: points.join(" "), fill: "none", stroke: "currentColor", "stroke-width": 2, "stroke-linejoin": "round" }));
  return chart;
}

/** A horizontal bar, value/max of its width, for a table row; the number beside it says the value. */
export function bar(value, max) {
  const fraction = max > 0 ? Math.max(0, Math.min(1, value / max)) : 0;
  return svg("svg", { class: "bar", viewBox: "0 0 100 10", preserveAspectRatio: "none", "aria-hidden": "true" },
    svg("rect", { x: 0, y: 0, width: (100 * fraction).toFixed(1), height: 10, fill: "currentColor" }));
}

function formatShort(value) {
  return value >= 1000 ? `${(value / 1000).toFixed(1)}k` : value >= 10 ? value.toFixed(0) : value.toFixed(1);
}
