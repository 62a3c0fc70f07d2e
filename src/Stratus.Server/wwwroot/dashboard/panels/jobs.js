// Training jobs (GET /api/jobs: the training scope, which an admin key has too), newest first,
// as `stratus jobs list` shows them, and the loss curve of one of them from its run's
// metrics.jsonl (GET /api/jobs/{id}/metrics), drawn as `stratus plot` draws it: training loss at
// every step, val loss at every evaluation. A job's curve is fetched whole (thinned) once, then
// in increments: the rows written since the cursor of the last answer. Read-only, as the whole
// dashboard: cancelling is `stratus jobs cancel` or the API's.
import { ApiError, describe } from "../api.js";
import { el, table, time, integer } from "../dom.js";
import { stepChart } from "../chart.js";

// Marks beside the state's word, so states read apart without colour.
const marks = { queued: "◷", running: "▶", succeeded: "✔", failed: "✖", cancelled: "■" };
// Each job's rows fetched so far, and the cursor to ask for the rows written since; a curve grown
// past keptRows is fetched whole (and thinned) again.
const curves = new Map();
const keptRows = 4000;
let chosen = null;

function duration(job) {
  if (!job.started_at) return "—";
  const seconds = Math.max(0, ((job.ended_at ? new Date(job.ended_at) : new Date()) - new Date(job.started_at)) / 1000);
  const h = Math.floor(seconds / 3600), m = Math.floor(seconds / 60) % 60, s = Math.floor(seconds) % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : m > 0 ? `${m}m${String(s).padStart(2, "0")}s` : `${s}s`;
}

/** The step of the last training row held, as the job's last_step counts it; null before any. */
function lastTrainingStep(rows) {
  for (let i = rows.length - 1; i >= 0; i--) if (typeof rows[i].train_loss === "number") return rows[i].step;
  return null;
}

/** The job's rows: the whole (thinned) series the first time, then those written since, while it
 *  runs. An ended job's are asked for again only where its last step moved (its run trained on
 *  with `stratus train --resume`). An answer that says "reset" (the file was rewritten: a run
 *  resumed from an earlier checkpoint drops the steps after it) replaces what is held. */
async function rows(get, job) {
  const path = `/api/jobs/${encodeURIComponent(job.id)}/metrics`;
  const held = curves.get(job.id);
  const running = ["queued", "running"].includes(job.state);
  if (held && !running && lastTrainingStep(held.rows) === (job.last_step?.step ?? null)) return held.rows;
  const increment = held?.cursor && held.rows.length <= keptRows;
  const answer = await get(increment ? `${path}?cursor=${encodeURIComponent(held.cursor)}` : path);
  const fetched = increment && !answer.reset ? [...held.rows, ...answer.data] : answer.data;
  curves.set(job.id, { rows: fetched, cursor: answer.cursor });
  return fetched;
}

async function curve(get, job) {
  const data = await rows(get, job);
  const train = data.filter(r => typeof r.train_loss === "number").map(r => [r.step, r.train_loss]);
  const val = data.filter(r => typeof r.val_loss === "number").map(r => [r.step, r.val_loss]);
  if (train.length === 0 && val.length === 0) return el("p", { id: "job-curve" }, `${job.id} has logged no step yet.`);
  const last = train.at(-1), best = val.length ? Math.min(...val.map(([, loss]) => loss)) : null;
  const words = `Loss of ${job.id} over ${integer.format(Math.max(train.at(-1)?.[0] ?? 0, val.at(-1)?.[0] ?? 0))} steps` +
    (last ? `; training loss ${last[1].toFixed(4)} at step ${last[0]}` : "") + (best !== null ? `; best val loss ${best.toFixed(4)}` : "");
  return el("figure", { id: "job-curve" },
    stepChart([{ name: "train loss", points: train, markers: false }, { name: "val loss", points: val, markers: true }], { label: words }),
    el("figcaption", {}, words));
}

/** The job's curve, or in its place why it cannot be drawn: a run's file the server refuses (a
 *  409: a line no trainer wrote) is that job's, and the jobs listed and the picker stay. A
 *  refusal of the key or of its rate is the panel's, which stops or waits. */
async function curveOrWhy(get, job) {
  try {
    return await curve(get, job);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 409) throw error;
    return el("p", { id: "job-curve", class: "error", role: "alert" }, describe(error));
  }
}

export default {
  id: "jobs",
  title: "Training jobs",
  refreshSeconds: 10,
  wide: true,
  async render(get) {
    let jobs;
    try {
      jobs = (await get("/api/jobs")).data;
    } catch (error) {
      // A host that embeds the server without training jobs maps no /api/jobs.
      if (error instanceof ApiError && error.status === 404) return [el("p", {}, "This server runs no training jobs.")];
      throw error;
    }
    const listed = table("Jobs, newest first", [
      { label: "Job", value: j => el("code", {}, j.id) },
      { label: "State", value: j => el("span", { class: `job-state job-${j.state}`, title: j.reason ?? null }, el("span", { "aria-hidden": "true" }, `${marks[j.state] ?? "•"} `), j.state) },
      { label: "Started", value: j => time(j.started_at) },
      { label: "Duration", value: duration, number: true },
      { label: "Out", value: j => el("code", { class: "details" }, j.arguments.out) },
      { label: "Step", value: j => j.last_step ? integer.format(j.last_step.step) : "—", number: true },
      { label: "Loss", value: j => j.last_step ? j.last_step.train_loss.toFixed(4) : "—", number: true },
      { label: "Reason", value: j => j.reason ?? "" },
    ], jobs, "No jobs. Submit one with `stratus jobs submit` or POST /api/jobs.");
    if (jobs.length === 0) return [listed];
    // The job chosen, else the newest with a step logged (running ones first), else the newest
    // running one, else the newest: a job queued or failed before its first step has no curve.
    const logged = jobs.filter(j => j.last_step);
    const shown = jobs.find(j => j.id === chosen) ?? logged.find(j => j.state === "running") ?? logged[0]
      ?? jobs.find(j => j.state === "running") ?? jobs[0];
    const picker = el("select", { id: "job-picker" }, jobs.map(j => el("option", { value: j.id, selected: j.id === shown.id }, `${j.id} (${j.state})`)));
    const area = el("div", {}, await curveOrWhy(get, shown));
    picker.addEventListener("change", async () => {
      chosen = picker.value;
      const job = jobs.find(j => j.id === chosen);
      try { area.replaceChildren(await curveOrWhy(get, job)); }
      catch (error) { area.replaceChildren(el("p", { class: "error", role: "alert" }, error.message)); }
    });
    return [listed, el("p", {}, el("label", { for: "job-picker" }, "Loss curve of "), picker), area];
  },
};
