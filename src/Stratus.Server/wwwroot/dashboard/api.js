// Calls to this server's API with the operator's key. Paths are relative to the page
// (/dashboard/), so the dashboard works behind a proxy that serves Stratus under a path.
// A refusal becomes an ApiError carrying the API's own message (OpenAI's error shape).

export const neededScope = "admin";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
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
    if (!response.ok) throw new ApiError(response.status, json?.error?.message ?? `${response.status} ${response.statusText}`);
    return json ?? text;
  };
}

/** Says what a refusal means to the operator: the API's words, and for a key refused or short
 *  of scope, which scope the dashboard needs. */
export function describe(error) {
  if (!(error instanceof ApiError)) return `The server could not be reached: ${error.message}`;
  if (error.status === 401 || error.status === 403)
    return `${error.message} The dashboard needs a key with the ${neededScope} scope.`;
  return error.message;
}
