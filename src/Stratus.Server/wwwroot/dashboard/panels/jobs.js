// Training jobs (GET /api/jobs: the training scope, which an admin key has too), newest first,
// as `stratus jobs list` shows them, with what Slurm says of a Slurm job (its state and why it
// waits, as it last said once the job ended; its partition, time limit, nodes and run time), and the loss curve of one of them from its run's metrics.jsonl
// (GET /api/jobs/{id}/metrics), drawn as `stratus plot` draws it: training loss at every step, val
// loss at every evaluation. A job's curve is fetched whole (thinned) once, then in increments: the
// rows written since the cursor of the last answer. Where the server takes jobs (the list's
// "submissions": serve's --jobs-root and --jobs-executor), a form submits one (POST /api/jobs), the
// configs of the root's configs/ offered as the config's choices, the
// API's refusal shown beside the field it names; a queued or running job has a Cancel button,
// confirmed in a dialog (POST /api/jobs/{id}/cancel). A job whose cancel was asked (its
// cancel_requested_at) runs on while its training finishes its step and saves a last checkpoint:
// its state says "cancelling…", since when and by whom (a key by its name, as the audit panel names
// it: cancel_requested_by_name, its id beside it), and its button stays
// disabled, as a second cancel would send nothing.
import { ApiError, describe } from "../api.js";
import { el, table, time, integer, actor } from "../dom.js";
import { stepChart } from "../chart.js";

// Marks beside the state's word, so states read apart without colour.
const marks = { queued: "◷", running: "▶", succeeded: "✔", failed: "✖", cancelled: "■" };
// Each job's rows fetched so far, and the cursor to ask for the rows written since; a curve grown
// past keptRows is fetched whole (and thinned) again.
const curves = new Map();
const keptRows = 4000;
let chosen = null;

/** Whether a cancel was asked of a job that has not ended yet. */
const beingCancelled = job => ["queued", "running"].includes(job.state) && Boolean(job.cancel_requested_at);

/** Seconds as the panel shows a duration: 1h02m, 3m05s, 42s. */
function span(seconds) {
  const h = Math.floor(seconds / 3600), m = Math.floor(seconds / 60) % 60, s = Math.floor(seconds) % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : m > 0 ? `${m}m${String(s).padStart(2, "0")}s` : `${s}s`;
}

/** Slurm's RunTime, [D-]HH:MM:SS, in seconds; null for another form. */
function slurmSeconds(elapsed) {
  const parts = /^(?:(\d+)-)?(\d+):(\d+):(\d+)$/.exec(elapsed ?? "");
  return parts ? ((Number(parts[1] ?? 0) * 24 + Number(parts[2])) * 60 + Number(parts[3])) * 60 + Number(parts[4]) : null;
}

/** How long the job ran: for a Slurm job Slurm's own RunTime where it gave one (the job's started and
 *  ended are when Stratus read it so, which can be long after Slurm started or ended it), else from
 *  started to ended (or now): the rule of Job.Duration, which `stratus jobs list` shows. */
function duration(job) {
  if (!job.started_at) return "—";
  const slurm = slurmSeconds(job.slurm?.elapsed);
  if (slurm !== null) return el("span", { title: `Slurm's RunTime: ${job.slurm.elapsed}` }, span(slurm));
  return span(Math.max(0, ((job.ended_at ? new Date(job.ended_at) : new Date()) - new Date(job.started_at)) / 1000));
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

/** A field's value the form refuses before asking the API, said beside that field. */
class FieldError extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

/** "max_iters=500" lines as POST /api/jobs's overrides: values as text, which the API reads as
 *  `stratus train --max-iters 500` reads its. */
function parseOverrides(text) {
  const overrides = {};
  for (const [i, line] of text.split(/\r?\n/).entries()) {
    const setting = line.trim();
    if (!setting) continue;
    const at = setting.indexOf("=");
    if (at <= 0) throw new FieldError("overrides", `Line ${i + 1}, "${setting}", is no key=value: give one setting a line, as max_iters=500.`);
    const key = setting.slice(0, at).trim();
    if (Object.hasOwn(overrides, key)) throw new FieldError("overrides", `${key} is given twice; keep one line for it.`);
    overrides[key] = setting.slice(at + 1).trim();
  }
  return overrides;
}

/** The submit form for the server's submissions ({ root, executors }): each field of POST
 *  /api/jobs with its label, the Slurm ones shown for the Slurm executor; a refusal is put beside
 *  the field its param names (overrides.max_iters: the overrides), else above the button.
 *  form.offer(configs) offers those configs (the list's submissions.configs) as the config's
 *  choices, which any other path typed beneath the root joins. */
function submitForm(api, own, submissions) {
  const fields = new Map();
  const field = (name, label, input, hint) => {
    const id = `job-${name}`;
    const error = el("p", { id: `${id}-error`, class: "error field-error", hidden: true });
    Object.assign(input, { id, name });
    input.setAttribute("aria-describedby", hint ? `${id}-hint ${id}-error` : `${id}-error`);
    fields.set(name, { input, error });
    return el("div", { class: "field" }, el("label", { for: `${id}` }, label), input, hint ? el("p", { id: `${id}-hint`, class: "hint" }, hint) : null, error);
  };
  const text = (placeholder) => el("input", { type: "text", spellcheck: "false", autocomplete: "off", placeholder });
  const number = () => el("input", { type: "number", min: 1, step: 1, inputmode: "numeric" });
  const beneath = `${submissions.root}/`;
  const choices = el("datalist", { id: "job-config-choices" });
  const config = text(`${beneath}configs/shakespeare-char-cpu.json`);
  config.setAttribute("list", choices.id);
  const executor = el("select", {}, submissions.executors.map(e => el("option", { value: e }, e)));
  const slurm = el("fieldset", { id: "job-slurm" }, el("legend", {}, "Slurm resources (left empty: the cluster's defaults, one rank of one CPU)"),
    field("partition", "Partition", text()),
    field("time", "Time limit", text("2:00:00")),
    field("ranks", "Ranks", number()),
    field("cpus_per_rank", "CPUs per rank", number()));
  const showSlurm = () => { slurm.hidden = executor.value !== "slurm"; };
  executor.addEventListener("change", showSlurm);
  showSlurm();
  const problem = el("p", { id: "job-submit-error", class: "error", role: "alert", hidden: true });
  const done = el("p", { id: "job-submit-status", role: "status" });
  const button = el("button", { type: "submit" }, "Submit job");
  const form = el("form", { id: "job-submit", class: "job-form", novalidate: true, "aria-labelledby": "job-submit-title" },
    el("h3", { id: "job-submit-title" }, "Submit a training job"),
    el("p", { class: "hint" }, "Paths are the server's, whole, beneath ", el("code", {}, submissions.root),
      ". A new run takes data and out; a run continued takes resume (and data where its dataset moved)."),
    el("div", { class: "fields" },
      field("config", "Config", config, `A training config (JSON): one of ${beneath}configs/, offered as choices, or another beneath the root; left empty: train's defaults with the overrides.`),
      field("data", "Data", text(`${beneath}data/shk`), "The dataset folder `stratus prepare` made."),
      field("out", "Out", text(`${beneath}runs/shk`), "The run folder to train into."),
      field("init_from", "Init from", text(`${beneath}runs/base`), "A model to fine-tune: a run or checkpoint folder."),
      field("resume", "Resume", text(`${beneath}runs/shk`), "A run to continue from its last checkpoint."),
      field("overrides", "Overrides", el("textarea", { rows: 3, spellcheck: "false", placeholder: "max_iters=500\neval_interval=100" }), "Config keys as key=value, one a line.")),
    submissions.executors.length > 1 ? el("div", { class: "fields" }, field("executor", "Executor", executor)) : null,
    slurm, problem, el("p", {}, button), done, choices);

  const clear = () => {
    problem.hidden = true;
    for (const { input, error } of fields.values()) {
      error.hidden = true;
      input.removeAttribute("aria-invalid");
    }
  };
  const refuse = (name, message) => {
    const at = fields.get(name);
    if (!at) {
      problem.textContent = message;
      problem.hidden = false;
      return;
    }
    at.error.textContent = message;
    at.error.hidden = false;
    at.input.setAttribute("aria-invalid", "true");
    at.input.focus();
  };
  const body = () => {
    const value = name => fields.get(name).input.value.trim();
    const request = { executor: executor.value };
    for (const name of ["config", "data", "out", "init_from", "resume"]) if (value(name)) request[name] = value(name);
    const overrides = parseOverrides(fields.get("overrides").input.value);
    if (Object.keys(overrides).length) request.overrides = overrides;
    if (executor.value === "slurm") {
      for (const name of ["partition", "time"]) if (value(name)) request[name] = value(name);
      // As typed: a number the API refuses (0, 2.5) is refused naming its field.
      for (const name of ["ranks", "cpus_per_rank"]) if (value(name)) request[name] = Number(value(name));
    }
    return request;
  };
  form.addEventListener("submit", async event => {
    event.preventDefault();
    if (button.disabled) return;
    clear();
    done.textContent = "";
    let request;
    try {
      request = body();
    } catch (error) {
      if (!(error instanceof FieldError)) throw error;
      refuse(error.field, error.message);
      return;
    }
    button.disabled = true;
    done.textContent = "Submitting…";
    try {
      const job = await api("/api/jobs", { method: "POST", body: request });
      done.textContent = `Submitted ${job.id} (${job.state}).`;
      // The next run most likely shares the config, data, overrides and resources, but never the
      // run folder: left filled, Enter again would submit into the same one and be refused.
      for (const name of ["out", "resume"]) fields.get(name).input.value = "";
      fields.get("out").input.focus();
      own.refresh();
    } catch (error) {
      done.textContent = "";
      // "overrides.max_iters" is the overrides' field.
      refuse(error instanceof ApiError && error.param ? error.param.split(".")[0] : null, describe(error));
    } finally {
      button.disabled = false;
    }
  });
  let offered = null;
  // Not "choices" replaced at every refresh: a list of them open under the field would close.
  return Object.assign(form, {
    offer(configs) {
      const now = JSON.stringify(configs);
      if (now === offered) return;
      offered = now;
      choices.replaceChildren(...configs.map(path => el("option", { value: path })));
    },
  });
}

/** The dialog that confirms a cancel; ask(job) shows it for that job. It stays open with the
 *  API's message where the cancel is refused, and its button is disabled while the request runs. */
function cancelDialog(api, own) {
  const title = el("h3", { id: "job-cancel-title" });
  const problem = el("p", { id: "job-cancel-error", class: "error", role: "alert", hidden: true });
  const confirm = el("button", { type: "button", id: "job-cancel-confirm" }, "Cancel the job");
  const keep = el("button", { type: "button" }, "Keep it");
  const dialog = el("dialog", { id: "job-cancel", "aria-labelledby": "job-cancel-title" }, title,
    el("p", {}, "A running training stops after its current step with a last checkpoint; submit a job with resume set to its run to continue it."),
    problem, el("p", { class: "buttons" }, confirm, " ", keep));
  let id = null, cancelled = false;
  keep.addEventListener("click", () => dialog.close());
  // Back on the row's button where the job was kept; where it was cancelled, on the row's state: its
  // button is disabled (until the job ends, then gone) and focus on it would fall to the page's start. Decided by what
  // the dialog did, not by the button found: the close event comes a frame later, and a refresh
  // landing before it makes that row anew with its button enabled again.
  dialog.addEventListener("close", () => {
    const button = own.cancelButton(id);
    (!cancelled && button && !button.disabled ? button : own.stateCell(id))?.focus();
  });
  confirm.addEventListener("click", async () => {
    const cancelling = id;
    confirm.disabled = true;
    problem.hidden = true;
    own.cancelling.add(cancelling);
    own.cancelButton(cancelling)?.setAttribute("disabled", "");
    try {
      await api(`/api/jobs/${encodeURIComponent(cancelling)}/cancel`, { method: "POST" });
      cancelled = true;
      dialog.close();
    } catch (error) {
      problem.textContent = describe(error);
      problem.hidden = false;
    } finally {
      confirm.disabled = false;
      own.cancelling.delete(cancelling);
      own.refresh();
    }
  });
  // Not "open": a dialog's own property, whether it is shown.
  return Object.assign(dialog, {
    ask(job) {
      id = job.id;
      cancelled = false;
      title.textContent = `Cancel ${job.id}?`;
      problem.hidden = true;
      dialog.showModal();
      keep.focus();
    },
  });
}

export default {
  id: "jobs",
  title: "Training jobs",
  scope: "training",
  refreshSeconds: 10,
  wide: true,
  async render(get, own) {
    let answer;
    try {
      answer = await get("/api/jobs");
    } catch (error) {
      // A host that embeds the server without training jobs maps no /api/jobs.
      if (error instanceof ApiError && error.status === 404) return [el("p", {}, "This server runs no training jobs.")];
      throw error;
    }
    const jobs = answer.data;
    // Made once while the panel is shown (what was typed stays across refreshes), again only where
    // the server's submissions changed (it restarted with another --jobs-root).
    own.cancelling ??= new Set();
    own.cancelButton ??= id => own.dialog.parentNode?.querySelector(`button[data-cancel="${CSS.escape(id)}"]`);
    own.stateCell ??= id => document.getElementById(`job-state-${id}`);
    own.dialog ??= cancelDialog(get, own);
    // The configs offered change as files come and go in the root's configs/: updated in the form kept.
    const { configs = [], ...taken } = answer.submissions ?? {};
    const submissions = JSON.stringify(answer.submissions ? taken : null);
    if (own.submissions !== submissions) {
      own.submissions = submissions;
      own.form = answer.submissions ? submitForm(get, own, answer.submissions) : null;
    }
    own.form?.offer(configs);
    const kept = [own.dialog, ...(own.form ? [own.form] : [])];
    const cancel = j => ["queued", "running"].includes(j.state)
      ? el("button", { type: "button", "data-cancel": j.id, "aria-label": `Cancel ${j.id}`, disabled: own.cancelling.has(j.id) || beingCancelled(j) }, "Cancel")
      : "";
    // Slurm's columns only where a Slurm job is listed, and Cancel beside the state: the table
    // then fits 1280 px, and a narrower window that scrolls it sideways still shows the button.
    const slurmListed = jobs.some(j => j.executor === "slurm");
    // Without a form the server takes no submissions (its POST /api/jobs answers 403): the jobs it
    // lists are those `stratus jobs submit` records on its host, in its data directory.
    const none = own.form ? "No jobs yet."
      : "No jobs. This server takes none through its API (its operator enables that with serve --jobs-root); jobs submitted on its host with `stratus jobs submit` are listed here.";
    const listed = table("Jobs, newest first", [
      { label: "Job", value: j => el("code", {}, j.id) },
      // Focusable from script only (the dialog puts focus there after a cancel), and by an id that the
      // refresh's successor of a focused node is found by.
      { label: "State", value: j => el("span", { id: `job-state-${j.id}`, tabindex: -1, class: `job-state job-${j.state}`, title: j.reason ?? null }, el("span", { "aria-hidden": "true" }, `${marks[j.state] ?? "•"} `), j.state,
        ...(beingCancelled(j) ? [", cancelling… (since ", time(j.cancel_requested_at, { dayless: true }), ...(j.cancel_requested_by ? [" by ", actor(j.cancel_requested_by, j.cancel_requested_by_name)] : []), ")"] : [])) },
      { label: "Cancel", value: cancel },
      { label: "Started", value: j => time(j.started_at) },
      { label: "Duration", value: duration, number: true },
      { label: "Out", value: j => el("code", { class: "path" }, j.arguments.out) },
      { label: "Step", value: j => j.last_step ? integer.format(j.last_step.step) : "—", number: true },
      { label: "Loss", value: j => j.last_step ? j.last_step.train_loss.toFixed(4) : "—", number: true },
      { label: "Reason", value: j => j.reason ?? "" },
      // Slurm's words for a Slurm job (as sbatch was asked, before Slurm answers; as it last said, once ended); empty for a local one.
      ...(slurmListed ? [
        { label: "Slurm state", value: j => j.slurm?.unreachable ? `Slurm not reached: ${j.slurm.unreachable}`
          : j.slurm?.reason ? `${j.slurm.state ?? ""} (${j.slurm.reason})`.trimStart() : j.slurm?.state ?? "" },
        { label: "Partition", value: j => j.slurm?.partition ?? j.arguments.partition ?? "" },
        { label: "Time limit", value: j => j.slurm?.time_limit ?? j.arguments.time ?? "" },
        { label: "Nodes", value: j => j.slurm?.nodes ?? "" },
      ] : []),
    ], jobs, none);
    if (jobs.length === 0) return [...kept, listed];
    // The job chosen, else the newest with a step logged (running ones first), else the newest
    // running one, else the newest: a job queued or failed before its first step has no curve.
    const logged = jobs.filter(j => j.last_step);
    const shown = jobs.find(j => j.id === chosen) ?? logged.find(j => j.state === "running") ?? logged[0]
      ?? jobs.find(j => j.state === "running") ?? jobs[0];
    // The picker and its curve's place are kept across refreshes, their options updated in place,
    // as the form is: made anew, the picker lost its focus and closed its list while one chose.
    own.jobs = jobs;
    if (!own.picker) {
      own.picker = el("select", { id: "job-picker" });
      own.area = el("div", {});
      own.picker.addEventListener("change", async () => {
        chosen = own.picker.value;
        const job = own.jobs.find(j => j.id === chosen);
        try { own.area.replaceChildren(await curveOrWhy(get, job)); }
        catch (error) { own.area.replaceChildren(el("p", { class: "error", role: "alert" }, error.message)); }
      });
      own.choice = el("p", {}, el("label", { for: "job-picker" }, "Loss curve of "), own.picker);
    }
    const drawn = await curveOrWhy(get, shown);
    // A job chosen while that curve was fetched is drawn by the change that chose it.
    const since = chosen !== null && chosen !== shown.id && jobs.some(j => j.id === chosen) ? chosen : null;
    const options = new Map([...own.picker.options].map(o => [o.value, o]));
    own.picker.replaceChildren(...jobs.map(j => {
      const option = options.get(j.id) ?? el("option", { value: j.id });
      option.textContent = `${j.id} (${j.state}${beingCancelled(j) ? ", cancelling…" : ""})`;
      return option;
    }));
    own.picker.value = since ?? shown.id;
    if (!since) own.area.replaceChildren(drawn);
    listed.addEventListener("click", event => {
      const id = event.target.closest("button[data-cancel]")?.dataset.cancel;
      if (id) own.dialog.ask(jobs.find(j => j.id === id));
    });
    return [...kept, listed, own.choice, own.area];
  },
};
