/**
 * Streams the bytes of a volume, image or snapshot as an HTTP response, with Range.
 *
 * A read can fail after the status line went out (a block lost, no member
 * reachable). The response then must not look whole: it always carries a
 * Content-Length, and the failure errors the body stream, which makes the
 * server abort the connection instead of ending the body, so every client sees
 * a short, broken transfer (curl exits 18, fetch's body read rejects).
 */
import type { ByteRange } from "../core/mod.ts";
import { parseRange } from "./range.ts";

/** Anything with a size that reads byte ranges: Volume or FrozenView. */
export interface Readable {
  readonly sizeBytes: number;
  readAt(range: ByteRange, into?: Uint8Array): Promise<Uint8Array>;
}

/** Bytes read and sent per chunk of a response body. */
const chunkBytes = 1024 * 1024;

/**
 * A 200 with every byte, a 206 with the asked range, or a 416 past the end. The
 * first chunk is read before the status is chosen, so a read that fails at once
 * is answered with an error status (thrown to the caller), not a 200 cut short.
 */
export async function dataResponse(
  source: Readable,
  rangeHeader: string | undefined,
): Promise<Response> {
  const size = source.sizeBytes;
  const range = parseRange(rangeHeader, size);
  if (range.kind === "unsatisfiable") {
    return Response.json(
      { error: `Cannot serve range ${rangeHeader}: the resource has ${size} bytes` },
      { status: 416, headers: { "content-range": `bytes */${size}` } },
    );
  }
  const { offset, length } = range.kind === "part" ? range : { offset: 0, length: size };
  const headers = new Headers({
    "content-type": "application/octet-stream",
    "content-length": String(length),
    "accept-ranges": "bytes",
  });
  if (range.kind === "part") {
    headers.set("content-range", `bytes ${offset}-${offset + length - 1}/${size}`);
  }
  const status = range.kind === "part" ? 206 : 200;
  const read = (at: number) =>
    source.readAt({ offset: offset + at, length: Math.min(chunkBytes, length - at) });
  let first: Uint8Array | null = length === 0 ? null : await read(0);
  let done = first?.length ?? 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (first !== null) {
        controller.enqueue(first);
        first = null;
        return;
      }
      if (done === length) return controller.close();
      try {
        const chunk = await read(done);
        done += chunk.length;
        controller.enqueue(chunk);
      } catch (cause) {
        // The status line is gone: erroring the stream aborts the connection.
        const message = cause instanceof Error ? cause.message : String(cause);
        controller.error(
          new Error(
            `Cannot send bytes ${offset + done}-${offset + length - 1}: ${message}; ` +
              `the response is cut after ${done} of ${length} bytes`,
            { cause },
          ),
        );
      }
    },
  }, { highWaterMark: 2 });
  return new Response(body, { status, headers });
}
