// Live serving figures from GET /api/serving (the numbers /metrics exports): sequences running
// and waiting, tokens generated per second with a rolling chart, KV-cache use per model, and
// requests by outcome. Rates come from two snapshots' counters and the server's clock.
import { el, table, figures, integer, decimal } from "../dom.js";
import { lineChart } from "../chart.js";

const refreshSeconds = 2;
const points = 60;
const history = [];
let previous = null;

function sum(models, field) {
  return models.reduce((total, m) => total + m[field], 0);
}

export default {
  id: "serving",
  title: "Live serving",
  scope: "admin",
  refreshSeconds,
  wide: true,
  async render(get) {
    const now = await get("/api/serving");
    const generated = sum(now.models, "generation_tokens");
    // A counter that went down is a restarted server: no rate across it.
    const rate = previous && now.time > previous.time && generated >= previous.generated
      ? (generated - previous.generated) / (now.time - previous.time) : 0;
    previous = { time: now.time, generated };
    history.push(rate);
    if (history.length > points) history.shift();
    const span = `${Math.round((history.length - 1) * refreshSeconds)} s`;
    return [
      figures([
        ["Running sequences", integer.format(sum(now.models, "running")), "sequences-running"],
        ["Waiting sequences", integer.format(sum(now.models, "waiting")), "sequences-waiting"],
        ["Tokens/s generated", decimal.format(rate), "tokens-per-second"],
        ["Tokens generated", integer.format(generated), "tokens-generated"],
        ["Prompt tokens", integer.format(sum(now.models, "prompt_tokens")), "prompt-tokens"],
      ]),
      lineChart(history, { label: `Tokens generated per second over the last ${span}; now ${decimal.format(rate)}`, span, unit: "tokens/s" }),
      table("KV cache and batch, per model", [
        { label: "Model", value: m => el("code", {}, m.id) },
        { label: "KV cache in use", value: m => [el("meter", { min: 0, max: 1, value: m.kv_cache_usage, "aria-label": `KV cache of ${m.id}` }), ` ${decimal.format(100 * m.kv_cache_usage)}%`] },
        { label: "Running", value: m => integer.format(m.running), number: true },
        { label: "Waiting", value: m => integer.format(m.waiting), number: true },
        { label: "Max decode batch", value: m => integer.format(m.max_decode_batch_size), number: true },
      ], now.models, "No model is served."),
      table("Requests by outcome, since the server started", [
        { label: "Outcome", value: ([outcome]) => outcome },
        { label: "Requests", value: ([, count]) => integer.format(count), number: true },
      ], Object.entries(now.requests), "No request has ended yet."),
    ];
  },
};
