// Calls to this server's API with the operator's key. Paths are relative to the page
// (/dashboard/), so the dashboard works behind a proxy that serves Stratus under a path.
// A refusal becomes an ApiError carrying the API's own message (OpenAI's error shape).

export const neededScope = "admin";

export class ApiError extends Error {
  constructor(status, message, retryAfterSeconds) {
    super(message);
    this.status = status;
    // The server's Retry-After (429, 503): how long to wait before asking again.
    this.retryAfterSeconds = retryAfterSeconds;
  }

  /** Whether the key itself was refused (wrong, revoked, expired, short of scope): asking
   *  again with it cannot succeed. */
  get refusesKey() {
    return this.status === 401 || this.status === 403;
  }
}

export function createApi(key) {
  return async function get(path) {
    const response = await fetch(new URL(".." + path, document.baseURI), {
      headers: { Authorization: `Bearer ${key}`, Accept: "application/json, text/plain" },
      cache: "no-store",
      credentials: "omit",
    });
    const text = await response.text();
    const json = (response.headers.get("content-type") ?? "").includes("json") && text ? JSON.parse(text) : null;
    if (!response.ok) {
      const retryAfter = Number.parseInt(response.headers.get("retry-after") ?? "", 10);
      throw new ApiError(response.status, json?.error?.message ?? `${response.status} ${response.statusText}`, Number.isFinite(retryAfter) ? retryAfter : undefined);
    }
    return json ?? text;
  };
}

/** Says what a refusal means to the operator: the API's words, and for a key refused or short
 *  of scope, which scope the dashboard needs. */
export function describe(error) {
  if (!(error instanceof ApiError)) return `The server could not be reached: ${error.message}`;
  if (error.refusesKey)
    return `${error.message} The dashboard needs a key with the ${neededScope} scope.`;
  return error.message;
}
