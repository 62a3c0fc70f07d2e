// Calls to this server's API with the operator's key (reads, and the jobs panel's submit and cancel). Paths are relative to the page
// (/dashboard/), so the dashboard works behind a proxy that serves Stratus under a path.
// A refusal becomes an ApiError carrying the API's own message (OpenAI's error shape).

export class ApiError extends Error {
  constructor(status, message, retryAfterSeconds, param) {
    super(message);
    this.status = status;
    // The server's Retry-After (429, 503): how long to wait before asking again.
    this.retryAfterSeconds = retryAfterSeconds;
    // The request's field at fault, where the API names one ("out", "overrides.max_iters").
    this.param = param ?? null;
  }

  /** Whether the key itself was refused (wrong, revoked, expired, short of scope): asking
   *  again with it cannot succeed. */
  get refusesKey() {
    return this.status === 401 || this.status === 403;
  }
}

/** The API with the key: api(path) reads, api(path, { method: "POST", body }) sends body as JSON. */
export function createApi(key) {
  return async function api(path, { method = "GET", body } = {}) {
    const headers = { Authorization: `Bearer ${key}`, Accept: "application/json, text/plain" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(new URL(".." + path, document.baseURI), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
    const text = await response.text();
    const json = (response.headers.get("content-type") ?? "").includes("json") && text ? JSON.parse(text) : null;
    if (!response.ok) {
      const retryAfter = Number.parseInt(response.headers.get("retry-after") ?? "", 10);
      throw new ApiError(response.status, json?.error?.message ?? `${response.status} ${response.statusText}`, Number.isFinite(retryAfter) ? retryAfter : undefined, json?.error?.param);
    }
    return json ?? text;
  };
}

/** What the dashboard shows a key of each scope, for the operator told what a key needs. */
export const scopesNeeded = "The dashboard needs a key with the admin scope (every panel), or the training scope (the training jobs).";

/** Says what a refusal means to the operator: the API's words, and for a key refused or short
 *  of scope, which scopes the dashboard needs. */
export function describe(error) {
  if (!(error instanceof ApiError)) return `The server could not be reached: ${error.message}`;
  if (error.refusesKey) return `${error.message} ${scopesNeeded}`;
  return error.message;
}
