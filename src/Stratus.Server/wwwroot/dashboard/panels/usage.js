// Usage per key, model and day over the last 30 days (GET /v1/usage), newest first, each row's
// tokens drawn as a bar; keys named from GET /v1/admin/keys (revoked ones too).
import { el, table, integer } from "../dom.js";
import { bar } from "../chart.js";

export default {
  id: "usage",
  title: "Usage per key and day",
  scope: "admin",
  refreshSeconds: 30,
  wide: true,
  async render(get) {
    const [usage, keys] = await Promise.all([get("/v1/usage"), get("/v1/admin/keys?include_revoked=true")]);
    const names = new Map(keys.data.map(k => [k.id, k.name]));
    const rows = [...usage.data].reverse();
    const most = Math.max(0, ...rows.map(r => r.total_tokens));
    return [
      table("Tokens by key, model and day (UTC), last 30 days", [
        { label: "Day", value: r => r.day },
        { label: "Key", value: r => names.get(r.key_id) ?? r.key_id },
        { label: "Model", value: r => el("code", {}, r.model) },
        { label: "Requests", value: r => integer.format(r.requests), number: true },
        { label: "Prompt", value: r => integer.format(r.prompt_tokens), number: true },
        { label: "Completion", value: r => integer.format(r.completion_tokens), number: true },
        { label: "Total", value: r => integer.format(r.total_tokens), number: true },
        { label: "", value: r => bar(r.total_tokens, most) },
      ], rows, "No usage in the last 30 days."),
    ];
  },
};
