/**
 * Goal: frame heads and message frames round-trip; malformed heads are refused
 * (a framing violation), not guessed at; bytes of a hand-written frame decode
 * as documented in link_wire.ts.
 * Method: encode, decode and compare; hand-made bytes.
 */
import assert from "node:assert/strict";
import {
  decodeFrameHead,
  encodeFrameHead,
  encodeMessageFrame,
  frameData,
  frameHeadBytes,
  frameHeader,
  FrameKind,
  frameMethod,
  isHttpAnswer,
  setFrameId,
} from "./link_wire.ts";
import { rpcBytesMax } from "./rpc_message.ts";

/** The frame `parts` make, as a reader gets it. */
function read(parts: Uint8Array[]) {
  const bytes = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  const head = decodeFrameHead(bytes, 0);
  assert.equal(head.bodyBytes, bytes.length - frameHeadBytes);
  return { ...head, body: bytes.subarray(frameHeadBytes) };
}

Deno.test("a frame head round-trips, and its bytes are as documented", () => {
  const bytes = new Uint8Array(frameHeadBytes + 4);
  const head = {
    bodyBytes: 300,
    id: 0xfffffffe,
    kind: FrameKind.call,
    methodBytes: 4,
    headerBytes: 9,
  };
  encodeFrameHead(bytes, 4, head);
  assert.deepEqual(decodeFrameHead(bytes, 4), head);
  assert.deepEqual(
    [...bytes.subarray(4)],
    [0, 0, 1, 44, 0xff, 0xff, 0xff, 0xfe, 16, 4, 0, 0, 0, 0, 0, 9],
  );
});

Deno.test("malformed frame heads are refused", () => {
  const head = (edit: (view: DataView) => void) => {
    const bytes = new Uint8Array(frameHeadBytes);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, 10);
    view.setUint8(8, FrameKind.reply);
    edit(view);
    return () => decodeFrameHead(bytes, 0);
  };
  assert.throws(head((view) => view.setUint8(8, 99)), RangeError, "unknown kind");
  assert.throws(head((view) => view.setUint16(10, 1)), RangeError, "reserved bits");
  assert.throws(head((view) => view.setUint32(12, 11)), RangeError, "header past the body");
  assert.throws(head((view) => view.setUint8(9, 1)), RangeError, "a method in a reply");
  assert.doesNotThrow(head(() => {}));
});

Deno.test("encodeMessageFrame() carries method, header and data, inline or as a second part", () => {
  const method = new TextEncoder().encode("object.change");
  const small = new Uint8Array([1, 2, 3]);
  const inline = encodeMessageFrame({ kind: FrameKind.call, id: 7, method }, { a: 1 }, small, 64);
  assert.equal(inline.length, 1);
  const frame = read(inline);
  assert.equal(frame.id, 7);
  assert.equal(frameMethod(frame), "object.change");
  assert.deepEqual(frameHeader(frame), { a: 1 });
  assert.deepEqual(frameData(frame), small);

  const large = new Uint8Array(100).fill(9);
  const parts = encodeMessageFrame({ kind: FrameKind.reply, id: 8 }, {}, large, 64);
  assert.equal(parts.length, 2);
  assert.equal(parts[1], large, "large data is sent as it is, not copied");
  setFrameId(parts[0], 9);
  const reply = read(parts);
  assert.equal(reply.id, 9);
  assert.deepEqual(frameHeader(reply), {});
  assert.deepEqual(frameData(reply), large);
});

Deno.test("data given in parts goes out as those parts when large, joined inline when small", () => {
  const a = new Uint8Array(80).fill(1);
  const b = new Uint8Array(0);
  const c = new Uint8Array(50).fill(2);
  const parts = encodeMessageFrame({ kind: FrameKind.call, id: 3 }, { n: 3 }, [a, b, c], 64);
  assert.equal(parts.length, 3, "the empty part is left out");
  assert.equal(parts[1], a, "each large part is sent as it is, not copied");
  assert.equal(parts[2], c);
  const frame = read(parts);
  assert.deepEqual(frameHeader(frame), { n: 3 });
  assert.deepEqual([...frameData(frame)], [...a, ...c]);

  const inline = encodeMessageFrame({ kind: FrameKind.call, id: 4 }, {}, [
    c.subarray(0, 3),
    a.subarray(0, 2),
  ], 64);
  assert.equal(inline.length, 1);
  assert.deepEqual([...frameData(read(inline))], [2, 2, 2, 1, 1]);
  assert.throws(
    () =>
      encodeMessageFrame({ kind: FrameKind.reply, id: 1 }, {}, [a, new Uint8Array(rpcBytesMax)], 0),
    RangeError,
    "the parts together are bounded as one message",
  );
});

Deno.test("a message over rpcBytesMax cannot be encoded; a header that is not an object cannot be read", () => {
  const huge = new Uint8Array(rpcBytesMax);
  assert.throws(
    () => encodeMessageFrame({ kind: FrameKind.reply, id: 1 }, { x: 1 }, huge, 0),
    RangeError,
  );
  const parts = encodeMessageFrame({ kind: FrameKind.reply, id: 1 }, {}, undefined, 0);
  const frame = read(parts);
  frame.body.set(new TextEncoder().encode("[]"));
  assert.throws(() => frameHeader(frame), TypeError);
});

Deno.test("isHttpAnswer() tells an HTTP status line from a frame head", () => {
  assert.ok(isHttpAnswer(new TextEncoder().encode("HTTP/1.1 400 Bad Request\r\n"), 0));
  const head = new Uint8Array(frameHeadBytes);
  encodeFrameHead(head, 0, {
    bodyBytes: 0,
    id: 1,
    kind: FrameKind.pong,
    methodBytes: 0,
    headerBytes: 0,
  });
  assert.ok(!isHttpAnswer(head, 0));
});
