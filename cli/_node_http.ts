/**
 * Calls to a node's HTTP API for the client (client.ts): the bearer token, the
 * time allowed, and errors that say what was attempted and why (ApiError for a
 * 4xx/5xx answer, Error when the node cannot be reached or does not answer).
 */

/** A node answered with a 4xx or 5xx status; `status` lets a caller tell 401 from 404. */
export class ApiError extends Error {
  override name = "ApiError";
  constructor(message: string, readonly status: number, options?: ErrorOptions) {
    super(message, options);
  }
}

/** Requests to one node. */
export class NodeHttp {
  constructor(
    readonly url: string,
    readonly token: string | null,
    readonly timeoutMs: number,
  ) {}

  /** Sends `body` as JSON (when given) and reads a JSON answer within `timeoutMs`. */
  async json<T>(
    action: string,
    method: string,
    path: string,
    body?: unknown,
    timeoutMs = this.timeoutMs,
  ): Promise<T> {
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.headers = { "content-type": "application/json" };
      init.body = JSON.stringify(body);
    }
    return await readJson<T>(await this.send(action, path, init, timeoutMs), action);
  }

  /**
   * Sends a request; throws ApiError on a 4xx/5xx answer, Error when the node
   * cannot be reached or does not answer within `timeoutMs` (null: no limit).
   */
  async send(
    action: string,
    path: string,
    init: RequestInit,
    timeoutMs: number | null = this.timeoutMs,
  ): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.token !== null) headers.set("authorization", `Bearer ${this.token}`);
    const signal = timeoutMs === null ? undefined : AbortSignal.timeout(timeoutMs);
    let response: Response;
    try {
      response = await fetch(this.url + path, { ...init, headers, signal });
    } catch (cause) {
      if (cause instanceof DOMException && cause.name === "TimeoutError") {
        const seconds = (timeoutMs ?? 0) / 1000;
        const message = `${action}: the node at ${this.url} did not answer within ${seconds} s`;
        throw new Error(message, { cause });
      }
      const { text, connecting } = fetchFailure(cause);
      if (connecting) throw new Error(`Cannot reach node at ${this.url}: ${text}`, { cause });
      throw new Error(`${action}: ${text}`, { cause });
    }
    if (response.ok) return response;
    const detail = await errorText(response);
    throw new ApiError(joinMessages(action, detail), response.status);
  }
}

/** The JSON body of `response`; an Error naming `action` when it is not JSON. */
export async function readJson<T>(response: Response, action: string): Promise<T> {
  try {
    return await response.json() as T;
  } catch (cause) {
    throw new Error(`${action}: the node's answer is not JSON`, { cause });
  }
}

/** The `error` text of a JSON error answer, or the status line when there is none. */
async function errorText(response: Response): Promise<string> {
  const fallback = `HTTP ${response.status} ${response.statusText}`.trim();
  const text = await response.text().catch(() => "");
  try {
    const error = JSON.parse(text)?.error;
    if (typeof error === "string" && error !== "") return error;
  } catch { /* not JSON */ }
  return fallback;
}

/**
 * Joins what was attempted with the node's message, Go-style. The node's
 * messages already read "Cannot <action>: <state>"; one that repeats the action
 * is used alone, and another's "Cannot" is lowered so the line reads as one chain.
 */
export function joinMessages(action: string, detail: string): string {
  if (detail.startsWith(action)) return detail;
  return `${action}: ${detail.replace(/^Cannot /, "cannot ")}`;
}

/**
 * The useful part of a fetch failure, without Deno's "error sending request for
 * url (...)", and whether it happened while connecting (Deno says "(Connect)",
 * names DNS, or refuses the port itself) rather than later in the exchange.
 */
function fetchFailure(error: unknown): { text: string; connecting: boolean } {
  let text = error instanceof Error ? error.message : String(error);
  if (error instanceof Error && error.cause instanceof Error) text = error.cause.message;
  text = text.replace(/^error sending request for url \([^)]*\): /, "");
  const connecting = /\(Connect\)|dns error|are blocked/.test(text);
  return { text: text.replace(/^client error \(Connect\): /, ""), connecting };
}
