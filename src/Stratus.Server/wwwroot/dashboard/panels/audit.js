// The audit log's latest entries (GET /v1/admin/audit) and the verification of its hash chain
// (GET /v1/admin/audit/verify). The log is read from its start upwards, so the read begins
// near the end the verification counted and pages on to the last entry.
import { el, table, time, state, integer, actor } from "../dom.js";

const shown = 20;

export default {
  id: "audit",
  title: "Audit log",
  scope: "admin",
  refreshSeconds: 15,
  wide: true,
  async render(get) {
    const verification = await get("/v1/admin/audit/verify");
    let latest = [];
    let after = Math.max(0, verification.entries_checked - shown);
    for (;;) {
      const page = (await get(`/v1/admin/audit?after=${after}&limit=${shown}`)).data;
      latest = [...latest, ...page].slice(-shown);
      if (page.length < shown) break;
      after = page[page.length - 1].seq;
    }
    const verdict = verification.valid
      ? state(true, `Chain verified: ${integer.format(verification.entries_checked)} entries, head ${verification.head_hash.slice(0, 16)}…`)
      : state(false, `Chain broken at entry ${verification.first_bad_seq}: ${verification.problem}`);
    return [
      el("p", { id: "audit-verification" }, verdict),
      table(`The latest ${shown} entries, newest first`, [
        { label: "#", value: e => e.seq, number: true },
        { label: "Time", value: e => time(e.time) },
        { label: "Actor", value: e => actor(e.actor, e.actor_name) },
        { label: "Action", value: e => e.action },
        { label: "Details", value: e => el("code", { class: "details" }, e.details === null ? "" : JSON.stringify(e.details)) },
      ], latest.reverse(), "The audit log is empty."),
    ];
  },
};
