// The page's controller: takes the operator's key (kept in sessionStorage, for this tab only;
// never in the URL or localStorage), checks it against an admin endpoint, then draws each panel
// of panels/index.js in a frame of its own and refreshes it on its own timer. A refused key
// shows the API's message and the scope the dashboard needs.
import { ApiError, createApi, describe } from "./api.js";
import { el } from "./dom.js";
import { panels } from "./panels/index.js";

const storageKey = "stratus-dashboard-key";
const form = document.getElementById("key-form");
const input = document.getElementById("api-key");
const forget = document.getElementById("forget-key");
const status = document.getElementById("key-status");
const main = document.getElementById("panels");
let timers = [];

function say(text, isError) {
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function stop() {
  for (const timer of timers) clearTimeout(timer);
  timers = [];
  main.replaceChildren();
}

/** The key no longer works (wrong, revoked, expired, short of scope): show why and stop asking
 *  with it, so that a page left open does not send a refused request every few seconds (each one
 *  a line in the server's log) for as long as it stays open. */
function refuse(error) {
  stop();
  sessionStorage.removeItem(storageKey);
  forget.hidden = true;
  say(describe(error), true);
}

function show(panel, get) {
  const body = el("div", { class: "body" }, el("p", {}, "Loading…"));
  const updated = el("p", { class: "updated" });
  main.append(el("section", { class: panel.wide ? "panel wide" : "panel", id: `panel-${panel.id}`, "aria-labelledby": `panel-${panel.id}-title` },
    el("h2", { id: `panel-${panel.id}-title` }, panel.title), body, updated));
  const index = timers.length;
  timers.push(0);
  const refresh = async () => {
    let wait = panel.refreshSeconds;
    try {
      body.replaceChildren(...await panel.render(get));
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}, every ${panel.refreshSeconds} s.`;
    } catch (error) {
      if (!body.isConnected) return;
      if (error instanceof ApiError && error.refusesKey) {
        refuse(error);
        return;
      }
      // Rate limited (or the server busy): wait as long as it asks, rather than spend the key's
      // requests on refusals.
      if (error instanceof ApiError && error.retryAfterSeconds > wait) wait = error.retryAfterSeconds;
      const again = wait > panel.refreshSeconds ? ` Asking again in ${wait} s.` : "";
      body.replaceChildren(el("p", { class: "error", role: "alert" }, describe(error) + again));
    }
    // Unless the key was forgotten (or replaced) meanwhile.
    if (timers[index] !== undefined && body.isConnected) timers[index] = setTimeout(refresh, wait * 1000);
  };
  refresh();
}

async function start(key) {
  stop();
  const get = createApi(key);
  try {
    // Any admin endpoint tells whether the key will do, before the panels ask theirs.
    await get("/api/serving");
  } catch (error) {
    refuse(error);
    return;
  }
  sessionStorage.setItem(storageKey, key);
  forget.hidden = false;
  say("Showing this server with the key given (kept in this tab only).", false);
  for (const panel of panels) show(panel, get);
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
  say("Key forgotten. Paste an admin key to show this server again.", false);
  input.focus();
});

const kept = sessionStorage.getItem(storageKey);
if (kept) start(kept);
