/**
 * The transmission phase: reads requests, validates each once at the edge,
 * runs valid ones concurrently (bounded per connection) and answers through the
 * connection's ordered writer. A framing violation ends the connection; an
 * invalid request gets an error reply and the connection goes on.
 */
import {
  type BufferPool,
  ConflictError,
  CorruptionError,
  type IoLimiter,
  NotFoundError,
} from "../core/mod.ts";
import { assert } from "../core/assert.ts";
import { ConnectionClosedError, type ConnReader, type ReplyWriter } from "./conn_io.ts";
import type { Session } from "./handshake.ts";
import { NbdFramingError } from "./handshake.ts";
import { blockStatusExtentsMax, inflightRequestsMax, requestBytesMax } from "./limits.ts";
import {
  Chunk,
  chunkFlagDone,
  Command,
  CommandFlag,
  commandFlagsKnown,
  decodeRequest,
  encodeChunkHeader,
  encodeSimpleReply,
  NbdError,
  type Request,
  requestHeaderBytes,
} from "./protocol.ts";
import { logger } from "../log/mod.ts";
import type { VolumeStats } from "../metrics/mod.ts";
import { countError, countRequest } from "./_request_counts.ts";

const log = logger("nbd");

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
const writeCommands = new Set<number>([Command.write, Command.trim, Command.writeZeroes]);

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
        ? execute(session, writer, buffers, request, payload, limiter)
        : executeCounted(session, writer, buffers, request, payload, limiter, stats);
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

/**
 * {@linkcode execute} counted and timed in the volume's figures: a few
 * additions on numbers the table already holds, no allocation.
 */
async function executeCounted(
  session: Session,
  writer: ReplyWriter,
  buffers: BufferPool,
  request: Request,
  payload: Uint8Array | null,
  limiter: IoLimiter | null,
  stats: VolumeStats,
): Promise<void> {
  const startedMs = performance.now();
  stats.inFlight++;
  try {
    await execute(session, writer, buffers, request, payload, limiter);
  } finally {
    stats.inFlight--;
    countRequest(stats, request, startedMs);
  }
}

/** Runs a validated request and sends its reply. */
async function execute(
  session: Session,
  writer: ReplyWriter,
  buffers: BufferPool,
  request: Request,
  payload: Uint8Array | null,
  limiter: IoLimiter | null,
): Promise<void> {
  // Without limits this is one field read: no await, no allocation.
  if (limiter !== null && limiter.limited) {
    const waiting = throttle(limiter, request);
    if (waiting !== null) await waiting;
  }
  const { device } = session;
  const offset = Number(request.offset);
  const range = { offset, length: request.length };
  const fua = (request.flags & CommandFlag.fua) !== 0;
  try {
    switch (request.type) {
      case Command.read:
        return await sendRead(session, writer, buffers, request);
      case Command.write:
        assert(payload !== null);
        await device.write(offset, payload, fua);
        break;
      case Command.flush:
        await device.flush();
        break;
      case Command.trim:
        await device.trim(range, fua);
        break;
      case Command.writeZeroes: {
        const keepAllocated = (request.flags & CommandFlag.noHole) !== 0;
        // FAST_ZERO: answer ENOTSUP at once, changing nothing, unless no data must be written.
        if ((request.flags & CommandFlag.fastZero) && !device.zeroIsFast(range, keepAllocated)) {
          return await sendError(session, writer, request, NbdError.notsup);
        }
        await device.zero(range, { fua, keepAllocated });
        break;
      }
      case Command.cache:
        if (fua) await device.flush();
        break;
      case Command.blockStatus:
        return await sendBlockStatus(session, writer, request);
    }
  } catch (error) {
    return await sendError(session, writer, request, errorCode(error));
  }
  await writer.send(encodeSimpleReply(request.cookie, 0));
}

/**
 * Takes a request's share of its volume's limits: null when it may go now,
 * else a wait. Reads and writes cost one I/O and their length; trims and
 * write-zeroes one write I/O and no bytes (no payload moves); flush, cache and
 * block status nothing (docs/operations.md, "Per-volume I/O limits").
 */
function throttle(limiter: IoLimiter, request: Request): Promise<void> | null {
  const isRead = request.type === Command.read;
  if (!isRead && !writeCommands.has(request.type)) return null;
  const kind = isRead ? "read" : "write";
  const bytes = isRead || request.type === Command.write ? request.length : 0;
  return limiter.admit(kind, bytes) ? null : limiter.wait(kind, bytes);
}

async function sendRead(
  session: Session,
  writer: ReplyWriter,
  buffers: BufferPool,
  request: Request,
): Promise<void> {
  const data = buffers.acquire(request.length);
  try {
    await readInto(session, writer, request, data);
  } finally {
    buffers.release(data);
  }
}

/** Reads and sends; `data` may be reused once this resolves (every send was written). */
async function readInto(
  session: Session,
  writer: ReplyWriter,
  request: Request,
  data: Uint8Array,
): Promise<void> {
  const { device } = session;
  const range = { offset: Number(request.offset), length: request.length };
  try {
    if (!session.structuredReplies || (request.flags & CommandFlag.df)) {
      await device.read(range, data);
      if (!session.structuredReplies) {
        return await writer.send(encodeSimpleReply(request.cookie, 0), data);
      }
      return await sendDataChunk(writer, request, range.offset, data, true);
    }
    const extents = device.extents(range);
    for (const [index, extent] of extents.entries()) {
      const last = index === extents.length - 1;
      if (extent.zero) {
        const { bytes, view } = encodeChunkHeader(request.cookie, {
          type: Chunk.offsetHole,
          flags: last ? chunkFlagDone : 0,
          payloadBytes: 12,
        }, 12);
        view.setBigUint64(20, BigInt(extent.offset));
        view.setUint32(28, extent.length);
        await writer.send(bytes);
      } else {
        const part = data.subarray(
          extent.offset - range.offset,
          extent.offset - range.offset + extent.length,
        );
        await device.read({ offset: extent.offset, length: extent.length }, part);
        await sendDataChunk(writer, request, extent.offset, part, last);
      }
    }
  } catch (error) {
    return await sendError(session, writer, request, errorCode(error));
  }
}

function sendDataChunk(
  writer: ReplyWriter,
  request: Request,
  offset: number,
  data: Uint8Array,
  last: boolean,
): Promise<void> {
  const { bytes, view } = encodeChunkHeader(request.cookie, {
    type: Chunk.offsetData,
    flags: last ? chunkFlagDone : 0,
    payloadBytes: 8 + data.length,
  }, 8);
  view.setBigUint64(20, BigInt(offset));
  return writer.send(bytes, data);
}

/** One BLOCK_STATUS chunk per selected context, the last one marked done. */
async function sendBlockStatus(session: Session, writer: ReplyWriter, request: Request) {
  const range = { offset: Number(request.offset), length: request.length };
  // Every context answers before any chunk goes out: a failure is then one error reply.
  const answers = await Promise.all(session.contexts.map((context) => context.status(range)));
  for (const [index, context] of session.contexts.entries()) {
    let runs = answers[index];
    if (request.flags & CommandFlag.reqOne) runs = runs.slice(0, 1);
    runs = runs.slice(0, blockStatusExtentsMax);
    const { bytes, view } = encodeChunkHeader(request.cookie, {
      type: Chunk.blockStatus,
      flags: index === session.contexts.length - 1 ? chunkFlagDone : 0,
      payloadBytes: 4 + 8 * runs.length,
    }, 4 + 8 * runs.length);
    view.setUint32(20, context.id);
    runs.forEach((run, i) => {
      view.setUint32(24 + 8 * i, run.length);
      view.setUint32(28 + 8 * i, run.flags);
    });
    await writer.send(bytes);
  }
}

/** An error reply: a structured ERROR chunk when negotiated, else a simple reply. */
async function sendError(session: Session, writer: ReplyWriter, request: Request, error: number) {
  countError(error);
  if (!session.structuredReplies) {
    return await writer.send(encodeSimpleReply(request.cookie, error));
  }
  const { bytes, view } = encodeChunkHeader(request.cookie, {
    type: Chunk.error,
    flags: chunkFlagDone,
    payloadBytes: 6,
  }, 6);
  view.setUint32(20, error);
  view.setUint16(24, 0);
  await writer.send(bytes);
}

/** The one mapping from internal errors to NBD error codes. */
export function errorCode(error: unknown): number {
  // The client is gone: nothing to answer, nothing to log.
  if (error instanceof ConnectionClosedError) throw error;
  if (error instanceof RangeError) return NbdError.inval;
  if (error instanceof NotFoundError || error instanceof CorruptionError) return NbdError.io;
  // Fenced: the write lease moved away (live migration). Expected, so no alarm.
  if (error instanceof ConflictError) return NbdError.io;
  const code = (error as { code?: string }).code;
  if (code === "ENOSPC" || code === "EDQUOT" || code === "EFBIG") return NbdError.nospc;
  log.error("request failed: {error}", { error });
  return NbdError.io;
}
