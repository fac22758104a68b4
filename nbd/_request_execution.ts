/**
 * Running one validated request of the transmission phase: its share of the
 * volume's I/O limits first, then the device call, then its reply; counted and
 * timed in the volume's figures when it has some (_request_counts.ts).
 */
import type { BufferPool, IoLimiter } from "../core/mod.ts";
import { assert } from "../core/assert.ts";
import type { ReplyWriter } from "./conn_io.ts";
import type { Session } from "./handshake.ts";
import { Command, CommandFlag, encodeSimpleReply, NbdError, type Request } from "./protocol.ts";
import type { VolumeStats } from "../metrics/mod.ts";
import { countRequest } from "./_request_counts.ts";
import { errorCode, sendBlockStatus, sendDataChunk, sendError, sendHoleChunk } from "./_replies.ts";

/** The commands that change the export (refused on a read-only one; limited as writes). */
export const writeCommands = new Set<number>([Command.write, Command.trim, Command.writeZeroes]);

/** What the requests of one connection run with, made once per connection. */
export interface RequestContext {
  session: Session;
  writer: ReplyWriter;
  buffers: BufferPool;
  /** The I/O limits of the export's volume on this node (null for an image or a snapshot). */
  limiter: IoLimiter | null;
}

/**
 * {@linkcode execute} counted and timed in the volume's figures: a few
 * additions on numbers the table already holds, no allocation.
 */
export async function executeCounted(
  context: RequestContext,
  request: Request,
  payload: Uint8Array | null,
  stats: VolumeStats,
): Promise<void> {
  const startedMs = performance.now();
  stats.inFlight++;
  try {
    await execute(context, request, payload);
  } finally {
    stats.inFlight--;
    countRequest(stats, request, startedMs);
  }
}

/** Runs a validated request and sends its reply. */
export async function execute(
  context: RequestContext,
  request: Request,
  payload: Uint8Array | null,
): Promise<void> {
  const { session, writer, limiter } = context;
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
        return await sendRead(context, request);
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

/** Reads into a pooled buffer and sends. */
async function sendRead(context: RequestContext, request: Request): Promise<void> {
  const { session, writer, buffers } = context;
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
        await sendHoleChunk(writer, request, extent, last);
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
