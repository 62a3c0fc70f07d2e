// The served models (GET /v1/models), where each runs and whether its engine serves
// (GET /api/serving), and whether the server as a whole is ready (GET /ready).
import { describe } from "../api.js";
import { el, table, integer, state } from "../dom.js";

export default {
  id: "models",
  title: "Served models",
  scope: "admin",
  refreshSeconds: 10,
  async render(get) {
    const [list, serving, ready] = await Promise.all([
      get("/v1/models"),
      get("/api/serving"),
      get("/ready").then(() => null, error => describe(error)),
    ]);
    const figures = new Map(serving.models.map(m => [m.id, m]));
    return [
      el("p", { id: "server-ready" }, "Server: ", ready === null ? state(true, "ready") : state(false, `not ready: ${ready}`)),
      table("Models this server serves", [
        { label: "Model", value: m => el("code", { class: "model-id" }, m.id) },
        { label: "Context (tokens)", value: m => integer.format(m.max_model_len), number: true },
        { label: "Device", value: m => figures.get(m.id)?.device ?? "—" },
        { label: "Engine", value: m => figures.has(m.id) ? state(figures.get(m.id).healthy, figures.get(m.id).healthy ? "serving" : "failing") : "—" },
      ], list.data, "No model is served."),
    ];
  },
};
