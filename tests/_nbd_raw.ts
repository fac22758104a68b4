/**
 * Test harness: a raw NBD client over `Deno.connect` that can say anything,
 * including what no real client would (bad magics, lying lengths, truncated
 * frames), and reads the server's answers byte-exactly. Every read has a
 * deadline: a server that hangs fails the test instead of stalling it.
 *
 * The reply decoders here are written from proto.md independently of the
 * server's encoders in nbd/protocol.ts, so that a round trip through both
 * checks one against the other.
 */
import {
  baseAllocation,
  Chunk as ChunkType,
  chunkFlagDone,
  Command,
  encodeRequest,
  handshakeFlags,
  nbdMagic,
  Option,
  optionMagic,
  optionReplyMagic,
  Reply,
  requestHeaderBytes,
  simpleReplyBytes,
  simpleReplyMagic,
  structuredHeaderBytes,
  structuredReplyMagic,
} from "../nbd/protocol.ts";

const encoder = new TextEncoder();
const readDeadlineMsDefault = 10_000;

/** A decoded option reply (fixed newstyle). */
export interface OptionReply {
  option: number;
  type: number;
  data: Uint8Array;
}

/** A decoded simple reply header. */
export interface SimpleReply {
  error: number;
  cookie: Uint8Array;
}

/** A decoded structured reply chunk header with its payload. */
export interface Chunk {
  flags: number;
  type: number;
  cookie: Uint8Array;
  payload: Uint8Array;
}

/** A reply that should carry an error, simple or structured. */
export interface ErrorReply {
  kind: "simple" | "chunk";
  cookie: Uint8Array;
  /** The NBD error value (0 when the reply was a success after all). */
  error: number;
  /** Violations of proto.md's rules for error chunks. */
  problems: string[];
}

/** A request the raw client sends; unset fields are zero. */
export interface RawRequest {
  type: number;
  flags?: number;
  offset?: bigint;
  length?: number;
  /** Defaults to a counter, so that each request has a distinct cookie. */
  cookie?: Uint8Array;
}

/** The server closed (FIN or RST) while the client waited for bytes. */
export class ServerClosedError extends Error {
  override name = "ServerClosedError";
}

/** Decodes a 20-byte option reply header; null when its magic is wrong. */
export function decodeOptionReplyHeader(
  bytes: Uint8Array,
): { option: number; type: number; length: number } | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, 20);
  if (view.getBigUint64(0) !== optionReplyMagic) return null;
  return { option: view.getUint32(8), type: view.getUint32(12), length: view.getUint32(16) };
}

/** Decodes a 16-byte simple reply header; null when its magic is wrong. */
export function decodeSimpleReply(bytes: Uint8Array): SimpleReply | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, simpleReplyBytes);
  if (view.getUint32(0) !== simpleReplyMagic) return null;
  return { error: view.getUint32(4), cookie: bytes.slice(8, 16) };
}

/** Decodes a 20-byte structured chunk header; null when its magic is wrong. */
export function decodeChunkHeader(
  bytes: Uint8Array,
): { flags: number; type: number; cookie: Uint8Array; length: number } | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, structuredHeaderBytes);
  if (view.getUint32(0) !== structuredReplyMagic) return null;
  return {
    flags: view.getUint16(4),
    type: view.getUint16(6),
    cookie: bytes.slice(8, 16),
    length: view.getUint32(16),
  };
}

/** Decodes a client option header (what a server reads); null when its magic is wrong. */
export function decodeOptionHeader(bytes: Uint8Array): { option: number; length: number } | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, 16);
  if (view.getBigUint64(0) !== optionMagic) return null;
  return { option: view.getUint32(8), length: view.getUint32(12) };
}

/** A client option: magic, option, length, data; `magic` and `length` may lie. */
export function encodeOption(
  option: number,
  data: Uint8Array = new Uint8Array(),
  header: { magic?: bigint; length?: number } = {},
): Uint8Array {
  const bytes = new Uint8Array(16 + data.length);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, header.magic ?? optionMagic);
  view.setUint32(8, option);
  view.setUint32(12, header.length ?? data.length);
  bytes.set(data, 16);
  return bytes;
}

/** INFO/GO data: u32 name length, name, u16 count, count × u16 info. */
export function encodeGoData(name: string | Uint8Array, infos: number[] = []): Uint8Array {
  const nameBytes = typeof name === "string" ? encoder.encode(name) : name;
  const bytes = new Uint8Array(4 + nameBytes.length + 2 + 2 * infos.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, nameBytes.length);
  bytes.set(nameBytes, 4);
  view.setUint16(4 + nameBytes.length, infos.length);
  infos.forEach((info, i) => view.setUint16(6 + nameBytes.length + 2 * i, info));
  return bytes;
}

/** LIST/SET_META_CONTEXT data: u32 name length, name, u32 count, count × (u32 length, query). */
export function encodeMetaData(name: string, queries: string[]): Uint8Array {
  const parts = [name, ...queries].map((text) => encoder.encode(text));
  const total = 8 + parts.reduce((sum, part, i) => sum + part.length + (i > 0 ? 4 : 0), 0);
  const bytes = new Uint8Array(total);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, parts[0].length);
  bytes.set(parts[0], 4);
  let at = 4 + parts[0].length;
  view.setUint32(at, queries.length);
  at += 4;
  for (const query of parts.slice(1)) {
    view.setUint32(at, query.length);
    bytes.set(query, at + 4);
    at += 4 + query.length;
  }
  return bytes;
}

/** A raw connection to an NBD server. Close it (or let the server close it) in every test. */
export class RawNbdClient {
  readonly conn: Deno.TcpConn;
  #buffer = new Uint8Array(64 * 1024);
  #start = 0;
  #end = 0;
  #closed = false;
  #nextCookie = 1n;

  /** How long a read waits for the server's bytes unless told otherwise. */
  readonly #readDeadlineMs: number;

  private constructor(conn: Deno.TcpConn, readDeadlineMs: number) {
    this.conn = conn;
    this.#readDeadlineMs = readDeadlineMs;
  }

  /** Connects to `port` on loopback; reads wait up to `readDeadlineMs` (10 s) for the server. */
  static async connect(
    port: number,
    options: { readDeadlineMs?: number } = {},
  ): Promise<RawNbdClient> {
    return new RawNbdClient(
      await Deno.connect({ hostname: "127.0.0.1", port }),
      options.readDeadlineMs ?? readDeadlineMsDefault,
    );
  }

  /** Connects, greets and goes into `name` (optionally with structured replies and base:allocation). */
  static async open(
    port: number,
    name: string,
    options: { structured?: boolean; blockStatus?: boolean } = {},
  ): Promise<{ client: RawNbdClient; sizeBytes: bigint; flags: number }> {
    const client = await RawNbdClient.connect(port);
    await client.greet();
    if (options.structured || options.blockStatus) await client.enableStructuredReplies();
    if (options.blockStatus) await client.setMetaContext(name);
    const { sizeBytes, flags } = await client.go(name);
    return { client, sizeBytes, flags };
  }

  /** Sends raw bytes. */
  async write(bytes: Uint8Array): Promise<void> {
    for (let at = 0; at < bytes.length;) at += await this.conn.write(bytes.subarray(at));
  }

  /** Reads exactly `length` bytes; ServerClosedError at end of stream, an Error past the deadline. */
  async readExact(length: number, deadlineMs = this.#readDeadlineMs): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    let got = 0;
    while (got < length) {
      if (this.#start === this.#end && length - got >= this.#buffer.length) {
        // Large payloads go straight into their destination.
        const n = await this.#readSome(deadlineMs, out.subarray(got));
        if (n === null) {
          throw new ServerClosedError(`Cannot read ${length} bytes: server closed after ${got}`);
        }
        got += n;
        continue;
      }
      if (this.#start === this.#end) {
        const n = await this.#readSome(deadlineMs, this.#buffer);
        if (n === null) {
          throw new ServerClosedError(`Cannot read ${length} bytes: server closed after ${got}`);
        }
        this.#start = 0;
        this.#end = n;
      }
      const take = Math.min(length - got, this.#end - this.#start);
      out.set(this.#buffer.subarray(this.#start, this.#start + take), got);
      this.#start += take;
      got += take;
    }
    return out;
  }

  /**
   * Waits until the server closes the connection, discarding whatever it sends;
   * returns how it ended and how many bytes came first. Throws if it is still
   * open after `deadlineMs`.
   */
  async waitClosed(
    deadlineMs = this.#readDeadlineMs,
  ): Promise<{ how: "eof" | "reset"; bytes: number }> {
    let bytes = this.#end - this.#start;
    this.#start = this.#end = 0;
    try {
      for (;;) {
        const n = await this.#readSome(deadlineMs, this.#buffer);
        if (n === null) return { how: "eof", bytes };
        bytes += n;
      }
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionReset) return { how: "reset", bytes };
      throw error;
    } finally {
      this.close();
    }
  }

  /** Half-closes: the server sees end of stream, and can still answer or hang up. */
  async closeWrite(): Promise<void> {
    await this.conn.closeWrite();
  }

  /** Closes the connection (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }

  /** Reads the 18-byte greeting, checks it, and answers with `clientFlags`. */
  async greet(
    clientFlags: number = handshakeFlags.fixedNewstyle | handshakeFlags.noZeroes,
  ): Promise<number> {
    const greeting = await this.readExact(18);
    const view = new DataView(greeting.buffer);
    if (view.getBigUint64(0) !== nbdMagic || view.getBigUint64(8) !== optionMagic) {
      throw new TypeError("Cannot greet: the server did not send NBDMAGIC IHAVEOPT");
    }
    const flags = new Uint8Array(4);
    new DataView(flags.buffer).setUint32(0, clientFlags);
    await this.write(flags);
    return view.getUint16(16);
  }

  /** Sends an option (see {@linkcode encodeOption}). */
  sendOption(
    option: number,
    data?: Uint8Array,
    header?: { magic?: bigint; length?: number },
  ): Promise<void> {
    return this.write(encodeOption(option, data, header));
  }

  /** Reads one option reply. */
  async readOptionReply(): Promise<OptionReply> {
    const header = decodeOptionReplyHeader(await this.readExact(20));
    if (header === null) throw new TypeError("Cannot read option reply: bad magic");
    return { option: header.option, type: header.type, data: await this.readExact(header.length) };
  }

  /** Sends an option and reads replies up to the final one (ACK or an error). */
  async option(option: number, data?: Uint8Array): Promise<OptionReply[]> {
    await this.sendOption(option, data);
    const replies: OptionReply[] = [];
    for (;;) {
      const reply = await this.readOptionReply();
      if (reply.option !== option) {
        throw new TypeError(`Cannot haggle: reply to option ${reply.option}, sent ${option}`);
      }
      replies.push(reply);
      if (reply.type === Reply.ack || reply.type >= 2 ** 31) return replies;
    }
  }

  /** NBD_OPT_STRUCTURED_REPLY; throws unless acknowledged. */
  async enableStructuredReplies(): Promise<void> {
    const replies = await this.option(Option.structuredReply);
    if (replies.at(-1)?.type !== Reply.ack) throw new Error("structured replies refused");
  }

  /** NBD_OPT_SET_META_CONTEXT base:allocation on `name`; returns the context id. */
  async setMetaContext(name: string): Promise<number> {
    const replies = await this.option(
      Option.setMetaContext,
      encodeMetaData(name, [baseAllocation]),
    );
    const context = replies.find((reply) => reply.type === Reply.metaContext);
    if (replies.at(-1)?.type !== Reply.ack || context === undefined) {
      throw new Error(`base:allocation refused: ${replies.map((r) => r.type).join(",")}`);
    }
    return new DataView(context.data.buffer).getUint32(0);
  }

  /** NBD_OPT_GO; throws unless acknowledged. Returns NBD_INFO_EXPORT's fields. */
  async go(name: string, infos: number[] = []): Promise<{ sizeBytes: bigint; flags: number }> {
    const replies = await this.option(Option.go, encodeGoData(name, infos));
    const final = replies.at(-1)!;
    if (final.type !== Reply.ack) {
      throw new Error(`GO ${name} refused: ${final.type} ${new TextDecoder().decode(final.data)}`);
    }
    const exportInfo = replies.find((reply) =>
      reply.type === Reply.info && reply.data.length === 12 &&
      new DataView(reply.data.buffer).getUint16(0) === 0
    );
    if (exportInfo === undefined) throw new TypeError("GO acknowledged without NBD_INFO_EXPORT");
    const view = new DataView(exportInfo.data.buffer);
    return { sizeBytes: view.getBigUint64(2), flags: view.getUint16(10) };
  }

  /** Sends a request header (and `payload` right after it); returns its cookie. */
  async request(request: RawRequest, payload?: Uint8Array): Promise<Uint8Array> {
    const cookie = request.cookie ?? this.#cookie();
    const header = encodeRequest({
      flags: request.flags ?? 0,
      type: request.type,
      cookie,
      offset: request.offset ?? 0n,
      length: request.length ?? 0,
    });
    if (payload === undefined) {
      await this.write(header);
    } else {
      const frame = new Uint8Array(requestHeaderBytes + payload.length);
      frame.set(header);
      frame.set(payload, requestHeaderBytes);
      await this.write(frame);
    }
    return cookie;
  }

  /** Reads a simple reply; `dataBytes` of data follow it when error is 0 (READ). */
  async readSimpleReply(dataBytes = 0): Promise<SimpleReply & { data: Uint8Array }> {
    const reply = decodeSimpleReply(await this.readExact(simpleReplyBytes));
    if (reply === null) throw new TypeError("Cannot read simple reply: bad magic");
    const data = reply.error === 0 ? await this.readExact(dataBytes) : new Uint8Array();
    return { ...reply, data };
  }

  /** Reads one reply message, simple or structured, telling them apart by magic. */
  async readAnyReply(): Promise<
    ({ kind: "simple" } & SimpleReply) | ({ kind: "chunk" } & Chunk)
  > {
    const magic = new DataView((await this.#peek(4)).buffer).getUint32(0);
    if (magic === simpleReplyMagic) {
      return { kind: "simple", ...decodeSimpleReply(await this.readExact(simpleReplyBytes))! };
    }
    return { kind: "chunk", ...await this.readChunk() };
  }

  /** Reads one structured chunk with its payload. */
  async readChunk(): Promise<Chunk> {
    const header = decodeChunkHeader(await this.readExact(structuredHeaderBytes));
    if (header === null) throw new TypeError("Cannot read chunk: bad magic");
    if (header.length > 64 * 1024 * 1024) throw new RangeError(`chunk of ${header.length} bytes`);
    return { ...header, payload: await this.readExact(header.length) };
  }

  /** Reads chunks up to the one flagged DONE (one request's whole structured reply). */
  async readStructuredReply(): Promise<Chunk[]> {
    const chunks: Chunk[] = [];
    for (;;) {
      const chunk = await this.readChunk();
      chunks.push(chunk);
      if (chunk.flags & chunkFlagDone) return chunks;
    }
  }

  /**
   * READs `range` and returns its bytes, reassembling structured chunks (data
   * and holes) when `structured`. Throws on an error reply.
   */
  async readData(
    range: { offset: number; length: number },
    structured: boolean,
  ): Promise<Uint8Array> {
    const cookie = await this.request({
      type: Command.read,
      offset: BigInt(range.offset),
      length: range.length,
    });
    if (!structured) {
      const reply = await this.readSimpleReply(range.length);
      if (cookieValue(reply.cookie) !== cookieValue(cookie)) throw new TypeError("wrong cookie");
      if (reply.error !== 0) throw new Error(`Cannot read: error ${reply.error}`);
      return reply.data;
    }
    const out = new Uint8Array(range.length);
    for (const chunk of await this.readStructuredReply()) {
      if (cookieValue(chunk.cookie) !== cookieValue(cookie)) throw new TypeError("wrong cookie");
      const view = new DataView(chunk.payload.buffer);
      if (chunk.type === ChunkType.offsetData) {
        out.set(chunk.payload.subarray(8), Number(view.getBigUint64(0)) - range.offset);
      } else if (chunk.type === ChunkType.offsetHole) {
        const at = Number(view.getBigUint64(0)) - range.offset;
        out.fill(0, at, at + view.getUint32(8));
      } else {
        throw new Error(`Cannot read: chunk type ${chunk.type}`);
      }
    }
    return out;
  }

  /**
   * Reads one reply expected to carry an error: a simple reply, or structured
   * chunks up to DONE. `problems` lists what breaks proto.md's chunk rules.
   */
  async readErrorReply(): Promise<ErrorReply> {
    const first = await this.readAnyReply();
    if (first.kind === "simple") {
      return { kind: "simple", cookie: first.cookie, error: first.error, problems: [] };
    }
    const chunks: Chunk[] = [first];
    while (!(chunks.at(-1)!.flags & chunkFlagDone)) chunks.push(await this.readChunk());
    const problems: string[] = [];
    let error = 0;
    for (const chunk of chunks) {
      if ((chunk.type & 0x8000) === 0) {
        problems.push(`content chunk type ${chunk.type} in an error reply`);
        continue;
      }
      if (chunk.payload.length < 6) {
        problems.push(`error chunk of ${chunk.payload.length} bytes (at least 6)`);
        continue;
      }
      const view = new DataView(chunk.payload.buffer);
      error = view.getUint32(0);
      const messageBytes = view.getUint16(4);
      if (error === 0) problems.push("error chunk with error 0");
      if (messageBytes > chunk.payload.length - 6) problems.push("message longer than the chunk");
      if (chunk.type === ChunkType.error && chunk.payload.length !== 6 + messageBytes) {
        problems.push("NBD_REPLY_TYPE_ERROR with trailing bytes");
      }
    }
    return { kind: "chunk", cookie: first.cookie, error, problems };
  }

  /** Returns the next `length` bytes without consuming them. */
  async #peek(length: number, deadlineMs = this.#readDeadlineMs): Promise<Uint8Array> {
    while (this.#end - this.#start < length) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
      const n = await this.#readSome(deadlineMs, this.#buffer.subarray(this.#end));
      if (n === null) throw new ServerClosedError(`Cannot peek ${length} bytes: server closed`);
      this.#end += n;
    }
    return this.#buffer.slice(this.#start, this.#start + length);
  }

  /** One read, bounded by a deadline that closes the connection. */
  async #readSome(deadlineMs: number, into: Uint8Array): Promise<number | null> {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      this.close();
    }, deadlineMs);
    try {
      return await this.conn.read(into);
    } catch (error) {
      if (timedOut) throw new Error(`Cannot read: server silent for ${deadlineMs} ms`);
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  #cookie(): Uint8Array {
    const cookie = new Uint8Array(8);
    new DataView(cookie.buffer).setBigUint64(0, this.#nextCookie++);
    return cookie;
  }
}

/** A cookie from a number (handy for matching replies). */
export function cookieOf(value: number | bigint): Uint8Array {
  const cookie = new Uint8Array(8);
  new DataView(cookie.buffer).setBigUint64(0, BigInt(value));
  return cookie;
}

/** The number in a cookie. */
export function cookieValue(cookie: Uint8Array): bigint {
  return new DataView(cookie.buffer, cookie.byteOffset, 8).getBigUint64(0);
}

/** A big-endian u32. */
export function u32(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value);
  return bytes;
}

/** The parts, one after the other, in one buffer. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
