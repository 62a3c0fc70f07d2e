// The page's controller: takes the operator's key (kept in sessionStorage, for this tab only;
// never in the URL or localStorage), asks the server what it grants (GET /api/key), then draws each
// panel of panels/index.js that the key's scopes allow in a frame of its own (a training key: the
// training jobs; an admin key: every panel) and refreshes it on its own timer, while the tab is
// shown: a tab in the background asks nothing, and asks again at once when it is shown. A panel the
// key may not see is not drawn, so the page asks for nothing the server would refuse it (which
// refuses it all the same: a 403). A refused key, or one no panel is for, shows the API's message
// and the scopes the dashboard needs.
import { ApiError, createApi, describe, scopesNeeded } from "./api.js";
import { el, time } from "./dom.js";
import { panels } from "./panels/index.js";

const storageKey = "stratus-dashboard-key";
const form = document.getElementById("key-form");
const input = document.getElementById("api-key");
const forget = document.getElementById("forget-key");
const status = document.getElementById("key-status");
const main = document.getElementById("panels");
// The panels shown: each one's refresh, its timer, whether a refresh is under way, and the
// earliest time it may ask again (a server's Retry-After), on the page's monotonic clock
// (performance.now): the wall clock steps (NTP, a machine resumed), and a step forward had a
// panel ask before the server's Retry-After, one back a tab shown again wait as long as the step.
let shown = [];

function say(text, isError) {
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function stop() {
  for (const panel of shown) clearTimeout(panel.timer);
  shown = [];
  main.replaceChildren();
}

/** Asks again after a wait, unless the tab is hidden: it then asks once it is shown. */
function schedule(panel, milliseconds) {
  clearTimeout(panel.timer);
  if (!document.hidden) panel.timer = setTimeout(panel.refresh, milliseconds);
}

document.addEventListener("visibilitychange", () => {
  for (const panel of shown) {
    if (document.hidden) clearTimeout(panel.timer);
    // One under way schedules its next when it ends.
    else if (!panel.busy) schedule(panel, Math.max(0, panel.notBefore - performance.now()));
  }
});

/** The key no longer works (wrong, revoked, expired, short of scope): show why and stop asking
 *  with it, so that a page left open does not send a refused request every few seconds (each one
 *  a line in the server's log) for as long as it stays open. */
function refuse(error) {
  stop();
  sessionStorage.removeItem(storageKey);
  forget.hidden = true;
  say(describe(error), true);
}

/** Puts nodes in parent in their order, moving none already in its place: a node a panel keeps
 *  across refreshes (a form being typed in) keeps its focus and what was typed. Focus on a node
 *  made anew (a row's Cancel button, a table) moves to its successor, the node of the same id or
 *  label, so that a refresh does not throw a keyboard user back to the page's start. */
function replaceKeeping(parent, nodes) {
  const focused = parent.contains(document.activeElement) ? document.activeElement : null;
  const successor = focused?.id ? `[id="${CSS.escape(focused.id)}"]`
    : focused?.getAttribute("aria-label") ? `[aria-label="${CSS.escape(focused.getAttribute("aria-label"))}"]` : null;
  for (const child of [...parent.childNodes]) if (!nodes.includes(child)) child.remove();
  nodes.forEach((node, i) => { if (parent.childNodes[i] !== node) parent.insertBefore(node, parent.childNodes[i] ?? null); });
  if (successor && !focused.isConnected) parent.querySelector(successor)?.focus();
}

function show(panel, get) {
  const body = el("div", { class: "body" }, el("p", {}, "Loading…"));
  const updated = el("p", { class: "updated" });
  main.append(el("section", { class: panel.wide ? "panel wide" : "panel", id: `panel-${panel.id}`, "aria-labelledby": `panel-${panel.id}-title` },
    el("h2", { id: `panel-${panel.id}-title` }, panel.title), body, updated));
  const state = { timer: 0, busy: false, notBefore: 0, again: false };
  shown.push(state);
  // The panel's own for as long as it is shown: nodes it keeps across refreshes, and a refresh now
  // (after a change it made), which waits for one under way.
  const own = { refresh: () => { if (state.busy) state.again = true; else state.refresh(); } };
  state.refresh = async () => {
    let wait = panel.refreshSeconds, retryAfter = 0;
    state.busy = true;
    state.again = false;
    try {
      replaceKeeping(body, await panel.render(get, own));
      updated.replaceChildren("Updated ", time(new Date().toISOString(), { dayless: true }), `, every ${panel.refreshSeconds} s.`);
    } catch (error) {
      if (!body.isConnected) return;
      if (error instanceof ApiError && error.refusesKey) {
        refuse(error);
        return;
      }
      // Rate limited (or the server busy): wait as long as it asks, rather than spend the key's
      // requests on refusals.
      if (error instanceof ApiError && error.retryAfterSeconds > 0) retryAfter = error.retryAfterSeconds;
      wait = Math.max(wait, retryAfter);
      const again = wait > panel.refreshSeconds ? ` Asking again in ${wait} s.` : "";
      body.replaceChildren(el("p", { class: "error", role: "alert" }, describe(error) + again));
    } finally {
      state.busy = false;
    }
    // Kept for a tab shown again before it passed, however short it was beside the period.
    state.notBefore = performance.now() + retryAfter * 1000;
    // Unless the key was forgotten (or replaced) meanwhile.
    if (shown.includes(state) && body.isConnected) schedule(state, state.again && !retryAfter ? 0 : wait * 1000);
  };
  state.refresh();
}

async function start(key) {
  stop();
  const get = createApi(key);
  let caller;
  try {
    caller = await get("/api/key");
  } catch (error) {
    refuse(error);
    return;
  }
  const granted = new Set(caller.granted_scopes);
  const allowed = panels.filter(panel => granted.has(panel.scope));
  const named = caller.name ? `Key ${caller.name} (${caller.scopes.join(", ")})` : "This server's keys";
  if (allowed.length === 0) {
    sessionStorage.removeItem(storageKey);
    forget.hidden = true;
    say(`${named} may see no panel of this dashboard. ${scopesNeeded}`, true);
    return;
  }
  sessionStorage.setItem(storageKey, key);
  forget.hidden = false;
  say(allowed.length === panels.length
    ? "Showing this server with the key given (kept in this tab only)."
    : `${named} may see ${allowed.map(panel => panel.title.toLowerCase()).join(", ")}; the other panels need the admin scope. The key is kept in this tab only.`, false);
  for (const panel of allowed) show(panel, get);
}

form.addEventListener("submit", event => {
  event.preventDefault();
  const key = input.value.trim();
  input.value = "";
  start(key);
});

forget.addEventListener("click", () => {
  sessionStorage.removeItem(storageKey);
  stop();
  forget.hidden = true;
  say("Key forgotten. Paste a key to show this server again.", false);
  input.focus();
});

const kept = sessionStorage.getItem(storageKey);
if (kept) start(kept);
