/** Reading request bodies: a small JSON object, a Content-Length, a stream of client bytes. */
import { HTTPException } from "hono/http-exception";
import { type ByteSource, streamSource, TruncatedError } from "../core/mod.ts";

/** Parses a JSON object body, or throws TypeError (400). */
export async function jsonBody(request: Request): Promise<Record<string, unknown>> {
  let value: unknown;
  try {
    value = await request.json();
  } catch (cause) {
    if (cause instanceof HTTPException) throw cause;
    throw new TypeError("Cannot parse request: the body is not JSON", { cause });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError("Cannot parse request: the body is not a JSON object");
  }
  return value as Record<string, unknown>;
}

/** The Content-Length header as a number, null when absent; TypeError when malformed. */
export function contentLength(header: string | undefined): number | null {
  if (header === undefined) return null;
  if (!/^\d{1,16}$/.test(header)) throw new TypeError(`Cannot read body: bad Content-Length`);
  return Number(header);
}

/**
 * A request body, read into the caller's buffers where the stream allows it
 * (core/byte_source.ts: a request's body is a byte stream), else chunk by
 * chunk. A body that breaks off (the client went away, or sent less than its
 * Content-Length) is the client's fault: TruncatedError.
 */
export function clientBytes(body: ReadableStream<Uint8Array>): AsyncIterable<Uint8Array> {
  let source: ByteSource;
  try {
    source = streamSource(body, broken);
  } catch {
    return clientChunks(body); // not a byte stream: no BYOB reader
  }
  return source;
}

function broken(cause: unknown): TruncatedError {
  return new TruncatedError(
    `Cannot read request body: the connection ended before the body did`,
    { cause },
  );
}

/** The chunks of a body that is not a byte stream. */
async function* clientChunks(body: ReadableStream<Uint8Array>): AsyncIterable<Uint8Array> {
  const reader = body.getReader();
  let done = false;
  try {
    while (!done) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (cause) {
        done = true;
        throw broken(cause);
      }
      done = result.done;
      if (!result.done) yield result.value;
    }
  } finally {
    if (!done) await reader.cancel().catch(() => {});
  }
}
