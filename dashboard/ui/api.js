/**
 * Calls of the node's HTTP API from the dashboard. When the node runs with
 * `--token-file`, every /v1 route wants `Authorization: Bearer TOKEN`: the
 * page asks for the token once and keeps it in sessionStorage (this tab only).
 */
const tokenKey = "atoll-token";

/** The node answered 401: the page needs a (new) token. */
export class Unauthorized extends Error {
  name = "Unauthorized";
}

/** The token the page sends, or null. */
export function token() {
  return sessionStorage.getItem(tokenKey);
}

/** Keeps `value` as the token of this tab (null forgets it). */
export function setToken(value) {
  if (value === null) sessionStorage.removeItem(tokenKey);
  else sessionStorage.setItem(tokenKey, value);
}

/**
 * GETs `path` (relative to the page, e.g. `v1/cluster`) and returns its JSON.
 * `X-Atoll-Poll` tells the node's access log that this is a dashboard's
 * refresh (logged at `debug` when answered).
 */
export async function getJson(path) {
  const headers = { "x-atoll-poll": "dashboard" };
  if (token() !== null) headers.authorization = `Bearer ${token()}`;
  const response = await fetch(path, { headers, cache: "no-store" });
  if (response.status === 401) {
    throw new Unauthorized(token() === null ? "a token is required" : "the token was refused");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new Error(`GET ${path}: ${response.status} ${body?.error ?? response.statusText}`);
  }
  return body;
}
