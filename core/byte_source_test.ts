/**
 * Goal: a ByteSource reads a byte stream into the caller's buffer (the bytes
 * land in the caller's memory, which comes back at the end too), `prepended`
 * serves bytes already read before the rest, iterating yields every byte,
 * and a stop cancels the stream. Method: real byte streams
 * (`ReadableStream` of type "bytes") fed in pieces.
 */
import assert from "node:assert/strict";
import { prepended, readIntoAt, streamSource } from "./byte_source.ts";

/** A byte stream of `bytes` in pieces of `piece`; `cancelled()` tells whether it was cancelled. */
function byteStream(bytes: Uint8Array, piece: number) {
  let at = 0;
  let cancelled = false;
  const stream = new ReadableStream({
    type: "bytes",
    pull(controller: ReadableByteStreamController) {
      if (at >= bytes.length) {
        controller.close();
        controller.byobRequest?.respond(0); // a read waiting learns of the end
        return;
      }
      controller.enqueue(bytes.slice(at, at + piece));
      at += piece;
    },
    cancel() {
      cancelled = true;
    },
  });
  return { stream, cancelled: () => cancelled };
}

const pattern = (length: number) => Uint8Array.from({ length }, (_, i) => (i * 13 + 5) & 0xff);
const fail = (cause: unknown) => new Error("broken", { cause });

Deno.test("a byte source fills the caller's buffer and hands it back at the end", async () => {
  const bytes = pattern(10_000);
  const source = streamSource(byteStream(bytes, 3000).stream, fail);
  let buffer: Uint8Array = new Uint8Array(16_384);
  let filled = 0;
  while (true) {
    const read = await readIntoAt(source, buffer, filled);
    buffer = read.buffer;
    assert.equal(buffer.length, 16_384);
    if (read.bytes === 0) break;
    assert.ok(read.bytes <= 3000);
    filled += read.bytes;
  }
  assert.equal(filled, bytes.length);
  assert.deepEqual(buffer.subarray(0, filled), bytes);
  assert.equal((await source.readInto(new Uint8Array(8))).length, 0, "ended for good");
});

Deno.test("bytes read ahead come first, then the rest; iterating yields every byte", async () => {
  const bytes = pattern(5000);
  const source = streamSource(byteStream(bytes, 1024).stream, fail);
  const head = await source.readInto(new Uint8Array(10));
  assert.deepEqual(head, bytes.subarray(0, 10));
  const chunks: Uint8Array[] = [];
  for await (const chunk of prepended(head, source)) chunks.push(chunk);
  const all = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  chunks.reduce((at, chunk) => (all.set(chunk, at), at + chunk.length), 0);
  assert.deepEqual(all, bytes);
});

Deno.test("stopping early cancels the stream; a stream that fails fails the read as told", async () => {
  const { stream, cancelled } = byteStream(pattern(100_000), 1000);
  for await (const _ of streamSource(stream, fail)) break;
  assert.ok(cancelled(), "an iteration stopped early cancels");

  const broken = new ReadableStream<Uint8Array>({
    type: "bytes",
    pull(controller) {
      controller.error(new Error("connection reset"));
    },
  });
  const source = streamSource(broken, fail);
  await assert.rejects(source.readInto(new Uint8Array(64)), /broken/);
});
