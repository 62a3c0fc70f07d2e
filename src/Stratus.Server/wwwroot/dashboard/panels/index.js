// The dashboard's panels, in the order the page shows them. A panel is a module whose default
// export is
//   { id, title, scope, refreshSeconds, wide?, render(api, own) }
// where scope is the key scope every request of the panel needs (the page shows a panel only to a
// key granted it: GET /api/key's granted_scopes), and render calls api("/v1/...") (the API, with the operator's key; it throws an ApiError
// carrying the API's message and the field at fault; api(path, { method: "POST", body }) sends)
// and returns the nodes to show below the title. own is the panel's for as long as it is shown:
// nodes it returns again at the same place are kept as they are (a form keeps what was typed and
// its focus), and own.refresh() draws the panel again now. dashboard.js draws each panel's frame,
// refreshes it every refreshSeconds and shows its errors. To add a panel, write its module beside
// these and list it here.
import models from "./models.js";
import serving from "./serving.js";
import usage from "./usage.js";
import audit from "./audit.js";
import keys from "./keys.js";
import jobs from "./jobs.js";
import registry from "./registry.js";

export const panels = [models, serving, usage, audit, keys, jobs, registry];
