/**
 * Wire format of nbd/protocol.ts: encode/decode round trips, byte layouts
 * checked against proto.md, and request streams captured from real clients.
 *
 * protocol.ts has decoders only for what a server reads (requests); replies are
 * decoded with the raw test client's decoders (tests/_nbd_raw.ts), which were
 * written from proto.md separately, so each round trip checks one
 * implementation against the other.
 */
import assert from "node:assert/strict";
import {
  decodeChunkHeader,
  decodeOptionHeader,
  decodeOptionReplyHeader,
  decodeSimpleReply,
} from "../tests/_nbd_raw.ts";
import {
  Chunk,
  chunkFlagDone,
  clientFlagsKnown,
  Command,
  CommandFlag,
  decodeRequest,
  encodeChunkHeader,
  encodeOptionReply,
  encodeRequest,
  encodeSimpleReply,
  handshakeFlags,
  Info,
  NbdError,
  Option,
  Reply,
  type Request,
  requestHeaderBytes,
  simpleReplyBytes,
  structuredHeaderBytes,
} from "./protocol.ts";

const hex = (text: string) => Uint8Array.from(text.match(/../g)!.map((byte) => parseInt(byte, 16)));
const cookie = hex("0123456789abcdef");

Deno.test("constants have the values proto.md gives them", () => {
  // Goal: a typo in a constant would make us talk past every client; pin them
  // to the numbers printed in proto.md (sections Values and Error values).
  assert.equal(Reply.errUnsup, 0x80000001);
  assert.equal(Reply.errInvalid, 0x80000003);
  assert.equal(Reply.errUnknown, 0x80000006);
  assert.equal(Reply.errTooBig, 0x80000009);
  assert.deepEqual(Option, {
    exportName: 1,
    abort: 2,
    list: 3,
    startTls: 5,
    info: 6,
    go: 7,
    structuredReply: 8,
    listMetaContext: 9,
    setMetaContext: 10,
    extendedHeaders: 11,
  });
  assert.deepEqual(NbdError, {
    perm: 1,
    io: 5,
    nomem: 12,
    inval: 22,
    nospc: 28,
    overflow: 75,
    notsup: 95,
    shutdown: 108,
  });
  assert.equal(Chunk.error, 32769);
  assert.equal(Chunk.errorOffset, 32770);
  assert.equal(Info.blockSize, 3);
  assert.equal(clientFlagsKnown, handshakeFlags.fixedNewstyle | handshakeFlags.noZeroes);
  assert.deepEqual([requestHeaderBytes, simpleReplyBytes, structuredHeaderBytes], [28, 16, 20]);
});

Deno.test("encodeRequest() and decodeRequest() round-trip extreme values", () => {
  // Goal: every field survives, including u64 offsets past 2^53 and the widest
  // u32 length. Method: encode, decode, compare; also decode from inside a
  // larger buffer (byteOffset ≠ 0), as a server reading a stream would.
  const requests: Request[] = [
    { flags: 0, type: Command.read, cookie, offset: 0n, length: 0 },
    { flags: CommandFlag.fua, type: Command.write, cookie, offset: 512n, length: 4096 },
    { flags: 0xffff, type: 0xffff, cookie, offset: 2n ** 64n - 1n, length: 0xffffffff },
    { flags: 0, type: Command.trim, cookie, offset: 2n ** 64n - 512n, length: 1024 },
  ];
  for (const request of requests) {
    const bytes = encodeRequest(request);
    assert.equal(bytes.length, requestHeaderBytes);
    assert.deepEqual(decodeRequest(bytes), request);
    const stream = new Uint8Array(7 + requestHeaderBytes);
    stream.set(bytes, 7);
    assert.deepEqual(decodeRequest(stream.subarray(7)), request);
  }
});

Deno.test("encodeRequest() lays bytes out as proto.md's request message", () => {
  // Goal: the byte layout, not only the round trip (a swapped pair of fields
  // would round-trip fine). Method: compare with bytes written out by hand.
  const bytes = encodeRequest({
    flags: CommandFlag.fua,
    type: Command.write,
    cookie,
    offset: 0x1122334455667788n,
    length: 0x1000,
  });
  assert.deepEqual(
    bytes,
    hex("25609513" + "0001" + "0001" + "0123456789abcdef" + "1122334455667788" + "00001000"),
  );
});

Deno.test("decodeRequest() rejects a wrong magic and copies the cookie", () => {
  // Goal: a bad magic is reported (the server closes on it), and the cookie
  // does not alias the header buffer the server reuses for the next request.
  const bytes = encodeRequest({ flags: 0, type: 0, cookie, offset: 0n, length: 0 });
  const decoded = decodeRequest(bytes)!;
  bytes.fill(0xee);
  assert.deepEqual(decoded.cookie, cookie);
  assert.equal(decodeRequest(bytes), null);
  const simpleMagic = encodeSimpleReply(cookie, 0);
  assert.equal(decodeRequest(new Uint8Array([...simpleMagic, ...new Uint8Array(12)])), null);
});

Deno.test("encodeSimpleReply() round-trips and matches proto.md's layout", () => {
  // Goal: magic 0x67446698, u32 error, the cookie echoed. Method: encode with
  // the server's encoder, decode with the client's, and compare raw bytes.
  const bytes = encodeSimpleReply(cookie, NbdError.nospc);
  assert.deepEqual(bytes, hex("67446698" + "0000001c" + "0123456789abcdef"));
  assert.deepEqual(decodeSimpleReply(bytes), { error: 28, cookie });
  assert.equal(decodeSimpleReply(new Uint8Array(16)), null);
});

Deno.test("encodeChunkHeader() round-trips and reserves the fixed fields", () => {
  // Goal: chunk header fields land where proto.md puts them, and `extra`
  // bytes follow for the caller to fill. Method: encode an error chunk the way
  // transmission.ts does, decode it, check the layout byte for byte.
  const { bytes, view } = encodeChunkHeader(cookie, {
    type: Chunk.error,
    flags: chunkFlagDone,
    payloadBytes: 6,
  }, 6);
  view.setUint32(20, NbdError.inval);
  assert.equal(bytes.length, structuredHeaderBytes + 6);
  assert.deepEqual(
    bytes,
    hex("668e33ef" + "0001" + "8001" + "0123456789abcdef" + "00000006" + "00000016" + "0000"),
  );
  assert.deepEqual(decodeChunkHeader(bytes), {
    flags: chunkFlagDone,
    type: Chunk.error,
    cookie,
    length: 6,
  });
  const data = encodeChunkHeader(cookie, {
    type: Chunk.offsetData,
    flags: 0,
    payloadBytes: 2 ** 25 + 8,
  });
  assert.equal(data.bytes.length, structuredHeaderBytes);
  assert.equal(decodeChunkHeader(data.bytes)!.length, 2 ** 25 + 8);
  assert.equal(
    decodeChunkHeader(new Uint8Array([...encodeSimpleReply(cookie, 0), 0, 0, 0, 0])),
    null,
  );
});

Deno.test("encodeOptionReply() round-trips with and without data", () => {
  // Goal: magic 0x3e889045565a9 (64 bits), option, type, length, data.
  const empty = encodeOptionReply(Option.go, Reply.ack);
  assert.deepEqual(empty, hex("0003e889045565a9" + "00000007" + "00000001" + "00000000"));
  assert.deepEqual(decodeOptionReplyHeader(empty), { option: 7, type: 1, length: 0 });
  const message = new TextEncoder().encode('no export named "x"');
  const error = encodeOptionReply(Option.info, Reply.errUnknown, message);
  assert.deepEqual(decodeOptionReplyHeader(error), {
    option: Option.info,
    type: Reply.errUnknown,
    length: message.length,
  });
  assert.deepEqual(error.subarray(20), message);
});

/**
 * What nbdinfo (libnbd 1.14.2) sent for `nbdinfo nbd://127.0.0.1:PORT/v`,
 * captured with a recording TCP proxy between it and an Atoll node (so every
 * option got a real answer): client flags, STRUCTURED_REPLY, INFO "v" asking
 * for infos 3,1,2, LIST_META_CONTEXT "v" with no query, GO "v", a 32-byte READ
 * at 0 (content probing), then DISC.
 */
const nbdinfoCapture = hex(
  "00000003" +
    "49484156454f5054" + "00000008" + "00000000" +
    "49484156454f5054" + "00000006" + "0000000d" + "00000001" + "76" + "0003" + "000300010002" +
    "49484156454f5054" + "00000009" + "00000009" + "00000001" + "76" + "00000000" +
    "49484156454f5054" + "00000007" + "0000000d" + "00000001" + "76" + "0003" + "000300010002" +
    "25609513" + "0000" + "0000" + "0000000000000001" + "0000000000000000" + "00000020" +
    "25609513" + "0000" + "0002" + "0000000000000002" + "0000000000000000" + "00000000",
);

/**
 * The start of what qemu-io 7.2 sent for
 * `qemu-io -f raw -c 'write -P 0x5a 0 4k' nbd://127.0.0.1:PORT/v`, captured the
 * same way: client flags, STRUCTURED_REPLY, SET_META_CONTEXT "v"
 * base:allocation, GO "v" asking for BLOCK_SIZE, then the WRITE header (FUA,
 * because qemu-io defaults to writethrough); its 4096 payload bytes are cut off.
 */
const qemuCapture = hex(
  "00000003" +
    "49484156454f5054" + "00000008" + "00000000" +
    "49484156454f5054" + "0000000a" + "0000001c" + "00000001" + "76" + "00000001" + "0000000f" +
    "626173653a616c6c6f636174696f6e" +
    "49484156454f5054" + "00000007" + "00000009" + "00000001" + "76" + "0001" + "0003" +
    "25609513" + "0001" + "0001" + "000055bddf5cd0b0" + "0000000000000000" + "00001000",
);

/** Splits a captured client stream into client flags, options, and request headers. */
function splitCapture(bytes: Uint8Array) {
  const view = new DataView(bytes.buffer);
  const clientFlags = view.getUint32(0);
  const options: { option: number; data: Uint8Array }[] = [];
  let at = 4;
  for (;;) {
    const header = decodeOptionHeader(bytes.subarray(at));
    assert.ok(header !== null, `option magic at byte ${at}`);
    options.push({ option: header.option, data: bytes.slice(at + 16, at + 16 + header.length) });
    at += 16 + header.length;
    if (header.option === Option.go || header.option === Option.exportName) break;
  }
  const requests: Request[] = [];
  for (; at + requestHeaderBytes <= bytes.length; at += requestHeaderBytes) {
    const request = decodeRequest(bytes.subarray(at, at + requestHeaderBytes));
    assert.ok(request !== null, `request magic at byte ${at}`);
    requests.push(request);
  }
  assert.equal(at, bytes.length, "the capture ends on a request boundary");
  return { clientFlags, options, requests };
}

Deno.test("decodeRequest() parses the requests nbdinfo sent", () => {
  // Goal: our decoder reads a real client's stream, not only our own encoder's.
  // Method: split the captured bytes (above) at the boundaries the options'
  // lengths give, decode each request header, and re-encode it byte-exactly.
  const { clientFlags, options, requests } = splitCapture(nbdinfoCapture);
  assert.equal(clientFlags & ~clientFlagsKnown, 0, "only flags we accept");
  assert.deepEqual(options.map((o) => o.option), [
    Option.structuredReply,
    Option.info,
    Option.listMetaContext,
    Option.go,
  ]);
  assert.deepEqual(requests, [
    { flags: 0, type: Command.read, cookie: hex("0000000000000001"), offset: 0n, length: 32 },
    { flags: 0, type: Command.disc, cookie: hex("0000000000000002"), offset: 0n, length: 0 },
  ]);
  const tail = nbdinfoCapture.subarray(nbdinfoCapture.length - 2 * requestHeaderBytes);
  assert.deepEqual(
    [...encodeRequest(requests[0]), ...encodeRequest(requests[1])],
    [...tail],
  );
});

Deno.test("decodeRequest() parses the WRITE qemu-io sent", () => {
  // Goal and method as above, with qemu's option order and its FUA write.
  const { options, requests } = splitCapture(qemuCapture);
  assert.deepEqual(options.map((o) => o.option), [
    Option.structuredReply,
    Option.setMetaContext,
    Option.go,
  ]);
  const query = new TextDecoder().decode(options[1].data.subarray(13));
  assert.equal(query, "base:allocation");
  assert.deepEqual(requests, [{
    flags: CommandFlag.fua,
    type: Command.write,
    cookie: hex("000055bddf5cd0b0"),
    offset: 0n,
    length: 4096,
  }]);
});
