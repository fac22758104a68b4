/**
 * The transmission phase: reads requests, validates each once at the edge,
 * runs valid ones concurrently (bounded per connection) and answers through the
 * connection's ordered writer. A framing violation ends the connection; an
 * invalid request gets an error reply and the connection goes on.
 *
 * Running a request (its share of the volume's limits, the device call, its
 * figures) is _request_execution.ts; encoding the replies, _replies.ts.
 */
import type { BufferPool, IoLimiter } from "../core/mod.ts";
import type { ConnReader, ReplyWriter } from "./conn_io.ts";
import type { Session } from "./handshake.ts";
import { NbdFramingError } from "./handshake.ts";
import { inflightRequestsMax, requestBytesMax } from "./limits.ts";
import {
  Command,
  CommandFlag,
  commandFlagsKnown,
  decodeRequest,
  NbdError,
  type Request,
  requestHeaderBytes,
} from "./protocol.ts";
import type { VolumeStats } from "../metrics/mod.ts";
import {
  execute,
  executeCounted,
  type RequestContext,
  writeCommands,
} from "./_request_execution.ts";
import { sendError } from "./_replies.ts";

/** Flags each command accepts besides FUA (accepted on every command). */
const flagsAllowed: Record<number, number> = {
  [Command.read]: CommandFlag.df,
  [Command.write]: 0,
  [Command.flush]: 0,
  [Command.trim]: 0,
  [Command.cache]: 0,
  [Command.writeZeroes]: CommandFlag.noHole | CommandFlag.fastZero,
  [Command.blockStatus]: CommandFlag.reqOne,
  [Command.disc]: 0,
};

/**
 * Serves requests until the client disconnects or breaks the protocol.
 * `limiter`: the I/O limits of the export's volume on this node, shared with
 * its other connections (null for an image or a snapshot).
 */
export async function serveTransmission(
  session: Session,
  io: {
    reader: ConnReader;
    writer: ReplyWriter;
    buffers: BufferPool;
    limiter: IoLimiter | null;
    stats: VolumeStats | null;
  },
): Promise<void> {
  const { reader, writer, buffers, limiter, stats } = io;
  const context: RequestContext = { session, writer, buffers, limiter };
  const inflight = new Set<Promise<void>>();
  const header = new Uint8Array(requestHeaderBytes);
  try {
    for (;;) {
      // About to wait for the client: let the replies held so far go.
      if (!reader.buffered) writer.uncork();
      await reader.readExact(header);
      writer.cork();
      const request = decodeRequest(header);
      if (request === null) throw new NbdFramingError("bad request magic");
      let payload: Uint8Array | null = null;
      if (request.type === Command.write) {
        // Payloads over 32 MiB may be treated as abuse (proto.md): hang up.
        if (request.length > requestBytesMax) {
          throw new NbdFramingError(`WRITE payload of ${request.length} bytes`);
        }
        payload = buffers.acquire(request.length);
        if (reader.bufferedBytes < request.length) writer.uncork();
        await reader.readExact(payload);
      }
      if (request.type === Command.disc) break;
      const error = validate(session, request);
      const task = error !== 0
        ? sendError(session, writer, request, error)
        : stats === null
        ? execute(context, request, payload)
        : executeCounted(context, request, payload, stats);
      if (payload !== null) task.finally(() => buffers.release(payload)).catch(() => {});
      inflight.add(task);
      task.catch(() => {}).finally(() => inflight.delete(task));
      if (inflight.size >= inflightRequestsMax) writer.uncork();
      while (inflight.size >= inflightRequestsMax) await Promise.race(inflight);
    }
  } finally {
    writer.uncork();
    await Promise.allSettled(inflight);
  }
}

/** 0 when the request may run, else the NBD error to answer. */
function validate(session: Session, request: Request): number {
  const { device } = session;
  const allowed = flagsAllowed[request.type];
  if (allowed === undefined) return NbdError.inval;
  if ((request.flags & ~commandFlagsKnown) !== 0) return NbdError.inval;
  if ((request.flags & ~(allowed | CommandFlag.fua)) !== 0) return NbdError.inval;
  if (
    request.type === Command.read && (request.flags & CommandFlag.df) && !session.structuredReplies
  ) {
    return NbdError.inval;
  }
  if (writeCommands.has(request.type) && !device.canWrite) return NbdError.perm;
  if (request.type === Command.flush) {
    return request.offset === 0n && request.length === 0 ? 0 : NbdError.inval;
  }
  if (request.type === Command.blockStatus && session.contexts.length === 0) return NbdError.inval;
  if (request.type === Command.read && request.length > requestBytesMax) return NbdError.inval;
  if (request.offset + BigInt(request.length) > BigInt(device.sizeBytes)) {
    return request.type === Command.write || request.type === Command.writeZeroes
      ? NbdError.nospc
      : NbdError.inval;
  }
  if (request.type === Command.blockStatus && request.length === 0) return NbdError.inval;
  // A zero-length READ has no valid structured answer (a data chunk needs a byte).
  if (request.type === Command.read && request.length === 0) return NbdError.inval;
  return 0;
}
