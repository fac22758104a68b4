/** Streams the bytes of a volume, image or snapshot as an HTTP response, with Range. */
import type { ByteRange } from "../core/mod.ts";
import { parseRange } from "./range.ts";

/** Anything with a size that reads byte ranges: Volume or FrozenView. */
export interface Readable {
  readonly sizeBytes: number;
  readAt(range: ByteRange, into?: Uint8Array): Promise<Uint8Array>;
}

const chunkBytes = 1024 * 1024;

/** A 200 with every byte, a 206 with the asked range, or a 416 past the end. */
export function dataResponse(source: Readable, rangeHeader: string | undefined): Response {
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
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const part = Math.min(chunkBytes, length - sent);
      if (part === 0) return controller.close();
      controller.enqueue(await source.readAt({ offset: offset + sent, length: part }));
      sent += part;
    },
  }, { highWaterMark: 2 });
  return new Response(body, { status: range.kind === "part" ? 206 : 200, headers });
}
