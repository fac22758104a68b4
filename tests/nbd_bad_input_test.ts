/**
 * Goal: nothing an NBD client sends can crash the node, change a volume it did
 * not validly write, or wedge other clients. An invalid option or request gets
 * the error reply proto.md names and the stream stays in sync; a framing
 * violation closes that one connection.
 *
 * Method: a real `atoll serve` process per test and the raw client of
 * tests/_nbd_raw.ts, which sends what real clients never do. Volume "v" (64 MiB)
 * is filled with a known pattern first; every test ends (even when its body
 * failed) by checking that the node process is alive, a verifying qemu-io still
 * writes and reads back volume "scratch", v's SHA-256 (read over HTTP) is still
 * that of its pattern, image "img" is intact, and the node logged no NBD failure.
 */
import assert from "node:assert/strict";
import { bytesSha256, patternBytes, run, streamSha256 } from "./_files.ts";
import { removeData, startNode, type TestNode } from "./_node.ts";
import {
  concat,
  cookieValue,
  encodeGoData,
  encodeMetaData,
  encodeOption,
  RawNbdClient,
  type RawRequest,
  ServerClosedError,
  u32,
} from "./_nbd_raw.ts";
import { optionBytesMax, optionsMax, requestBytesMax } from "../nbd/limits.ts";
import {
  baseAllocation,
  Chunk,
  Command,
  CommandFlag,
  encodeRequest,
  handshakeFlags,
  Info,
  NbdError,
  Option,
  Reply,
  TransmissionFlag,
} from "../nbd/protocol.ts";

const MiB = 1024 * 1024;
const volumeBytes = 64 * MiB;
const imageBytes = 4 * MiB;
const volumePattern = patternBytes(volumeBytes, 7);
const volumePatternSha = bytesSha256(volumePattern);
const imagePattern = patternBytes(imageBytes, 9);
/** An offset where offset + 1024 wraps around in 64 bits. */
const nearEnd = 2n ** 64n - 512n;
const { inval, nospc, perm, overflow } = NbdError;
const { read, write, flush, trim, cache, writeZeroes, blockStatus } = Command;
const flagsBoth = handshakeFlags.fixedNewstyle | handshakeFlags.noZeroes;
/** "IHAVEOPU": one bit off the option magic. */
const optionMagicTypo = 0x49484156454f5055n;
const text = (value: string) => new TextEncoder().encode(value);

const errorNames = new Map<number, string>(
  Object.entries(NbdError).map(([key, value]) => [value, `NBD_E${key.toUpperCase()}`]),
);
const replyNames = new Map<number, string>(
  Object.entries(Reply).map(([key, value]) => [value, key]),
);
const errorName = (error: number) => errorNames.get(error) ?? String(error);

interface Fixture {
  node: TestNode;
  port: number;
  exited: () => boolean;
}

/** Starts a node with v (pattern-filled), scratch and image img; checks its health after `body`. */
async function withNode(body: (fixture: Fixture) => Promise<void>): Promise<void> {
  const node = await startNode();
  let exited = false;
  node.process.status.then(() => exited = true);
  try {
    const fixture: Fixture = { node, port: node.nbdPort, exited: () => exited };
    await setUp(fixture);
    let failure: unknown = null;
    try {
      await body(fixture);
    } catch (error) {
      failure = error;
    }
    // Health is checked even when the body failed: a crash explains a failure.
    await assertHealthy(fixture).catch((error) => {
      throw failure === null ? error : new AggregateError([failure, error], String(failure));
    });
    if (failure !== null) throw failure;
  } finally {
    await node.stop();
    await removeData(node);
  }
}

async function setUp({ node, port }: Fixture): Promise<void> {
  for (const name of ["v", "scratch"]) {
    const response = await node.fetch("/v1/volumes", {
      method: "POST",
      body: JSON.stringify({ name, size: volumeBytes }),
    });
    assert.equal(response.status, 201, await response.text());
  }
  const image = await node.fetch("/v1/images/img", { method: "PUT", body: imagePattern });
  assert.equal(image.status, 201, await image.text());
  const { client } = await RawNbdClient.open(port, "v");
  const chunkBytes = 8 * MiB;
  for (let offset = 0; offset < volumeBytes; offset += chunkBytes) {
    const data = volumePattern.subarray(offset, offset + chunkBytes);
    await client.request({ type: write, offset: BigInt(offset), length: chunkBytes }, data);
    assert.equal((await client.readSimpleReply()).error, 0);
  }
  await client.request({ type: flush });
  assert.equal((await client.readSimpleReply()).error, 0);
  await disconnect(client);
}

async function assertHealthy({ node, exited }: Fixture): Promise<void> {
  assert.ok(!exited(), "the node process is alive");
  const health = await node.fetch("/healthz");
  await health.body?.cancel();
  assert.equal(health.status, 200);
  await qemuVerify(node, 0x5a, "1M");
  const volume = await node.fetch("/v1/volumes/v/data");
  assert.equal(await streamSha256(volume.body!), volumePatternSha, "v still holds its pattern");
  const image = await node.fetch("/v1/images/img");
  assert.equal(await streamSha256(image.body!), bytesSha256(imagePattern), "img is intact");
  const counts = new Map<string, number>();
  for (
    const line of node.log.filter((line) => /atoll\.nbd: .*failed|Uncaught|panicked/.test(line))
  ) {
    counts.set(line, (counts.get(line) ?? 0) + 1);
  }
  const unexpected = [...counts].map(([line, count]) => `${count}× ${line}`);
  assert.deepEqual(unexpected, [], "the node logged no NBD failure");
}

/** A real client writes a pattern to scratch and reads it back verified (qemu-io exits 1 if not). */
async function qemuVerify(node: TestNode, pattern: number, size: string): Promise<void> {
  const uri = node.nbdUri("scratch");
  await run("qemu-io", [
    "-f",
    "raw",
    "-c",
    `write -P ${pattern} 0 ${size}`,
    "-c",
    `read -P ${pattern} 0 ${size}`,
    uri,
  ]);
}

/** Sends NBD_CMD_DISC and waits for the server to close, answering nothing more. */
async function disconnect(client: RawNbdClient): Promise<void> {
  await client.request({ type: Command.disc });
  const { bytes } = await client.waitClosed();
  assert.equal(bytes, 0, "nothing after DISC");
}

/** Reads a 4 KiB stretch of v and compares it with the pattern: the stream is in sync. */
async function assertInSync(client: RawNbdClient, structured = false): Promise<void> {
  const offset = 12288;
  const data = await client.readData({ offset, length: 4096 }, structured);
  assert.deepEqual(data, volumePattern.subarray(offset, offset + 4096), "stream still in sync");
}

function rssBytes(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(status.match(/VmRSS:\s+(\d+) kB/)![1]) * 1024;
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("EOF at every byte of the handshake and first request leaves the node serving", async () => {
  // Goal: a client that vanishes anywhere in the handshake (or inside its first
  // request) costs the node nothing and writes nothing. Method: for every prefix
  // of a valid stream, send it and half-close (the server must hang up within
  // 5 s), then send it again and close abruptly.
  await withNode(async ({ port }) => {
    const stream = concat(
      u32(flagsBoth),
      encodeOption(Option.structuredReply),
      encodeOption(Option.setMetaContext, encodeMetaData("v", [baseAllocation])),
      encodeOption(Option.go, encodeGoData("v", [Info.blockSize])),
      // A 16-byte WRITE of 0xee at offset 0 that never completes.
      encodeRequest({ flags: 0, type: write, cookie: new Uint8Array(8), offset: 0n, length: 16 }),
      new Uint8Array(16).fill(0xee),
    );
    for (let cut = 0; cut < stream.length; cut++) {
      const client = await RawNbdClient.connect(port);
      if (cut > 0) {
        await client.readExact(18);
        await client.write(stream.subarray(0, cut));
      }
      await client.closeWrite();
      await client.waitClosed(5000).catch((error) => {
        throw new Error(`EOF after ${cut} bytes: server did not hang up`, { cause: error });
      });
      const abrupt = await Deno.connect({ hostname: "127.0.0.1", port });
      if (cut > 0) await abrupt.write(stream.subarray(0, cut));
      abrupt.close();
    }
  });
});

Deno.test("invalid options get the right NBD_REP_ERR_* and the connection goes on to GO", async () => {
  // Goal: each malformed, unknown or out-of-order option gets exactly one error
  // reply of the kind proto.md names, naming the option, with a valid message;
  // the haggling stays in sync. Method: one connection sends them all, then
  // LIST, INFO and GO on that same connection, and reads v through it.
  await withNode(async ({ port }) => {
    const client = await RawNbdClient.connect(port);
    try {
      await client.greet();
      /** GO data for "v" whose name length says `nameBytes`. */
      const goNameLength = (nameBytes: number) => {
        const data = encodeGoData("v");
        new DataView(data.buffer).setUint32(0, nameBytes);
        return data;
      };
      /** GO data for "v" with `infos` but an info count of `count`. */
      const goInfoCount = (infos: number[], count: number) => {
        const data = encodeGoData("v", infos);
        new DataView(data.buffer).setUint16(5, count);
        return data;
      };
      /** SET/LIST_META_CONTEXT data whose query length runs past the end. */
      const metaQueryPastEnd = () => {
        const data = encodeMetaData("v", [baseAllocation]);
        new DataView(data.buffer).setUint32(9, 1000);
        return data;
      };
      const goV = () => encodeGoData("v");
      const none = new Uint8Array();
      const { errInvalid: invalid, errUnsup: unsup, errUnknown: unknown } = Reply;
      const cases: [string, number, Uint8Array, number][] = [
        ["GO name length past the end", Option.go, goNameLength(100), invalid],
        ["GO name length one past", Option.go, goNameLength(2), invalid],
        ["GO name length 2^32-1", Option.go, goNameLength(2 ** 32 - 1), invalid],
        ["GO info count 5, one sent", Option.go, goInfoCount([Info.name], 5), invalid],
        [
          "GO info count 0, two sent",
          Option.go,
          goInfoCount([Info.name, Info.blockSize], 0),
          invalid,
        ],
        ["GO with a trailing byte", Option.go, concat(goV(), new Uint8Array(1)), invalid],
        ["INFO of 3 bytes", Option.info, new Uint8Array(3), invalid],
        ["INFO of 0 bytes", Option.info, none, invalid],
        ["LIST with data", Option.list, u32(0), invalid],
        ["STRUCTURED_REPLY with data", Option.structuredReply, u32(0), invalid],
        [
          "SET_META_CONTEXT before STRUCTURED_REPLY",
          Option.setMetaContext,
          encodeMetaData("v", [baseAllocation]),
          invalid,
        ],
        [
          "LIST_META_CONTEXT query past the end",
          Option.listMetaContext,
          metaQueryPastEnd(),
          invalid,
        ],
        ["STARTTLS", Option.startTls, none, unsup],
        ["EXTENDED_HEADERS", Option.extendedHeaders, none, unsup],
        ["EXTENDED_HEADERS with data", Option.extendedHeaders, patternBytes(100, 3), unsup],
        ["PEEK_EXPORT (withdrawn)", 4, none, unsup],
        ["option 0", 0, none, unsup],
        ["option 2^32-1 with 1000 bytes", 2 ** 32 - 1, patternBytes(1000, 4), unsup],
        ["unknown option of the largest length", 0x1234, new Uint8Array(optionBytesMax), unsup],
        ["INFO of an unknown export", Option.info, encodeGoData("nope"), unknown],
        ["GO to an unknown export", Option.go, encodeGoData("nope", [Info.blockSize]), unknown],
        ["GO to an unknown image", Option.go, encodeGoData("image/nope"), unknown],
        ["GO to a path-like name", Option.go, encodeGoData("../v"), unknown],
        ["GO to the default export (none here)", Option.go, encodeGoData(""), unknown],
        ["GO to a bad snapshot reference", Option.go, encodeGoData("snapshot/v@a@b"), unknown],
      ];
      for (const [label, option, data, expected] of cases) {
        const replies = await client.option(option, data);
        assert.equal(replies.length, 1, `${label}: one reply, no NBD_REP_INFO before the error`);
        assert.equal(replies[0].option, option, `${label}: the reply names the option`);
        const got = replyNames.get(replies[0].type) ?? replies[0].type;
        assert.equal(replies[0].type, expected, `${label}: got ${got}`);
        assert.ok(replies[0].data.length <= 4096, `${label}: the message is a protocol string`);
        new TextDecoder("utf-8", { fatal: true }).decode(replies[0].data);
      }
      const listed = await client.option(Option.list);
      assert.equal(listed.at(-1)!.type, Reply.ack);
      const names = listed.slice(0, -1).map((reply) => {
        assert.equal(reply.type, Reply.server);
        const length = new DataView(reply.data.buffer).getUint32(0);
        return new TextDecoder().decode(reply.data.subarray(4, 4 + length));
      });
      assert.deepEqual(names.sort(), ["image/img", "scratch", "v"]);
      assert.equal((await client.option(Option.info, encodeGoData("v"))).at(-1)!.type, Reply.ack);
      assert.equal((await client.go("v")).sizeBytes, BigInt(volumeBytes));
      await assertInSync(client);
      await disconnect(client);
    } finally {
      client.close();
    }
  });
});

Deno.test("export names that are not protocol strings get NBD_REP_ERR_INVALID", async () => {
  // Goal: proto.md says a string MUST NOT contain NUL, MUST be at most 4096
  // bytes and is UTF-8; such a name is a malformed request (ERR_INVALID), not a
  // missing export (ERR_UNKNOWN). Method: INFO and GO with each such name on one
  // connection, which must then still GO into v; reply kinds are compared last.
  await withNode(async ({ port }) => {
    const client = await RawNbdClient.connect(port);
    try {
      await client.greet();
      const names: [string, Uint8Array][] = [
        ["a name with NUL", new Uint8Array([0x76, 0, 0x76])],
        ["a name of one NUL", new Uint8Array([0])],
        ["a name of 5000 bytes", text("a".repeat(5000))],
        ["a name of invalid UTF-8", new Uint8Array([0x76, 0xff, 0xfe])],
      ];
      const got: string[] = [];
      for (const [label, name] of names) {
        for (const option of [Option.info, Option.go]) {
          const replies = await client.option(option, encodeGoData(name));
          assert.equal(replies.length, 1, `${label}: one reply`);
          assert.ok(replies[0].type >= 2 ** 31, `${label}: an error reply`);
          got.push(`${label}: ${replyNames.get(replies[0].type)}`);
        }
      }
      await client.go("v");
      await assertInSync(client);
      await disconnect(client);
      assert.deepEqual(got, names.flatMap(([label]) => Array(2).fill(`${label}: errInvalid`)));
    } finally {
      client.close();
    }
  });
});

Deno.test("framing violations in the handshake close the connection", async () => {
  // Goal: what the server cannot answer in sync (bad magic, unknown client
  // flags, oversized option, unknown EXPORT_NAME, too many options) ends that
  // connection promptly, without a reply. Method: one connection per case;
  // after the greeting, send the bytes and wait (≤ 5 s) for the server to hang
  // up, counting what it sent first.
  await withNode(async ({ port }) => {
    const closes = async (label: string, bytes: Uint8Array): Promise<number> => {
      const client = await RawNbdClient.connect(port);
      await client.readExact(18);
      await client.write(bytes).catch(() => {/* the server may already be gone */});
      const ended = await client.waitClosed(5000).catch((error) => {
        throw new Error(`${label}: the server did not hang up`, { cause: error });
      });
      return ended.bytes;
    };
    const afterFlags = (option: Uint8Array) => concat(u32(flagsBoth), option);
    const goV = encodeGoData("v");
    const cases: [string, Uint8Array][] = [
      ["client flag 0x4", u32(0x4 | 1)],
      ["client flag bit 31", u32(2 ** 31 + 1)],
      ["bad option magic", afterFlags(encodeOption(Option.go, goV, { magic: optionMagicTypo }))],
      ["option length 2^32-1", afterFlags(encodeOption(0x1234, u32(0), { length: 2 ** 32 - 1 }))],
      [
        "option over optionBytesMax",
        afterFlags(encodeOption(Option.go, goV, { length: optionBytesMax + 1 })),
      ],
      [
        "EXPORT_NAME of an unknown export",
        afterFlags(encodeOption(Option.exportName, text("nope"))),
      ],
      [
        "EXPORT_NAME with NUL",
        afterFlags(encodeOption(Option.exportName, new Uint8Array([0x76, 0]))),
      ],
    ];
    for (const [label, bytes] of cases) assert.equal(await closes(label, bytes), 0, label);
    const abort = afterFlags(encodeOption(Option.abort, u32(7)));
    assert.equal(await closes("ABORT with data", abort), 20, "ABORT is acknowledged, then closed");

    // Options in lock step are each answered, until the server hangs up at its limit.
    const lockStep = await RawNbdClient.connect(port);
    await lockStep.greet();
    let answered = 0;
    try {
      for (; answered < 10_000; answered++) {
        const replies = await lockStep.option(0x4242, u32(answered));
        assert.equal(replies[0].type, Reply.errUnsup);
      }
    } catch (error) {
      const closed = error instanceof ServerClosedError ||
        error instanceof Deno.errors.ConnectionReset || error instanceof Deno.errors.BrokenPipe;
      if (!closed) throw error;
    } finally {
      lockStep.close();
    }
    assert.equal(answered, optionsMax, "the server hangs up after optionsMax options");
    // 10 000 options in one burst: the server hangs up rather than hanging.
    const burst = concat(
      u32(flagsBoth),
      ...Array.from({ length: 10_000 }, (_, i) => encodeOption(Option.structuredReply, u32(i))),
    );
    const burstReplyBytes = await closes("10 000 options in a row", burst);
    assert.ok(burstReplyBytes <= optionsMax * 200, `${burstReplyBytes} bytes of replies`);

    // For contrast, a valid EXPORT_NAME without NO_ZEROES: size, flags, 124 zeros.
    const old = await RawNbdClient.connect(port);
    try {
      await old.greet(handshakeFlags.fixedNewstyle);
      await old.sendOption(Option.exportName, text("v"));
      const answer = await old.readExact(134);
      const view = new DataView(answer.buffer);
      assert.equal(view.getBigUint64(0), BigInt(volumeBytes));
      assert.ok(view.getUint16(8) & TransmissionFlag.hasFlags);
      assert.deepEqual(answer.subarray(10), new Uint8Array(124));
      await assertInSync(old);
      await disconnect(old);
    } finally {
      old.close();
    }
  });
});

interface BadRequest {
  label: string;
  request: RawRequest;
  /** Error values proto.md allows (its SHOULD first). */
  allowed: number[];
  payload?: Uint8Array;
}

const bad = (
  label: string,
  allowed: number[],
  request: RawRequest,
  payload?: Uint8Array,
): BadRequest => ({ label, allowed, request, payload });

/** Invalid requests for a 64 MiB read-write export, with the errors proto.md allows. */
function badRequests(structured: boolean): BadRequest[] {
  const kib = patternBytes(1024, 11);
  const end = BigInt(volumeBytes);
  const cases = [
    bad("unknown command 8", [inval], { type: 8, length: 512 }),
    bad("unknown command 100", [inval], { type: 100, offset: 4096n, length: 512 }),
    bad("unknown command 0xffff", [inval], { type: 0xffff }),
    bad("READ with unknown flag bit 5", [inval], { type: read, flags: 1 << 5, length: 512 }),
    bad("READ with unknown flag bit 15", [inval], { type: read, flags: 1 << 15, length: 512 }),
    bad("READ with NO_HOLE", [inval], { type: read, flags: CommandFlag.noHole, length: 512 }),
    bad("TRIM with REQ_ONE", [inval], { type: trim, flags: CommandFlag.reqOne, length: 512 }),
    // The payload of a refused WRITE must still be consumed.
    bad("WRITE with FAST_ZERO", [inval], {
      type: write,
      flags: CommandFlag.fastZero,
      length: 1024,
    }, kib),
    bad(
      "WRITE with unknown flag bit 9",
      [inval],
      { type: write, flags: 1 << 9, length: 1024 },
      kib,
    ),
    bad("FLUSH with an offset", [inval], { type: flush, offset: 512n }),
    bad("FLUSH with a length", [inval], { type: flush, length: 512 }),
    bad("READ near 2^64", [inval], { type: read, offset: nearEnd, length: 1024 }),
    bad("WRITE near 2^64", [nospc, inval], { type: write, offset: nearEnd, length: 1024 }, kib),
    bad("TRIM near 2^64", [inval, nospc], { type: trim, offset: nearEnd, length: 1024 }),
    bad("WRITE_ZEROES near 2^64", [nospc, inval], {
      type: writeZeroes,
      offset: nearEnd,
      length: 1024,
    }),
    bad("CACHE near 2^64", [inval], { type: cache, offset: nearEnd, length: 1024 }),
    bad("READ at 2^63", [inval], { type: read, offset: 2n ** 63n, length: 512 }),
    bad("READ at the end", [inval], { type: read, offset: end, length: 1 }),
    bad("WRITE one byte past the end", [nospc, inval], {
      type: write,
      offset: end - 512n,
      length: 513,
    }, new Uint8Array(513).fill(0xee)),
    bad("READ of 33 MiB", [inval, overflow], { type: read, length: 33 * MiB }),
    bad("READ of 4 GiB - 1", [inval, overflow], { type: read, length: 2 ** 32 - 1 }),
    bad("TRIM of 33 MiB past the end", [inval, nospc], {
      type: trim,
      offset: end - 16n * BigInt(MiB),
      length: 33 * MiB,
    }),
    bad("TRIM of 4 GiB - 1", [inval, nospc], { type: trim, length: 2 ** 32 - 1 }),
    bad("WRITE_ZEROES of 33 MiB past the end", [nospc, inval], {
      type: writeZeroes,
      offset: end - 16n * BigInt(MiB),
      length: 33 * MiB,
    }),
    bad("WRITE_ZEROES of 4 GiB - 1", [nospc, inval], { type: writeZeroes, length: 2 ** 32 - 1 }),
  ];
  if (!structured) {
    return [
      ...cases,
      bad("READ with DF", [inval], { type: read, flags: CommandFlag.df, length: 512 }),
      bad("BLOCK_STATUS without a context", [inval], { type: blockStatus, length: 4096 }),
    ];
  }
  return [
    ...cases,
    bad("READ of 33 MiB with DF", [inval, overflow], {
      type: read,
      flags: CommandFlag.df,
      length: 33 * MiB,
    }),
    bad("BLOCK_STATUS past the end", [inval], {
      type: blockStatus,
      offset: end - 4096n,
      length: 8192,
    }),
    bad("BLOCK_STATUS near 2^64", [inval], { type: blockStatus, offset: nearEnd, length: 1024 }),
  ];
}

/** Sends each request, checks its reply and that the stream is in sync; returns violations. */
async function sendBadRequests(
  client: RawNbdClient,
  requests: BadRequest[],
  structured: boolean,
): Promise<string[]> {
  const problems: string[] = [];
  for (const { label, request, allowed, payload } of requests) {
    const cookie = await client.request(request, payload);
    const reply = await client.readErrorReply();
    const [sent, echoed] = [cookieValue(cookie), cookieValue(reply.cookie)];
    if (sent !== echoed) problems.push(`${label}: reply for cookie ${echoed}, sent ${sent}`);
    if (!allowed.includes(reply.error)) {
      const want = allowed.map(errorName).join(" or ");
      problems.push(`${label}: got ${errorName(reply.error)}, want ${want}`);
    }
    problems.push(...reply.problems.map((problem) => `${label}: ${problem}`));
    if (structured && request.type === read && reply.kind === "simple") {
      problems.push(
        `${label}: a simple reply (${errorName(reply.error)}) to a READ after structured ` +
          `replies were negotiated; proto.md: the server "MUST NOT use a simple reply for ` +
          `NBD_CMD_READ (even for the case of an early NBD_EINVAL due to bad flags)"`,
      );
    }
    await assertInSync(client, structured);
  }
  return problems;
}

Deno.test("invalid requests get a simple error reply and the stream stays in sync", async () => {
  // Goal: without structured replies, every invalid request gets a simple reply
  // with the error value proto.md gives, its cookie echoed, nothing executed,
  // and the next request works. Method: one connection to v sends each and
  // reads v back after each; then large TRIM and WRITE_ZEROES inside scratch
  // (valid, and proto.md says the server SHOULD NOT disconnect) must succeed.
  await withNode(async ({ port }) => {
    const { client } = await RawNbdClient.open(port, "v");
    try {
      assert.deepEqual(await sendBadRequests(client, badRequests(false), false), []);
      await disconnect(client);
    } finally {
      client.close();
    }
    const { client: scratch } = await RawNbdClient.open(port, "scratch");
    try {
      for (const type of [writeZeroes, trim]) {
        await scratch.request({ type: write, length: MiB }, volumePattern.subarray(0, MiB));
        assert.equal((await scratch.readSimpleReply()).error, 0);
        await scratch.request({ type, length: 33 * MiB });
        assert.equal((await scratch.readSimpleReply()).error, 0, `command ${type} of 33 MiB`);
        const data = await scratch.readData({ offset: 0, length: MiB }, false);
        assert.deepEqual(data, new Uint8Array(MiB), `command ${type} leaves zeros`);
      }
      await disconnect(scratch);
    } finally {
      scratch.close();
    }
  });
});

Deno.test("with structured replies, invalid requests get well-formed error replies", async () => {
  // Goal: once structured replies are negotiated, a READ is always answered with
  // structured chunks, errors included (proto.md), other commands with either
  // kind; error chunks are well formed. Method: as the simple-reply test, on a
  // connection with structured replies and base:allocation; violations are
  // gathered and compared last, so that one report lists them all.
  await withNode(async ({ port }) => {
    const problems: string[] = [];
    const { client } = await RawNbdClient.open(port, "v", { blockStatus: true });
    try {
      problems.push(...await sendBadRequests(client, badRequests(true), true));
      // A zero-length READ is unspecified, but its reply must be well formed.
      await client.request({ type: read, offset: 4096n, length: 0 });
      for (const chunk of await client.readStructuredReply()) {
        if (chunk.type === Chunk.offsetData && chunk.payload.length < 9) {
          problems.push(
            `READ of length 0: NBD_REPLY_TYPE_OFFSET_DATA of length ${chunk.payload.length}; ` +
              `proto.md: its "length MUST be at least 9"`,
          );
        }
      }
      await assertInSync(client, true);
      await client.request({ type: blockStatus, flags: CommandFlag.reqOne, length: MiB });
      const [status] = await client.readStructuredReply();
      assert.equal(status.type, Chunk.blockStatus);
      assert.equal(status.payload.length, 12, "REQ_ONE: exactly one extent");
      await disconnect(client);
    } finally {
      client.close();
    }
    // base:allocation selected for another export does not count for v.
    const other = await RawNbdClient.connect(port);
    try {
      await other.greet();
      await other.enableStructuredReplies();
      await other.setMetaContext("scratch");
      await other.go("v");
      await other.request({ type: blockStatus, length: 4096 });
      const { error } = await other.readErrorReply();
      if (error !== inval) problems.push(`BLOCK_STATUS, context of scratch: ${errorName(error)}`);
      await disconnect(other);
    } finally {
      other.close();
    }
    assert.deepEqual(problems, []);
  });
});

Deno.test("framing violations in transmission close the connection and change nothing", async () => {
  // Goal: a bad request magic, a WRITE payload over the limit (proto.md lets the
  // server hang up), a WRITE payload cut short, and bytes after DISC all end the
  // connection without executing anything. Method: one connection per case;
  // wait (≤ 5 s) for the server to hang up; v's checksum is checked after.
  await withNode(async ({ port }) => {
    const closes = async (
      label: string,
      bytes: Uint8Array,
      options: { structured?: boolean; halfClose?: boolean } = {},
    ): Promise<number> => {
      const { client } = await RawNbdClient.open(port, "v", options);
      await client.write(bytes).catch(() => {/* the server may already be gone */});
      if (options.halfClose) await client.closeWrite();
      const ended = await client.waitClosed(5000).catch((error) => {
        throw new Error(`${label}: the server did not hang up`, { cause: error });
      });
      return ended.bytes;
    };
    const header = (request: RawRequest) =>
      encodeRequest({
        flags: request.flags ?? 0,
        type: request.type,
        cookie: new Uint8Array(8),
        offset: request.offset ?? 0n,
        length: request.length ?? 0,
      });
    for (const byte of [0, 3]) {
      const badMagic = header({ type: read, length: 512 });
      badMagic[byte] ^= 0x10;
      assert.equal(await closes(`bad request magic (byte ${byte})`, badMagic), 0);
    }
    for (const length of [requestBytesMax + 1, 33 * MiB, 2 ** 32 - 1]) {
      for (const structured of [false, true]) {
        const bytes = header({ type: write, length });
        assert.equal(await closes(`WRITE of ${length} bytes`, bytes, { structured }), 0);
      }
    }
    const truncated = concat(
      header({ type: write, length: MiB }),
      new Uint8Array(1000).fill(0xee),
    );
    assert.equal(await closes("truncated WRITE", truncated, { halfClose: true }), 0);
    const abrupt = await RawNbdClient.open(port, "v");
    await abrupt.client.write(truncated);
    abrupt.client.close();

    // Requests sent before DISC are still answered; then the server closes.
    const { client } = await RawNbdClient.open(port, "v");
    try {
      const cookie = await client.request({ type: read, length: 4096 });
      await client.request({ type: Command.disc });
      const reply = await client.readSimpleReply(4096);
      assert.deepEqual(reply.cookie, cookie);
      assert.deepEqual(reply.data, volumePattern.subarray(0, 4096));
      assert.equal((await client.waitClosed(5000)).bytes, 0, "nothing is answered after DISC");
    } finally {
      client.close();
    }
    // Bytes after DISC (a WRITE, then garbage) are ignored, never executed.
    const afterDisc = concat(
      header({ type: Command.disc }),
      header({ type: write, length: 4096 }),
      new Uint8Array(4096).fill(0xee),
      patternBytes(4096, 5),
    );
    assert.equal(await closes("data after DISC", afterDisc), 0);
  });
});

Deno.test("writes to a read-only image export get EPERM and change nothing", async () => {
  // Goal: image/NAME is read-only on the wire (NBD_FLAG_READ_ONLY, no TRIM or
  // WRITE_ZEROES advertised) and in fact: every write-like command gets EPERM,
  // with simple replies and with structured ones. Method: both kinds of
  // connection to image/img; reads still return the image; its checksum after.
  await withNode(async ({ port }) => {
    const zeros = (length: number) => new Uint8Array(length);
    const cases = [
      bad("WRITE", [perm], { type: write, length: 4096 }, zeros(4096).fill(1)),
      bad(
        "WRITE with FUA",
        [perm],
        { type: write, flags: CommandFlag.fua, length: 512 },
        zeros(512),
      ),
      bad("TRIM", [perm], { type: trim, length: MiB }),
      bad("WRITE_ZEROES", [perm], { type: writeZeroes, length: MiB }),
      bad("WRITE_ZEROES with NO_HOLE", [perm], {
        type: writeZeroes,
        flags: CommandFlag.noHole,
        length: 4096,
      }),
      bad("WRITE past the end", [perm, nospc], {
        type: write,
        offset: BigInt(imageBytes),
        length: 512,
      }, zeros(512)),
      bad("TRIM near 2^64", [perm, inval], { type: trim, offset: nearEnd, length: 1024 }),
    ];
    for (const structured of [false, true]) {
      const opened = await RawNbdClient.open(port, "image/img", { structured });
      const { client, sizeBytes, flags } = opened;
      try {
        assert.equal(sizeBytes, BigInt(imageBytes));
        assert.ok(flags & TransmissionFlag.readOnly, "NBD_FLAG_READ_ONLY");
        assert.equal(flags & (TransmissionFlag.sendTrim | TransmissionFlag.sendWriteZeroes), 0);
        for (const { label, request, allowed, payload } of cases) {
          const cookie = await client.request(request, payload);
          const reply = await client.readErrorReply();
          assert.deepEqual(reply.cookie, cookie, label);
          assert.deepEqual(reply.problems, [], label);
          assert.ok(allowed.includes(reply.error), `${label}: got ${errorName(reply.error)}`);
        }
        const data = await client.readData({ offset: 0, length: MiB }, structured);
        assert.deepEqual(data, imagePattern.subarray(0, MiB));
        await client.request({ type: flush });
        assert.equal((await client.readErrorReply()).error, 0, "FLUSH of a read-only export");
        await disconnect(client);
      } finally {
        client.close();
      }
    }
  });
});

Deno.test("a client that never reads replies neither balloons the node nor stalls others", async () => {
  // Goal: per-connection work is bounded: a client pipelining thousands of
  // READs and never reading the replies holds a bounded amount of node memory,
  // other clients are served meanwhile, and its leaving is not a device error.
  // Method: 5000 READs of 64 KiB (312 MiB of replies) in one write; after
  // 1.5 s, another raw client and qemu-io must finish within 5 s and the node's
  // RSS may have grown by < 100 MiB; then the stuck client closes.
  await withNode(async ({ node, port }) => {
    const before = rssBytes(node.process.pid);
    const { client: stuck } = await RawNbdClient.open(port, "v");
    const requests = concat(...Array.from({ length: 5000 }, (_, i) =>
      encodeRequest({
        flags: 0,
        type: read,
        cookie: new Uint8Array(8).fill(i & 0xff),
        offset: BigInt((i % 1000) * 65536),
        length: 65536,
      })));
    const writing = stuck.write(requests).catch(() => {/* closed below */});
    try {
      await delay(1500);
      const started = performance.now();
      const { client: other } = await RawNbdClient.open(port, "v", { structured: true });
      const data = await other.readData({ offset: 5 * MiB, length: MiB }, true);
      assert.deepEqual(data, volumePattern.subarray(5 * MiB, 6 * MiB));
      await disconnect(other);
      await qemuVerify(node, 0x33, "4M");
      const elapsedMs = performance.now() - started;
      assert.ok(elapsedMs < 5000, `other clients waited ${elapsedMs.toFixed(0)} ms`);
      const grownBytes = rssBytes(node.process.pid) - before;
      assert.ok(grownBytes < 100 * MiB, `node RSS grew by ${(grownBytes / MiB).toFixed(0)} MiB`);
    } finally {
      stuck.close();
      await writing;
    }
    await delay(500);
    const logged = node.log.filter((line) => line.includes("atoll.nbd: request failed"));
    assert.equal(
      logged.length,
      0,
      `closing the stuck client logged ${logged.length} device failures, e.g. ${logged[0]}`,
    );
  });
});

Deno.test("connections idle after one maximum-size request do not pin its buffers", async () => {
  // Goal: memory held by idle connections stays bounded node-wide, whatever
  // they did before going idle. Method: 4 connections each READ exactly
  // requestBytesMax (the largest valid payload) of v, check it, and stay open;
  // the node's RSS may grow by a shared working set, not 32 MiB per connection.
  await withNode(async ({ node, port }) => {
    const connectionsCount = 4;
    const expected = bytesSha256(volumePattern.subarray(0, requestBytesMax));
    const before = rssBytes(node.process.pid);
    const clients: RawNbdClient[] = [];
    try {
      for (let i = 0; i < connectionsCount; i++) {
        const { client } = await RawNbdClient.open(port, "v");
        clients.push(client);
        const data = await client.readData({ offset: 0, length: requestBytesMax }, false);
        assert.equal(bytesSha256(data), expected, "a READ of requestBytesMax");
      }
      const grownBytes = rssBytes(node.process.pid) - before;
      assert.ok(
        grownBytes < 2.5 * requestBytesMax,
        `${connectionsCount} idle connections pin ${(grownBytes / MiB).toFixed(0)} MiB of RSS`,
      );
    } finally {
      for (const client of clients) client.close();
    }
  });
});

Deno.test("1000 idle connections while a verifying client still works", async () => {
  // Goal: many idle connections (half in the handshake, half in transmission)
  // neither block other clients nor cost more than small buffers each. Method:
  // hold 1000 raw connections open; qemu-io and nbdinfo must work, an idle one
  // still reads correctly, and node RSS may grow by < 100 KiB per connection
  // (Deno itself needs about 20 KiB for an idle TCP connection).
  const connectionsCount = 1000;
  // Both processes hold one descriptor per connection: raise the soft limit
  // (the node inherits it) if it is too low.
  const limit = Number((await run("sh", ["-c", "ulimit -n"])).trim());
  if (limit < 2 * connectionsCount) {
    await run("prlimit", [`--pid=${Deno.pid}`, `--nofile=${4 * connectionsCount}:`]);
  }
  await withNode(async ({ node, port }) => {
    const before = rssBytes(node.process.pid);
    const clients: RawNbdClient[] = [];
    try {
      for (let i = 0; i < connectionsCount; i += 100) {
        clients.push(
          ...await Promise.all(Array.from({ length: 100 }, async (_, j) => {
            if ((i + j) % 2 === 0) return (await RawNbdClient.open(port, "v")).client;
            const client = await RawNbdClient.connect(port);
            await client.greet();
            return client;
          })),
        );
      }
      await qemuVerify(node, 0x5a, "1M");
      await run("nbdinfo", [node.nbdUri("v")]);
      await assertInSync(clients[0]);
      const grownMiB = (rssBytes(node.process.pid) - before) / MiB;
      assert.ok(
        grownMiB * MiB < connectionsCount * 100 * 1024,
        `${connectionsCount} idle connections grew node RSS by ${grownMiB.toFixed(0)} MiB`,
      );
    } finally {
      for (const client of clients) client.close();
    }
  });
});
