// The API keys that work (GET /v1/admin/keys): names, scopes, limits and expiry. The API never
// returns a secret after its creation, so none can appear here.
import { el, table, time, integer } from "../dom.js";

function limit(value) {
  return value === 0 ? "unlimited" : integer.format(value);
}

export default {
  id: "keys",
  title: "API keys",
  scope: "admin",
  refreshSeconds: 30,
  // Seven columns, two of them times: in half the page at 1280 px the last ones lay beyond the
  // panel's edge, behind a scroll bar.
  wide: true,
  async render(get) {
    const keys = await get("/v1/admin/keys");
    return [
      table("Active keys", [
        { label: "Name", value: k => k.name },
        { label: "Id", value: k => el("code", {}, k.id) },
        { label: "Scopes", value: k => k.scopes.join(", ") },
        { label: "Requests/min", value: k => limit(k.rpm), number: true },
        { label: "Tokens/min", value: k => limit(k.tpm), number: true },
        { label: "Created", value: k => time(k.created_at) },
        { label: "Expires", value: k => k.expires_at ? time(k.expires_at) : "never" },
      ], keys.data, "No active key."),
    ];
  },
};
