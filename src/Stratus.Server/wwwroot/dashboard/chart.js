// Inline SVG drawings: a rolling line chart, a loss curve over steps and a bar for a table cell. Drawn here rather than
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

/** Loss over steps, as `stratus plot` draws it (Training/LossCurves.cs): series of [step, loss]
 *  points, steps from 0 to the last, losses from the lowest to the highest after the first 5% of
 *  the steps (the first steps fall from ln(vocabulary) and leave through the top edge rather than
 *  squeeze the rest). A series with markers (val loss) is dashed with a dot at each point, so the
 *  two read apart without colour; the legend names them. */
export function stepChart(series, { label }) {
  const width = 400, height = 150, left = 40, right = 8, bottom = 30, top = 8;
  const plotWidth = width - left - right, plotHeight = height - top - bottom;
  const all = series.flatMap(s => s.points);
  const lastStep = Math.max(1, ...all.map(([step]) => step));
  const settled = all.filter(([step]) => step >= lastStep / 20).map(([, loss]) => loss);
  const low = Math.min(...all.map(([, loss]) => loss)), high = Math.max(low + 1e-6, ...settled);
  const x = step => (step / lastStep * plotWidth).toFixed(1);
  const y = loss => ((high - loss) / (high - low) * plotHeight).toFixed(1);
  // A nested <svg> clips what leaves the plot (the first steps' losses) without a clipPath id.
  const plot = svg("svg", { x: left, y: top, width: plotWidth, height: plotHeight, overflow: "hidden" });
  const legend = [];
  series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const d = s.points.map(([step, loss], j) => `${j === 0 ? "M" : "L"}${x(step)},${y(loss)}`).join(" ");
    plot.append(svg("path", { class: `series series-${i}`, "data-series": s.name, d, fill: "none", stroke: "currentColor",
      "stroke-width": s.markers ? 2 : 1.5, "stroke-dasharray": s.markers ? "5 3" : "none" }));
    if (s.markers)
      for (const [step, loss] of s.points)
        plot.append(svg("circle", { class: `series-${i}`, cx: x(step), cy: y(loss), r: 2.5, fill: "currentColor" }));
    const at = left + 130 * legend.length;
    legend.push(svg("line", { class: `series-${i}`, x1: at, x2: at + 18, y1: height - 6, y2: height - 6, stroke: "currentColor", "stroke-width": 2, "stroke-dasharray": s.markers ? "5 3" : "none" }),
      svg("text", { x: at + 22, y: height - 2 }, s.name));
  });
  return svg("svg", { class: "chart loss-chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label },
    svg("title", {}, label),
    svg("line", { class: "axis", x1: left, y1: top + plotHeight, x2: width - right, y2: top + plotHeight }),
    svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: top + plotHeight }),
    svg("text", { x: left - 4, y: top + 10, "text-anchor": "end" }, high.toFixed(2)),
    svg("text", { x: left - 4, y: top + plotHeight, "text-anchor": "end" }, low.toFixed(2)),
    svg("text", { x: left, y: top + plotHeight + 12 }, "step 0"),
    svg("text", { x: width - right, y: top + plotHeight + 12, "text-anchor": "end" }, `step ${lastStep}`),
    plot, ...legend);
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
