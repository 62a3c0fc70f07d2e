// The model registry (GET /api/models: every name with its versions, in one request): every
// version with its aliases, the model it holds, when and by whom it was registered. What this
// server serves comes from GET /v1/models: a model served by reference (`serve --model
// shk@production`) carries the version it loaded (`registered_version`, "shk:3"), so the panel marks
// that version; one served from a folder under a registered name is only that name, whichever
// version's files the folder holds.
import { el, table, time, integer, state } from "../dom.js";

export default {
  id: "registry",
  title: "Model registry",
  scope: "admin",
  refreshSeconds: 30,
  wide: true,
  async render(get) {
    const [registry, served] = await Promise.all([get("/api/models"), get("/v1/models")]);
    // "shk:3" -> the id it is served as; and the ids of models served from folders.
    const servedVersions = new Map(served.data.filter(m => m.registered_version).map(m => [m.registered_version, m.id]));
    const servedFolders = new Set(served.data.filter(m => !m.registered_version).map(m => m.id));
    const registered = registry.data;
    const versions = registered.flatMap(m => m.versions.map(v => ({ ...v, name: m.name })).reverse());
    const folderNames = registered.map(m => m.name).filter(name => servedFolders.has(name));
    const list = items => items.flatMap((item, i) => [i ? ", " : "", ...item]);
    const servedHere = v => {
      const id = servedVersions.get(`${v.name}:${v.version}`);
      if (id !== undefined) return state(true, id === v.name ? "this version" : `this version, as ${id}`);
      return servedFolders.has(v.name) ? "its name, from a folder" : "no";
    };
    return [
      el("p", { id: "registry-served" }, servedVersions.size === 0 && folderNames.length === 0
        ? "No registered version is served here."
        : [
          ...(servedVersions.size ? ["Served here: ", ...list([...servedVersions].map(([version, id]) =>
            [el("code", {}, version), ...(id === version.slice(0, version.lastIndexOf(":")) ? [] : [" as ", el("code", {}, id)])])), ". "] : []),
          ...(folderNames.length ? ["Served from a folder under a registered name (which version's files, the server does not know): ",
            ...list(folderNames.map(name => [el("code", {}, name)])), "."] : []),
        ]),
      table("Registered versions, newest first per name", [
        { label: "Name", value: v => el("code", { class: "registered-name" }, v.name) },
        { label: "Version", value: v => v.version, number: true },
        { label: "Aliases", value: v => v.aliases.length ? v.aliases.flatMap((a, i) => [i ? ", " : "", el("code", {}, a)]) : "—" },
        { label: "Model", value: v => `${v.architecture}, ${integer.format(v.parameters)} parameters, context ${integer.format(v.context_length)}, ${v.tokenizer} tokenizer` },
        { label: "Description", value: v => v.description ?? "" },
        { label: "Created", value: v => time(v.created_at) },
        { label: "By", value: v => v.created_by },
        { label: "Served here", value: servedHere },
        { label: "Checkpoint", value: v => el("code", { class: "details" }, v.checkpoint) },
      ], versions, "No model is registered. Register one with `stratus models register <run> --name <name>`."),
    ];
  },
};
