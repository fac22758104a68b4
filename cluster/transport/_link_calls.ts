/**
 * The methods a link server runs: a call frame in, its reply or failure frame
 * out, and the buffers around them. Large calls to methods that keep no
 * reference to their data (`pooled`) are read into buffers from a pool and
 * given back once the reply is written, with the reply's own buffer (its
 * `sent`), or later when the method keeps the data (RpcMessage.keep); a link
 * that closes first gives nothing back (the collector takes it).
 */
import { BufferPool } from "../../core/mod.ts";
import {
  encodeMessageFrame,
  type Frame,
  frameData,
  type FrameHead,
  frameHeader,
  FrameKind,
  frameMethod,
} from "./link_wire.ts";
import type { RpcMethod } from "./rpc_message.ts";

/** Bytes of call bodies a server keeps for reuse, in all; larger bodies are allocated each. */
const pooledBodyBytesMax = 32 * 1024 * 1024;
const pooledBodyBytesEach = 16 * 1024 * 1024;
const decoder = new TextDecoder();

/** A call's answer as bytes to write, and what to do once they are written. */
export interface Answer {
  parts: Uint8Array[];
  /** Gives the call's pooled body and the reply's buffer back; null when there is nothing to. */
  written: (() => void) | null;
}

/** See the module doc. */
export class LinkCalls {
  readonly #methods: Record<string, RpcMethod>;
  /** Page-aligned where a frame's data starts: a replica writes large data direct from it. */
  readonly #bodies = new BufferPool(pooledBodyBytesMax, pooledBodyBytesEach, { pageAligned: true });
  /** For LinkConn.readFrame: the pool when the method named may take a pooled body. */
  readonly poolFor: ((head: FrameHead, method: Uint8Array) => BufferPool | null) | undefined;

  constructor(methods: Record<string, RpcMethod>, pooled: ReadonlySet<string> = new Set()) {
    this.#methods = methods;
    this.poolFor = pooled.size === 0
      ? undefined
      : (_head, method) => pooled.has(decoder.decode(method)) ? this.#bodies : null;
  }

  /** Runs the call `frame` carries: its reply frame, or its failure frame; never throws. */
  async answer(frame: Frame): Promise<Answer> {
    const name = frameMethod(frame);
    const { pool, body } = frame;
    const kept: Promise<unknown>[] = [];
    const release = pool === undefined ? null : () => {
      if (kept.length === 0) pool.release(body);
      else Promise.allSettled(kept).then(() => pool.release(body));
    };
    const keep = pool === undefined ? undefined : (until: Promise<unknown>) => kept.push(until);
    try {
      const header = frameHeader(frame);
      const method = this.#methods[name];
      if (method === undefined) throw new TypeError(`unknown method ${name}`);
      const reply = await method({ header, data: frameData(frame), keep });
      const replyFrame = { kind: FrameKind.reply, id: frame.id };
      const parts = encodeMessageFrame(replyFrame, reply.header, reply.data);
      const sent = reply.sent;
      if (sent === undefined) return { parts, written: release };
      return { parts, written: () => (release?.(), sent()) };
    } catch (error) {
      const { message, name } = error as Error;
      const failure = { kind: FrameKind.failure, id: frame.id };
      return {
        parts: encodeMessageFrame(failure, { error: message, name }, undefined, 0),
        written: release,
      };
    }
  }
}
