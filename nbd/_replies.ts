/**
 * The replies of the transmission phase that carry more than a simple
 * success: data and hole chunks, block status chunks and errors (structured
 * when the client negotiated structured replies), and the one mapping from
 * internal errors to NBD error codes.
 */
import { type ByteRange, ConflictError, CorruptionError, NotFoundError } from "../core/mod.ts";
import { ConnectionClosedError, type ReplyWriter } from "./conn_io.ts";
import type { Session } from "./handshake.ts";
import { blockStatusExtentsMax } from "./limits.ts";
import {
  Chunk,
  chunkFlagDone,
  CommandFlag,
  encodeChunkHeader,
  encodeSimpleReply,
  NbdError,
  type Request,
} from "./protocol.ts";
import { logger } from "../log/mod.ts";
import { countError } from "./_request_counts.ts";

const log = logger("nbd");

/** A data chunk: `data` is the export's bytes at `offset`. */
export function sendDataChunk(
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

/** A hole chunk: `range` of the export reads as zeros. */
export function sendHoleChunk(
  writer: ReplyWriter,
  request: Request,
  range: ByteRange,
  last: boolean,
): Promise<void> {
  const { bytes, view } = encodeChunkHeader(request.cookie, {
    type: Chunk.offsetHole,
    flags: last ? chunkFlagDone : 0,
    payloadBytes: 12,
  }, 12);
  view.setBigUint64(20, BigInt(range.offset));
  view.setUint32(28, range.length);
  return writer.send(bytes);
}

/** One BLOCK_STATUS chunk per selected context, the last one marked done. */
export async function sendBlockStatus(session: Session, writer: ReplyWriter, request: Request) {
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
export async function sendError(
  session: Session,
  writer: ReplyWriter,
  request: Request,
  error: number,
) {
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
