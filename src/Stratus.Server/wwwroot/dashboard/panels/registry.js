// The model registry (GET /api/models: every name with its versions, in one request): every
// version with its aliases, the model it holds, when and by whom it was registered. Whether
// this server serves a name comes from GET /v1/models: a served model carries its registered name
// (`serve --model shk@production` serves "shk"), but the server does not say which version it
// loaded, so the panel says which names are served, not which versions.
import { el, table, time, integer, state } from "../dom.js";

export default {
  id: "registry",
  title: "Model registry",
  refreshSeconds: 30,
  wide: true,
  async render(get) {
    const [registry, served] = await Promise.all([get("/api/models"), get("/v1/models")]);
    const servedIds = new Set(served.data.map(m => m.id));
    const registered = registry.data;
    const versions = registered.flatMap(m => m.versions.map(v => ({ ...v, name: m.name })).reverse());
    const servedNames = registered.map(m => m.name).filter(name => servedIds.has(name));
    return [
      el("p", { id: "registry-served" }, servedNames.length === 0
        ? "No registered name is served here."
        : ["Served here under their registered name: ", ...servedNames.flatMap((name, i) => [i ? ", " : "", el("code", {}, name)]),
          " (which version, the server does not say)."]),
      table("Registered versions, newest first per name", [
        { label: "Name", value: v => el("code", { class: "registered-name" }, v.name) },
        { label: "Version", value: v => v.version, number: true },
        { label: "Aliases", value: v => v.aliases.length ? v.aliases.flatMap((a, i) => [i ? ", " : "", el("code", {}, a)]) : "—" },
        { label: "Model", value: v => `${v.architecture}, ${integer.format(v.parameters)} parameters, context ${integer.format(v.context_length)}, ${v.tokenizer} tokenizer` },
        { label: "Description", value: v => v.description ?? "" },
        { label: "Created", value: v => time(v.created_at) },
        { label: "By", value: v => v.created_by },
        { label: "Served here", value: v => servedIds.has(v.name) ? state(true, "its name") : "no" },
        { label: "Checkpoint", value: v => el("code", { class: "details" }, v.checkpoint) },
      ], versions, "No model is registered. Register one with `stratus models register <run> --name <name>`."),
    ];
  },
};
