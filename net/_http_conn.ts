/**
 * One HTTP connection's bytes: buffered reads of heads and lines, direct reads
 * of body bytes into the caller's buffer, complete writes, and the deadline of
 * whatever it waits for (a head, body bytes, a write draining), which the
 * listener's sweep enforces by closing the connection.
 */
import { assert } from "../core/assert.ts";
import { closeQuietly } from "./accept_loop.ts";
import type { Expiring } from "./_deadlines.ts";
import { HttpRequestError } from "./_http_head.ts";
import { headBytesMax, lingerTimeoutMs, stallTimeoutMs } from "./limits.ts";

/** The timeouts one listener applies to its connections. */
export interface HttpTimeouts {
  /** From accepting (or a next request's first byte) to a whole request head. */
  headerTimeoutMs: number;
  /** A keep-alive connection waiting for its next request. */
  idleTimeoutMs: number;
  /** From accepting (or a next request's first byte) to a whole request body; Infinity for none. */
  requestTimeoutMs: number;
}

/** The connection was closed by its deadline, or by the server. */
export class ConnectionEndedError extends Error {
  override name = "ConnectionEndedError";
}

const crlfcrlf = [13, 10, 13, 10];
/** Read size while looking for a head: most heads fit, an idle connection keeps little. */
const headReadBytes = 16 * 1024;

/** A connection and its read buffer; see the module doc. */
export class HttpConn implements Expiring {
  readonly conn: Deno.Conn;
  deadlineMs: number;
  /** True while it waits for a request with nothing of it received (shutdown closes these). */
  idle = false;
  /**
   * When it began waiting for a next request after answering one (it may be
   * closed to make room for a new connection); null otherwise.
   */
  keptAliveSinceMs: number | null = null;
  /** Set once the deadline passed or the server closed it. */
  ended = false;
  #timeouts: HttpTimeouts;
  #buffer = new Uint8Array(headReadBytes);
  #start = 0;
  #end = 0;
  #scanned = 0;
  #requestDeadlineMs = Infinity;

  /** `received`: bytes already read from `conn` (by a listener that chose the protocol). */
  constructor(conn: Deno.Conn, timeouts: HttpTimeouts, received?: Uint8Array) {
    this.conn = conn;
    this.#timeouts = timeouts;
    if (received !== undefined) {
      assert(received.length <= headReadBytes, "a few bytes read to choose the protocol");
      this.#buffer.set(received);
      this.#end = received.length;
    }
    const now = performance.now();
    this.deadlineMs = now + timeouts.headerTimeoutMs;
    this.#requestDeadlineMs = now + timeouts.requestTimeoutMs;
  }

  /** Closes the connection now; its pending read or write fails. */
  expire(): void {
    this.ended = true;
    closeQuietly(this.conn);
  }

  /**
   * The next request head, without its final blank line; null when the client
   * closed (or the idle deadline passed) before sending a byte of it. `first`:
   * the head of the connection's first request, due `headerTimeoutMs` after accept.
   */
  async readHead(first: boolean): Promise<Uint8Array | null> {
    // Empty lines before a request line are ignored (RFC 9112 section 2.2).
    while (
      this.#end - this.#start >= 2 && this.#buffer[this.#start] === 13 &&
      this.#buffer[this.#start + 1] === 10
    ) this.#start += 2;
    this.#scanned = this.#start;
    // The first request's head is due a header timeout after accept; a next one's
    // first byte may take the idle timeout, then its head a header timeout.
    let waitingFirstByte = this.#end === this.#start;
    this.idle = waitingFirstByte;
    if (!first) {
      if (waitingFirstByte) {
        this.keptAliveSinceMs = performance.now();
        this.deadlineMs = this.keptAliveSinceMs + this.#timeouts.idleTimeoutMs;
      } else this.#beginRequest();
    }
    for (;;) {
      const at = this.#find(crlfcrlf);
      if (at >= 0) {
        const head = this.#buffer.subarray(this.#start, at + 2);
        this.#start = at + 4;
        this.deadlineMs = Infinity;
        return head;
      }
      if (this.#end - this.#start >= headBytesMax) {
        throw new HttpRequestError(431, `Cannot read request: head longer than ${headBytesMax}`);
      }
      if (!await this.#fill(headBytesMax + 4)) {
        if (waitingFirstByte && !this.ended) return null;
        throw new ConnectionEndedError(
          this.ended ? "the request head did not arrive in time" : "closed inside a request head",
        );
      }
      if (waitingFirstByte) {
        waitingFirstByte = this.idle = false;
        this.keptAliveSinceMs = null;
        if (!first) this.#beginRequest();
      }
    }
  }

  /** A CRLF-terminated line (without it), at most `bytesMax` long: chunk sizes, trailers. */
  async readLine(bytesMax: number): Promise<string> {
    this.#scanned = this.#start;
    for (;;) {
      const at = this.#find([13, 10]);
      if (at >= 0) {
        const line = String.fromCharCode(...this.#buffer.subarray(this.#start, at));
        this.#start = at + 2;
        return line;
      }
      if (this.#end - this.#start > bytesMax) {
        throw new HttpRequestError(400, `Cannot read request body: a line over ${bytesMax} bytes`);
      }
      this.#bodyDeadline();
      const filled = await this.#fill(bytesMax + 2);
      this.deadlineMs = Infinity;
      if (!filled) throw new ConnectionEndedError("closed inside a request body");
    }
  }

  /** A copy of the next `length` bytes when they are all buffered already (they are consumed); else null. */
  takeBuffered(length: number): Uint8Array<ArrayBuffer> | null {
    if (this.#end - this.#start < length) return null;
    const bytes = this.#buffer.slice(this.#start, this.#start + length);
    this.#start += length;
    return bytes;
  }

  /** Reads body bytes into `into` (buffered ones first); 0 means the connection ended. */
  async readBody(into: Uint8Array): Promise<number> {
    const buffered = this.#end - this.#start;
    if (buffered > 0) {
      const n = Math.min(buffered, into.length);
      into.set(this.#buffer.subarray(this.#start, this.#start + n));
      this.#start += n;
      return n;
    }
    this.#bodyDeadline();
    try {
      return await this.conn.read(into) ?? 0;
    } catch (error) {
      if (this.ended) return 0;
      throw error;
    } finally {
      this.deadlineMs = Infinity;
    }
  }

  /** Writes all of `bytes`; a write that makes no progress for the stall timeout ends the connection. */
  async write(bytes: Uint8Array): Promise<void> {
    this.deadlineMs = performance.now() + stallTimeoutMs;
    try {
      for (let done = 0; done < bytes.length;) {
        done += await this.conn.write(done === 0 ? bytes : bytes.subarray(done));
      }
    } finally {
      this.deadlineMs = Infinity;
    }
  }

  /**
   * Ends a connection whose request body was not read: shuts the sending side
   * (the answer is out) and reads what the client still sends for a while, so
   * that the client reads the answer rather than a reset; then the caller closes.
   */
  async linger(): Promise<void> {
    this.deadlineMs = performance.now() + lingerTimeoutMs;
    try {
      if (this.conn.remoteAddr.transport === "tcp") await (this.conn as Deno.TcpConn).closeWrite();
      const scratch = new Uint8Array(64 * 1024);
      while (await this.conn.read(scratch) !== null) { /* drained */ }
    } catch { /* closed by the deadline, or by the client */ }
  }

  /** The deadlines of a request whose first byte just arrived. */
  #beginRequest(): void {
    const now = performance.now();
    this.deadlineMs = now + this.#timeouts.headerTimeoutMs;
    this.#requestDeadlineMs = now + this.#timeouts.requestTimeoutMs;
  }

  #bodyDeadline(): void {
    this.deadlineMs = Math.min(performance.now() + stallTimeoutMs, this.#requestDeadlineMs);
  }

  /** Index of `pattern` in the buffered bytes, -1 when absent; resumes where it last stopped. */
  #find(pattern: number[]): number {
    const last = this.#end - pattern.length;
    let at = Math.max(this.#start, this.#scanned - pattern.length + 1);
    for (; at <= last; at++) {
      if (this.#buffer[at] !== pattern[0]) continue;
      let i = 1;
      while (i < pattern.length && this.#buffer[at + i] === pattern[i]) i++;
      if (i === pattern.length) return at;
    }
    this.#scanned = Math.max(this.#start, this.#end);
    return -1;
  }

  /** Reads more into the buffer, which grows up to `bytesMax`; false at end of stream. */
  async #fill(bytesMax: number): Promise<boolean> {
    if (this.#start === this.#end) {
      this.#start = this.#end = this.#scanned = 0;
    } else if (this.#end === this.#buffer.length) {
      // Full: move the kept bytes to the front, into a larger buffer when they fill half.
      const kept = this.#end - this.#start;
      if (kept * 2 > this.#buffer.length) {
        const grown = new Uint8Array(Math.max(kept + 1, Math.min(bytesMax, kept * 2)));
        grown.set(this.#buffer.subarray(this.#start, this.#end));
        this.#buffer = grown;
      } else {
        this.#buffer.copyWithin(0, this.#start, this.#end);
      }
      this.#scanned -= this.#start;
      this.#start = 0;
      this.#end = kept;
    }
    let n: number | null;
    try {
      n = await this.conn.read(this.#buffer.subarray(this.#end));
    } catch (error) {
      if (this.ended) return false;
      throw error;
    }
    if (n === null) return false;
    this.#end += n;
    return true;
  }
}
