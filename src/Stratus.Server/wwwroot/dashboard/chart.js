// Inline SVG drawings: a rolling line chart, a loss curve over steps and a bar for a table cell. Drawn here rather than
// with a chart library: a few dozen lines, no dependency, and nothing to load from elsewhere.
import { integer } from "./dom.js";

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

/** Round values for an axis that spans low to high: about `count` of them, 1, 2 or 5 times a
 *  power of ten apart (`whole`: at least 1 apart, for steps), the first at or below low and the
 *  last at or above high, so that every point drawn lies between two labelled ticks. */
export function ticks(low, high, count, whole = false) {
  if (!(high > low)) high = low + (whole ? 1 : Math.abs(low) / 10 || 1);
  const rough = (high - low) / count, power = 10 ** Math.floor(Math.log10(rough));
  const spacing = Math.max(whole ? 1 : 0, [1, 2, 5, 10].map(m => m * power).find(s => s >= rough * (1 - 1e-9)));
  const first = Math.floor(low / spacing + 1e-9), last = Math.ceil(high / spacing - 1e-9);
  const decimals = Math.max(0, -Math.floor(Math.log10(spacing) + 1e-9));
  // Multiples of the spacing, rounded to its decimals: 0.1 * 3 is 0.30000000000000004.
  return Array.from({ length: last - first + 1 }, (_, i) => Number(((first + i) * spacing).toFixed(decimals)))
    .map(value => ({ value, label: whole ? integer.format(value) : value.toFixed(decimals) }));
}

/** Loss over steps: series of [step, loss] points, each axis from a round tick at or below its
 *  lowest value to one at or above its highest, every point drawn among them (the first steps'
 *  high losses too, which `stratus plot` lets leave through the top edge: here they are the
 *  ticks' range, and the rest reads from the labels). A series with markers (val loss) is dashed
 *  with a dot at each point, so the two read apart without colour; the legend names them. */
export function stepChart(series, { label }) {
  const all = series.flatMap(s => s.points);
  const steps = ticks(Math.min(...all.map(([step]) => step)), Math.max(...all.map(([step]) => step)), 5, true);
  const losses = ticks(Math.min(...all.map(([, loss]) => loss)), Math.max(...all.map(([, loss]) => loss)), 4);
  // Margins wide enough for the labels, which the chart's box would cut otherwise (a run of 5,000
  // steps lost its last step's): the losses' right of the left edge, each step's centred on its
  // tick. About 8 px a character at 12 px, a digit of DejaVu Sans (Chromium's on Linux) being 7.6.
  const room = text => text.length * 8;
  const width = 400, height = 160, bottom = 40, top = 8;
  const left = Math.max(44, 6 + Math.max(...losses.map(t => room(t.label))), room(steps[0].label) / 2);
  const right = Math.max(12, room(steps.at(-1).label) / 2);
  const plotWidth = width - left - right, plotHeight = height - top - bottom;
  const [firstStep, lastStep] = [steps[0].value, steps.at(-1).value], [low, high] = [losses[0].value, losses.at(-1).value];
  const x = step => ((step - firstStep) / (lastStep - firstStep) * plotWidth).toFixed(1);
  const y = loss => ((high - loss) / (high - low) * plotHeight).toFixed(1);
  const plot = svg("svg", { class: "plot", x: left, y: top, width: plotWidth, height: plotHeight, overflow: "visible" });
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
  const bottomEdge = top + plotHeight;
  const xTicks = steps.flatMap(({ value, label: text }) => {
    const at = left + Number(x(value));
    return [svg("line", { class: "axis", x1: at, x2: at, y1: bottomEdge, y2: bottomEdge + 4 }),
      svg("text", { class: "tick-step", x: at, y: bottomEdge + 15, "text-anchor": "middle" }, text)];
  });
  const yTicks = losses.flatMap(({ value, label: text }) => {
    const at = top + Number(y(value));
    return [svg("line", { class: "axis", x1: left - 4, x2: left, y1: at, y2: at }),
      svg("text", { class: "tick-loss", x: left - 6, y: at + 4, "text-anchor": "end" }, text)];
  });
  return svg("svg", { class: "chart loss-chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label },
    svg("title", {}, label),
    svg("line", { class: "axis", x1: left, y1: bottomEdge, x2: width - right, y2: bottomEdge }),
    svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: bottomEdge }),
    ...xTicks, ...yTicks,
    svg("text", { x: width - right, y: bottomEdge + 27, "text-anchor": "end" }, "step"),
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
