/**
 * Buffered exact reads and one ordered, batching writer per connection.
 *
 * Reads of large payloads go straight into their destination buffer (no
 * staging copy). Replies produced in one turn of the event loop, or while a
 * write is under way, are gathered and sent together: small parts copied into
 * one staging buffer, large data parts written as they are (zero-copy and
 * batching both pay; decisions.md, "Writes once per turn of the event loop").
 */
import { setImmediate } from "node:timers";

/** The peer closed the connection (at a frame boundary or inside a frame). */
export class ConnectionClosedError extends Error {
  override name = "ConnectionClosedError";
}

/** A connection's read buffer starts small (idle connections are cheap) and grows. */
const readBufferBytesMin = 4 * 1024;
const readBufferBytes = 256 * 1024;
const stagingBytes = 256 * 1024;
/** Parts at least this large are written without copying. */
const directWriteBytes = 64 * 1024;

/** Reads exact byte counts from a connection. */
export class ConnReader {
  #conn: Deno.Conn;
  #buffer = new Uint8Array(readBufferBytesMin);
  #start = 0;
  #end = 0;

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  /** True when bytes are already buffered (the client pipelined more). */
  get buffered(): boolean {
    return this.#end > this.#start;
  }

  /** Bytes already buffered, readable without waiting for the socket. */
  get bufferedBytes(): number {
    return this.#end - this.#start;
  }

  /** Fills `into` completely; throws ConnectionClosedError at end of stream. */
  async readExact(into: Uint8Array): Promise<void> {
    let got = Math.min(this.#end - this.#start, into.length);
    into.set(this.#buffer.subarray(this.#start, this.#start + got));
    this.#start += got;
    while (got < into.length) {
      const missing = into.length - got;
      if (missing >= readBufferBytes / 2) {
        const n = await this.#conn.read(into.subarray(got));
        if (n === null) throw new ConnectionClosedError("connection closed inside a frame");
        got += n;
        continue;
      }
      const n = await this.#conn.read(this.#buffer);
      if (n === null) {
        throw new ConnectionClosedError(
          got === 0 ? "connection closed" : "connection closed inside a frame",
        );
      }
      if (n === this.#buffer.length && n < readBufferBytes) {
        // A full read means a busy client: grow, keeping the bytes just read.
        const grown = new Uint8Array(Math.min(readBufferBytes, n * 4));
        grown.set(this.#buffer);
        this.#buffer = grown;
      }
      this.#start = 0;
      this.#end = n;
      const take = Math.min(n, missing);
      into.set(this.#buffer.subarray(0, take), got);
      this.#start = take;
      got += take;
    }
  }

  /** Reads and throws away `length` bytes (an oversized payload), in bounded steps. */
  async skip(length: number): Promise<void> {
    const scratch = new Uint8Array(Math.min(length, readBufferBytesMin));
    for (let left = length; left > 0; left -= scratch.length) {
      await this.readExact(scratch.subarray(0, Math.min(left, scratch.length)));
    }
  }
}

interface Pending {
  parts: Uint8Array[];
  done: PromiseWithResolvers<void>;
}

/** Sends replies in order; each send() resolves once its bytes were written. */
export class ReplyWriter {
  #conn: Deno.Conn;
  #queue: Pending[] = [];
  #writing = false;
  #corked = false;
  #failed: Error | null = null;
  #staging: Uint8Array | null = null;

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  /** Queues `parts` to be written contiguously. */
  send(...parts: Uint8Array[]): Promise<void> {
    if (this.#failed !== null) return Promise.reject(this.#failed);
    const pending = { parts, done: Promise.withResolvers<void>() };
    this.#queue.push(pending);
    if (!this.#writing && !this.#corked) this.#drainSoon();
    return pending.done.promise;
  }

  /**
   * Holds replies back while the reader still has requests buffered, so that
   * their replies leave in one write; uncork() before anything that may block.
   */
  cork(): void {
    this.#corked = true;
  }

  /** Sends whatever cork() held back. */
  uncork(): void {
    this.#corked = false;
    if (!this.#writing && this.#queue.length > 0) this.#drainSoon();
  }

  /** Drains once this turn of the event loop is over: replies it produced leave in one write. */
  #drainSoon(): void {
    this.#writing = true;
    setImmediate(() => this.#drain());
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0);
      try {
        await this.#writeBatch(batch.flatMap((pending) => pending.parts));
        for (const pending of batch) pending.done.resolve();
      } catch (error) {
        this.#failed = new ConnectionClosedError(`cannot send reply: ${error}`, { cause: error });
        for (const pending of [...batch, ...this.#queue.splice(0)]) {
          pending.done.reject(this.#failed);
        }
      }
    }
    this.#writing = false;
  }

  async #writeBatch(parts: Uint8Array[]): Promise<void> {
    if (parts.length === 1) return await this.#writeAll(parts[0]);
    this.#staging ??= new Uint8Array(stagingBytes);
    const staging = this.#staging;
    let staged = 0;
    for (const part of parts) {
      if (part.length >= directWriteBytes || staged + part.length > stagingBytes) {
        if (staged > 0) await this.#writeAll(staging.subarray(0, staged));
        staged = 0;
      }
      if (part.length >= directWriteBytes) {
        await this.#writeAll(part);
      } else {
        staging.set(part, staged);
        staged += part.length;
      }
    }
    if (staged > 0) await this.#writeAll(staging.subarray(0, staged));
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    for (let at = 0; at < bytes.length;) at += await this.#conn.write(bytes.subarray(at));
  }
}
