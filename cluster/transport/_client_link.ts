/**
 * One open link on the client side: its calls in flight by request id, their
 * timeouts, the replies read and matched, the goaway and the ping that tell
 * whether calls left unanswered may be sent again, and the link's deadlines.
 * Once a call settled, the link holds no reference to its data (a call data
 * larger than a few KiB is written from the caller's buffer, not copied).
 */
import { type BufferPool, systemClock, systemTimers } from "../../core/mod.ts";
import { stallTimeoutMs } from "../../net/mod.ts";
import type { LinkConn } from "./_link_conn.ts";
import type { LinkPeer } from "./link_handshake.ts";
import {
  encodeBareFrame,
  type Frame,
  frameData,
  frameHeader,
  FrameKind,
  setFrameId,
} from "./link_wire.ts";
import { rpcBytesMax, RpcError, type RpcMessage } from "./rpc_message.ts";
import { SilenceError } from "./_silent_peers.ts";

interface Pending {
  resolve: (reply: RpcMessage) => void;
  reject: (error: Error) => void;
  method: string;
  /** True once the whole call frame is in the socket: the peer may have run it. */
  written: boolean;
  /** When the call went out, and when it fails unanswered (systemClock, ms). */
  sentAtMs: number;
  deadlineMs: number;
  /** Where a large reply's body is read into (the caller releases it); null: an allocation of its own. */
  replies: BufferPool | null;
}

/** The call's frame never reached the peer's methods: it may be sent again. */
export class NotSentError extends Error {
  override name = "NotSentError";
}

/** The RpcError of a call whose peer could not be reached (or did not answer). */
export function unreachable(method: string, address: string, cause: Error): RpcError {
  return new RpcError(`Cannot call ${method} on ${address}: ${cause.message}`, true, { cause });
}

/** See the module doc. */
export class ClientLink {
  readonly conn: LinkConn;
  readonly peer: LinkPeer;
  readonly address: string;
  /** Settles once the link closed and its calls were failed. */
  readonly ended: Promise<void>;
  /** The peer said goaway: no new calls; those it did not answer were not run. */
  goingAway = false;
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #lastUsedMs = systemClock.now();
  /** When a ping was sent to a silent link; null when none is outstanding. */
  #probeSinceMs: number | null = null;
  /**
   * The one timer of the calls' deadlines, set for the earliest (Infinity: none
   * set): a timer per call cost a forwarded read 5% of its CPU.
   */
  #deadlineAtMs = Infinity;
  #cancelDeadline: (() => void) | null = null;

  constructor(conn: LinkConn, peer: LinkPeer, address: string) {
    this.conn = conn;
    this.peer = peer;
    this.address = address;
    this.ended = this.#readReplies().finally(() => this.#failPending());
  }

  /** Bytes and calls it still has to get through: the next call goes where it waits least. */
  get load(): number {
    return this.conn.queuedBytes + this.#pending.size * 4096;
  }

  /**
   * Sends a call frame (its id set here) and resolves with the reply; rejects
   * with RpcError, or NotSentError when the peer cannot have run it.
   */
  exchange(
    method: string,
    parts: Uint8Array[],
    deadlineMs: number,
    replies: BufferPool | null = null,
  ): Promise<RpcMessage> {
    return new Promise((resolve, reject) => {
      const id = this.#nextId;
      this.#nextId = id === 0xffffffff ? 1 : id + 1;
      setFrameId(parts[0], id);
      const sentAtMs = this.#lastUsedMs = systemClock.now();
      const pending: Pending = {
        resolve,
        reject,
        method,
        written: false,
        sentAtMs,
        deadlineMs: Math.max(sentAtMs, deadlineMs),
        replies,
      };
      this.#pending.set(id, pending);
      if (!this.conn.send(parts, () => pending.written = true)) {
        this.#pending.delete(id);
        reject(new NotSentError(this.conn.closeReason?.message ?? "the link closed"));
        return;
      }
      this.#armDeadline(pending.deadlineMs);
    });
  }

  /** Sets the deadline timer for `atMs` unless it is set for earlier already. */
  #armDeadline(atMs: number): void {
    if (atMs >= this.#deadlineAtMs) return;
    this.#cancelDeadline?.();
    this.#deadlineAtMs = atMs;
    this.#cancelDeadline = systemTimers.after(
      Math.max(0, atMs - systemClock.now()),
      () => this.#expire(),
    );
  }

  /** Fails the calls whose deadline passed, and sets the timer for the next one. */
  #expire(): void {
    this.#cancelDeadline = null;
    this.#deadlineAtMs = Infinity;
    const now = systemClock.now();
    let next = Infinity;
    for (const [id, pending] of this.#pending) {
      if (pending.deadlineMs > now) {
        next = Math.min(next, pending.deadlineMs);
        continue;
      }
      this.#pending.delete(id);
      const timeoutMs = Math.round(pending.deadlineMs - pending.sentAtMs);
      const silence = new Error(`no answer within ${timeoutMs} ms`);
      pending.reject(unreachable(pending.method, this.address, silence));
      // The caller may reuse its data once the call settled: a frame still queued
      // (the link has not written for the whole timeout) must never go out.
      if (!pending.written) this.conn.close(new Error("a call timed out before it was sent"));
      else this.#probe(pending.sentAtMs);
    }
    if (next !== Infinity) this.#armDeadline(next);
  }

  /** Closes the link when a deadline passed: idle, silent even to a ping, or not reading. */
  sweep(now: number, limits: { idleMs: number; probeMs: number }): void {
    const { conn } = this;
    if (this.#probeSinceMs !== null && conn.lastReadMs >= this.#probeSinceMs) {
      this.#probeSinceMs = null;
    }
    if (this.#probeSinceMs !== null && now - this.#probeSinceMs > limits.probeMs) {
      conn.close(new SilenceError(`no answer, not even to a ping, within ${limits.probeMs} ms`));
    } else if (this.#pending.size === 0 && now - this.#lastUsedMs > limits.idleMs) {
      conn.close(new Error("idle"));
    } else if (conn.writingSinceMs !== null && now - conn.writingSinceMs > stallTimeoutMs) {
      conn.close(new Error("the peer reads nothing"));
    }
  }

  async #readReplies(): Promise<void> {
    try {
      for (;;) {
        const frame = await this.conn.readFrame(
          rpcBytesMax,
          (head) =>
            head.kind === FrameKind.reply ? this.#pending.get(head.id)?.replies ?? null : null,
        );
        if (frame === null) throw new Deno.errors.UnexpectedEof("the peer closed the link");
        if (frame.kind === FrameKind.pong) continue;
        if (frame.kind === FrameKind.goaway) this.goingAway = true;
        else if (frame.kind === FrameKind.reply || frame.kind === FrameKind.failure) {
          this.#settle(frame);
        } else throw new RangeError(`Cannot read reply: a frame of kind ${frame.kind}`);
        if (this.goingAway && this.#pending.size === 0) return;
      }
    } catch (error) {
      this.conn.close(error instanceof Error ? error : new Error(String(error)));
    } finally {
      this.conn.close(new Error("the peer closed the link"));
    }
  }

  #settle(frame: Frame): void {
    const pending = this.#pending.get(frame.id);
    if (pending === undefined) return; // timed out already (a pooled body is left to the collector)
    this.#pending.delete(frame.id);
    this.#lastUsedMs = systemClock.now();
    const call = () => `${pending.method} on ${this.address}`;
    let header: Record<string, unknown>;
    try {
      header = frameHeader(frame);
    } catch (error) {
      const detail = `a malformed reply (${(error as Error).message})`;
      frame.pool?.release(frame.body);
      return pending.reject(new RpcError(`Cannot call ${call()}: ${detail}`, false));
    }
    if (frame.kind === FrameKind.failure) {
      const remoteName = String(header.name);
      return pending.reject(
        new RpcError(`${call()} failed: ${header.error}`, false, { remoteName }),
      );
    }
    const { pool, body } = frame;
    let released = false; // twice would hand one buffer to two users
    const release = pool === undefined ? undefined : () => {
      if (!released) pool.release(body);
      released = true;
    };
    pending.resolve({ header, data: frameData(frame), release });
  }

  /** Fails the calls of the closed link: NotSentError for those the peer cannot have run. */
  #failPending(): void {
    const reason = this.conn.closeReason ?? new Error("the link closed");
    this.#cancelDeadline?.();
    this.#cancelDeadline = null;
    this.#deadlineAtMs = Infinity;
    for (const pending of this.#pending.values()) {
      // After a goaway, a call not answered was not run (and one not written, never).
      const mayHaveRun = pending.written && !this.goingAway;
      pending.reject(
        mayHaveRun
          ? unreachable(pending.method, this.address, reason)
          : new NotSentError(reason.message),
      );
    }
    this.#pending.clear();
  }

  /** After a call timed out: ping the link if nothing came from it since the call went out. */
  #probe(sentAtMs: number): void {
    if (this.conn.lastReadMs >= sentAtMs || this.#probeSinceMs !== null) return;
    this.#probeSinceMs = systemClock.now();
    this.conn.send([encodeBareFrame(FrameKind.ping, 0, new Uint8Array())]);
  }
}
