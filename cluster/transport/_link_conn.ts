/**
 * One link's bytes, both ends: frames read whole into one buffer each (a large
 * body straight into its own buffer, any body into a pooled one when its
 * reader says so, and a message of no data left in the read buffer: never
 * copied after), and frames written through one queue, those queued in one
 * turn of the event loop (or while a write is under way) together: small ones
 * copied into one reused buffer for one write, large data written as it is. It
 * keeps the times a link's deadlines are checked against (last byte received,
 * a write waiting since).
 */
import { setImmediate } from "node:timers";
import { type BufferPool, systemClock } from "../../core/mod.ts";
import { assert } from "../../core/assert.ts";
import { closeQuietly } from "../../net/mod.ts";
import {
  decodeFrameHead,
  type Frame,
  type FrameHead,
  frameHeadBytes,
  FrameKind,
  handshakeBodyBytesMax,
  isHttpAnswer,
  NotALinkError,
} from "./link_wire.ts";

/** Read buffer of a link: small frames come several to a read. */
const readBufferBytes = 64 * 1024;
/** Read buffer until the handshake is done: what a connection costs before it proves the key. */
const handshakeReadBufferBytes = 2 * 1024;
/** A body at most this long is read through the read buffer, then copied out. */
const bufferedBodyBytesMax = 16 * 1024;
/** Queued parts shorter than this are copied into one batch; longer ones are written as they are. */
const batchPartBytesMax = 16 * 1024;
/** Largest batch of small parts copied together for one write. */
const batchBytesMax = 256 * 1024;
/** The batch buffer's first size; it grows to the largest batch written (at most batchBytesMax). */
const batchBytesMin = 16 * 1024;

assert(handshakeReadBufferBytes >= frameHeadBytes + handshakeBodyBytesMax);

interface Queued {
  bytes: Uint8Array;
  /** Called once these bytes are all in the socket. */
  written?: () => void;
}

/** See the module doc. */
export class LinkConn {
  readonly conn: Deno.Conn;
  /** `systemClock.now()` of the last bytes received (or of the connection's start). */
  lastReadMs = systemClock.now();
  /** `systemClock.now()` since when the current write waits; null while none does. */
  writingSinceMs: number | null = null;
  /** Resolves once the connection is closed, with the reason. */
  readonly closed: Promise<Error>;
  #buffer = new Uint8Array(handshakeReadBufferBytes);
  #start = 0;
  #end = 0;
  #queue: Queued[] = [];
  /** What small parts are copied into for a write, reused (a write ends before the next batch). */
  #batch = new Uint8Array(0);
  #queuedBytes = 0;
  #writing = false;
  #closeReason: Error | null = null;
  #resolveClosed!: (reason: Error) => void;

  /** `received`: bytes already read from `conn` (after what chose the protocol). */
  constructor(conn: Deno.Conn, received?: Uint8Array) {
    this.conn = conn;
    this.closed = new Promise((resolve) => this.#resolveClosed = resolve);
    if (received !== undefined && received.length > 0) {
      if (received.length > this.#buffer.length) this.#buffer = new Uint8Array(received.length);
      this.#buffer.set(received);
      this.#end = received.length;
    }
  }

  /** Bytes queued and not yet written. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Why the connection closed; null while it is open. */
  get closeReason(): Error | null {
    return this.#closeReason;
  }

  /**
   * The next frame, its body at most `bodyBytesMax`; null when the peer closed
   * between frames. Throws RangeError on a framing violation (the caller closes).
   */
  async readFrame(
    bodyBytesMax: number,
    poolFor?: (head: FrameHead, method: Uint8Array) => BufferPool | null,
  ): Promise<Frame | null> {
    if (bodyBytesMax > this.#buffer.length && this.#buffer.length < readBufferBytes) {
      // Past the handshake: frames of any size, many to a read.
      const grown = new Uint8Array(readBufferBytes);
      grown.set(this.#buffer.subarray(this.#start, this.#end));
      [this.#buffer, this.#end, this.#start] = [grown, this.#end - this.#start, 0];
    }
    if (!await this.#fill(frameHeadBytes)) return null;
    if (isHttpAnswer(this.#buffer, this.#start)) {
      throw new NotALinkError(
        "Cannot read frame: the peer answered in HTTP (it does not serve links)",
      );
    }
    const head = decodeFrameHead(this.#buffer, this.#start);
    if (head.bodyBytes > bodyBytesMax) {
      throw new RangeError(`Cannot read frame: ${head.bodyBytes} bytes, at most ${bodyBytesMax}`);
    }
    this.#start += frameHeadBytes;
    const length = head.bodyBytes;
    // The head and the method name (first in the body) say whether a pooled buffer may take it.
    let pool: BufferPool | null = null;
    if (poolFor !== undefined) {
      if (!await this.#fill(head.methodBytes)) {
        throw new Deno.errors.UnexpectedEof("closed inside a frame");
      }
      pool = poolFor(head, this.#buffer.subarray(this.#start, this.#start + head.methodBytes));
    }
    if (length <= bufferedBodyBytesMax && pool === null) {
      if (!await this.#fill(length)) throw new Deno.errors.UnexpectedEof("closed inside a frame");
      // A call, reply or failure (kinds 16 and up) of no data is read at once (Frame.body):
      // no copy, no allocation.
      const dataless = head.methodBytes + head.headerBytes === length && head.headerBytes > 0 &&
        head.kind >= FrameKind.call;
      const body = dataless
        ? this.#buffer.subarray(this.#start, this.#start + length)
        : this.#buffer.slice(this.#start, this.#start + length);
      this.#start += length;
      return { ...head, body };
    }
    const body = pool?.acquire(length, head.methodBytes + head.headerBytes) ??
      new Uint8Array(length);
    let filled = Math.min(length, this.#end - this.#start);
    body.set(this.#buffer.subarray(this.#start, this.#start + filled));
    this.#start += filled;
    while (filled < length) {
      const n = await this.#read(body.subarray(filled));
      if (n === null) throw new Deno.errors.UnexpectedEof("closed inside a frame");
      filled += n;
    }
    return pool === null ? { ...head, body } : { ...head, body, pool };
  }

  /**
   * Queues `parts` to be written in order after everything queued before;
   * `written` is called once they are all in the socket. False (and nothing
   * queued) when the connection is closed.
   */
  send(parts: Uint8Array[], written?: () => void): boolean {
    if (this.#closeReason !== null) return false;
    if (parts.length === 0) parts = [new Uint8Array()];
    for (let i = 0; i < parts.length; i++) {
      this.#queue.push({ bytes: parts[i], written: i === parts.length - 1 ? written : undefined });
      this.#queuedBytes += parts[i].length;
    }
    if (!this.#writing) {
      // Everything sent in this turn of the event loop leaves in one write.
      this.#writing = true;
      setImmediate(() => this.#drain());
    }
    return true;
  }

  /** Shuts the sending side (a FIN) once everything queued is written; reading goes on. */
  finish(): void {
    this.send([], () => {
      (this.conn as Deno.TcpConn).closeWrite().catch(() => this.close(new Error("closed")));
    });
  }

  /** Closes the connection (once; later reasons are ignored); reads and writes under way fail. */
  close(reason: Error): void {
    if (this.#closeReason !== null) return;
    this.#closeReason = reason;
    this.#queue = [];
    this.#queuedBytes = 0;
    closeQuietly(this.conn);
    this.#resolveClosed(reason);
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0 && this.#closeReason === null) {
        const batch = this.#takeBatch();
        this.writingSinceMs = systemClock.now();
        for (let done = 0; done < batch.bytes.length;) {
          done += await this.conn.write(batch.bytes.subarray(done));
        }
        this.writingSinceMs = null;
        if (this.#closeReason !== null) return;
        this.#queuedBytes -= batch.bytes.length;
        for (const written of batch.callbacks) written();
      }
    } catch (error) {
      this.close(error instanceof Error ? error : new Error(String(error)));
    } finally {
      this.#writing = false;
      this.writingSinceMs = null;
    }
  }

  /** The next bytes to write: a large part as it is, or small parts copied together. */
  #takeBatch(): { bytes: Uint8Array; callbacks: (() => void)[] } {
    const first = this.#queue[0];
    const callbacks: (() => void)[] = [];
    let count = 0;
    let bytes = 0;
    while (count < this.#queue.length) {
      const next = this.#queue[count].bytes.length;
      if (next > batchPartBytesMax || bytes + next > batchBytesMax) break;
      bytes += next;
      count++;
    }
    if (count <= 1) {
      this.#queue.shift();
      if (first.written !== undefined) callbacks.push(first.written);
      return { bytes: first.bytes, callbacks };
    }
    // One buffer for every batch (one write at a time), grown as batches need.
    if (this.#batch.length < bytes) {
      let size = Math.max(this.#batch.length, batchBytesMin);
      while (size < bytes) size *= 2;
      this.#batch = new Uint8Array(size);
    }
    const batch = this.#batch.subarray(0, bytes);
    let at = 0;
    for (const queued of this.#queue.splice(0, count)) {
      batch.set(queued.bytes, at);
      at += queued.bytes.length;
      if (queued.written !== undefined) callbacks.push(queued.written);
    }
    return { bytes: batch, callbacks };
  }

  /** Buffers at least `length` bytes; false when the peer closed before any of them. */
  async #fill(length: number): Promise<boolean> {
    if (this.#end - this.#start >= length) return true;
    if (this.#start === this.#end) {
      this.#start = this.#end = 0;
    } else if (this.#buffer.length - this.#start < length) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    while (this.#end - this.#start < length) {
      const n = await this.#read(this.#buffer.subarray(this.#end));
      if (n === null) {
        if (this.#end === this.#start) return false;
        throw new Deno.errors.UnexpectedEof("closed inside a frame");
      }
      this.#end += n;
    }
    return true;
  }

  async #read(into: Uint8Array): Promise<number | null> {
    const n = await this.conn.read(into);
    if (n !== null) this.lastReadMs = systemClock.now();
    return n;
  }
}
