/**
 * Writes a handler's Response on an HTTP/1.1 connection, streaming its body.
 *
 * The framing follows what the handler said: its Content-Length when it gave
 * one (checked: a body that ends short or runs long cuts the connection), a
 * single-chunk body sent with its length, anything longer chunked. A body
 * stream that fails after the head went out must not look whole to the
 * client, so it is reported as {@linkcode ResponseCutError} and the caller
 * closes the connection without ending the body (http/data_response.ts relies
 * on this: curl then exits 18, fetch's body read rejects).
 */
import type { HttpConn } from "./_http_conn.ts";

/** The response's body failed after its head was sent: the connection must be cut. */
export class ResponseCutError extends Error {
  override name = "ResponseCutError";
}

/** What the writer needs to know of the request being answered. */
export interface Answering {
  method: string;
  /** The client let the connection carry another request. */
  keepAlive: boolean;
  /** 1 for HTTP/1.1 (chunked bodies allowed), 0 for HTTP/1.0. */
  minorVersion: number;
}

/** Bodies up to this size are sent in the same write as the head. */
const coalesceBytes = 16 * 1024;
const encoder = new TextEncoder();
const reasons: Record<number, string> = {
  100: "Continue",
  200: "OK",
  201: "Created",
  204: "No Content",
  206: "Partial Content",
  304: "Not Modified",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  409: "Conflict",
  413: "Content Too Large",
  416: "Range Not Satisfiable",
  417: "Expectation Failed",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
  507: "Insufficient Storage",
};
/** Headers the server sets itself from the framing it chooses. */
const ownHeaders = new Set(["connection", "transfer-encoding", "keep-alive", "date"]);

/** The bytes of a complete bodyless answer that closes the connection (errors, refusals). */
export function closingAnswer(status: number, message: string): Uint8Array {
  const body = JSON.stringify({ error: message });
  return encoder.encode(
    `HTTP/1.1 ${status} ${reasons[status] ?? ""}\r\ncontent-type: application/json\r\n` +
      (status === 503 ? "retry-after: 1\r\n" : "") +
      `content-length: ${encoder.encode(body).length}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/**
 * Writes `response` as the answer to `request`; resolves to whether the
 * connection may carry another request. Throws {@linkcode ResponseCutError}
 * when the body failed midway, or the write's error when the client went away.
 */
export async function writeResponse(
  http: HttpConn,
  response: Response,
  request: Answering,
): Promise<boolean> {
  const { status } = response;
  const bodyless = request.method === "HEAD" || status === 204 || status === 304 || status < 200;
  let keepAlive = request.keepAlive &&
    !/(^|,)\s*close\s*(,|$)/i.test(response.headers.get("connection") ?? "");
  let head = `HTTP/1.1 ${status} ${response.statusText || reasons[status] || ""}\r\n` +
    `date: ${httpDate()}\r\n`;
  for (const [name, value] of response.headers) {
    if (!ownHeaders.has(name)) head += `${name}: ${value}\r\n`;
  }
  const declared = response.headers.get("content-length");
  const body = response.body;
  if (bodyless || body === null) {
    if (!bodyless && declared === null) head += "content-length: 0\r\n";
    await http.write(encoder.encode(head + (keepAlive ? "\r\n" : "connection: close\r\n\r\n")));
    await body?.cancel().catch(() => {});
    return keepAlive;
  }
  const reader = body.getReader();
  const next = async () => {
    try {
      return await reader.read();
    } catch (cause) {
      throw new ResponseCutError(cause instanceof Error ? cause.message : String(cause), { cause });
    }
  };
  let framing: "length" | "chunked" | "close";
  let pending: Uint8Array[] = [];
  let expected: number;
  if (declared !== null) {
    framing = "length";
    expected = Number(declared);
  } else {
    // A body of one chunk (JSON, text) is sent with its length; a longer one in chunks.
    const first = await next();
    const second = first.done ? first : await next();
    pending = [first.value, second.value].filter((part) => part !== undefined);
    framing = second.done ? "length" : request.minorVersion === 1 ? "chunked" : "close";
    expected = second.done ? (first.value?.length ?? 0) : NaN;
    if (second.done) head += `content-length: ${expected}\r\n`;
    else if (framing === "chunked") head += "transfer-encoding: chunked\r\n";
    else keepAlive = false;
  }
  head += keepAlive ? "\r\n" : "connection: close\r\n\r\n";
  const frame = framing === "chunked" ? chunk : (part: Uint8Array) => [part];
  let unsent: Uint8Array | null = encoder.encode(head);
  try {
    let sent = 0;
    for (;;) {
      const part = pending.shift() ?? (await next()).value;
      if (part === undefined) break;
      sent += part.length;
      if (framing === "length" && sent > expected) {
        throw new ResponseCutError(`the body runs past its Content-Length of ${expected}`);
      }
      await send(http, unsent === null ? frame(part) : [unsent, ...frame(part)]);
      unsent = null;
    }
    if (framing === "length" && sent < expected) {
      throw new ResponseCutError(`the body ended after ${sent} of ${expected} bytes`);
    }
    const end = framing === "chunked" ? [encoder.encode("0\r\n\r\n")] : [];
    await send(http, unsent === null ? end : [unsent, ...end]);
  } catch (error) {
    await reader.cancel().catch(() => {});
    throw error;
  }
  return keepAlive;
}

/** Writes `parts` in order, small neighbours gathered into one write, large ones as they are. */
async function send(http: HttpConn, parts: Uint8Array[]): Promise<void> {
  let held: Uint8Array | null = null;
  for (const part of parts) {
    if (held !== null && held.length + part.length <= coalesceBytes) {
      const joined: Uint8Array = new Uint8Array(held.length + part.length);
      joined.set(held);
      joined.set(part, held.length);
      held = joined;
      continue;
    }
    if (held !== null) await http.write(held);
    held = part.length <= coalesceBytes ? part : null;
    if (held === null) await http.write(part);
  }
  if (held !== null) await http.write(held);
}

/** A chunk of a chunked body: size line, data, CRLF. */
function chunk(part: Uint8Array): Uint8Array[] {
  if (part.length === 0) return []; // a zero-size chunk would end the body
  return [encoder.encode(`${part.length.toString(16)}\r\n`), part, encoder.encode("\r\n")];
}

let dateSecond = -1;
let dateText = "";

/** The Date header value, computed once per second. */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}
