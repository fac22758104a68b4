/**
 * Every wire constant of the NBD protocol that Atoll speaks (NetworkBlockDevice
 * doc/proto.md, fixed newstyle), with the encoders and decoders built on them.
 * All integers are big endian; u64 values are bigint at the edge.
 */

// Handshake.
/** "NBDMAGIC": first 8 bytes the server sends. */
export const nbdMagic = 0x4e42444d41474943n;
/** "IHAVEOPT": newstyle magic, and the prefix of every client option. */
export const optionMagic = 0x49484156454f5054n;
/** Prefix of every option reply. */
export const optionReplyMagic = 0x3e889045565a9n;

/** Handshake flags (server) and client flags. */
export const handshakeFlags = { fixedNewstyle: 1, noZeroes: 2 } as const;
/** Client flags a server may accept; any other bit closes the connection. */
export const clientFlagsKnown = handshakeFlags.fixedNewstyle | handshakeFlags.noZeroes;

/** Options (NBD_OPT_*). */
export const Option = {
  exportName: 1,
  abort: 2,
  list: 3,
  startTls: 5,
  info: 6,
  go: 7,
  structuredReply: 8,
  listMetaContext: 9,
  setMetaContext: 10,
  extendedHeaders: 11,
} as const;

/** Option reply types (NBD_REP_*); errors have bit 31 set. */
export const Reply = {
  ack: 1,
  server: 2,
  info: 3,
  metaContext: 4,
  errUnsup: 2 ** 31 + 1,
  errPolicy: 2 ** 31 + 2,
  errInvalid: 2 ** 31 + 3,
  errPlatform: 2 ** 31 + 4,
  errTlsReqd: 2 ** 31 + 5,
  errUnknown: 2 ** 31 + 6,
  errShutdown: 2 ** 31 + 7,
  errBlockSizeReqd: 2 ** 31 + 8,
  errTooBig: 2 ** 31 + 9,
} as const;

/** Information types in NBD_REP_INFO (NBD_INFO_*). */
export const Info = { export: 0, name: 1, description: 2, blockSize: 3 } as const;

/** Transmission flags (NBD_FLAG_*), sent with the export. */
export const TransmissionFlag = {
  hasFlags: 1 << 0,
  readOnly: 1 << 1,
  sendFlush: 1 << 2,
  sendFua: 1 << 3,
  rotational: 1 << 4,
  sendTrim: 1 << 5,
  sendWriteZeroes: 1 << 6,
  sendDf: 1 << 7,
  canMultiConn: 1 << 8,
  sendResize: 1 << 9,
  sendCache: 1 << 10,
  sendFastZero: 1 << 11,
} as const;

// Transmission.
/** Magic of every request. */
export const requestMagic = 0x25609513;
/** Magic of a simple reply. */
export const simpleReplyMagic = 0x67446698;
/** Magic of a structured reply chunk. */
export const structuredReplyMagic = 0x668e33ef;
/** Bytes of a request header; of a simple reply; of a structured chunk header. */
export const requestHeaderBytes = 28;
export const simpleReplyBytes = 16;
export const structuredHeaderBytes = 20;

/** Commands (NBD_CMD_*). */
export const Command = {
  read: 0,
  write: 1,
  disc: 2,
  flush: 3,
  trim: 4,
  cache: 5,
  writeZeroes: 6,
  blockStatus: 7,
} as const;

/** Command flags (NBD_CMD_FLAG_*). */
export const CommandFlag = {
  fua: 1 << 0,
  noHole: 1 << 1,
  df: 1 << 2,
  reqOne: 1 << 3,
  fastZero: 1 << 4,
} as const;
/** Every command flag this server understands. */
export const commandFlagsKnown = 0x1f;

/** Structured reply chunk types (NBD_REPLY_TYPE_*) and flags. */
export const Chunk = {
  none: 0,
  offsetData: 1,
  offsetHole: 2,
  blockStatus: 5,
  error: 2 ** 15 + 1,
  errorOffset: 2 ** 15 + 2,
} as const;
/** Chunk flag: the last chunk of a reply. */
export const chunkFlagDone = 1;

/** Error values on the wire (NBD_E*). */
export const NbdError = {
  perm: 1,
  io: 5,
  nomem: 12,
  inval: 22,
  nospc: 28,
  overflow: 75,
  notsup: 95,
  shutdown: 108,
} as const;

/** The metadata context of allocation, and its id; base:allocation state bits. */
export const baseAllocation = "base:allocation";
export const baseAllocationId = 1;
export const State = { hole: 1, zero: 2 } as const;
/**
 * qemu's dirty bitmap contexts (qemu docs/interop/nbd.rst), `qemu:dirty-bitmap:NAME`;
 * ours are named after snapshots. Their one state bit: the extent is dirty.
 */
export const dirtyBitmapPrefix = "qemu:dirty-bitmap:";
export const DirtyState = { dirty: 1 } as const;

/** A decoded request header. */
export interface Request {
  flags: number;
  type: number;
  /** The client's 8-byte handle, echoed in replies. */
  cookie: Uint8Array;
  offset: bigint;
  length: number;
}

/** Decodes a 28-byte request header; null when its magic is wrong. */
export function decodeRequest(bytes: Uint8Array): Request | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, requestHeaderBytes);
  if (view.getUint32(0) !== requestMagic) return null;
  return {
    flags: view.getUint16(4),
    type: view.getUint16(6),
    cookie: bytes.slice(8, 16),
    offset: view.getBigUint64(16),
    length: view.getUint32(24),
  };
}

/** Encodes a request header (clients and tests use it). */
export function encodeRequest(request: Request): Uint8Array {
  const bytes = new Uint8Array(requestHeaderBytes);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, requestMagic);
  view.setUint16(4, request.flags);
  view.setUint16(6, request.type);
  bytes.set(request.cookie, 8);
  view.setBigUint64(16, request.offset);
  view.setUint32(24, request.length);
  return bytes;
}

/** A simple reply header: magic, error, cookie. */
export function encodeSimpleReply(cookie: Uint8Array, error: number): Uint8Array {
  const bytes = new Uint8Array(simpleReplyBytes);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, simpleReplyMagic);
  view.setUint32(4, error);
  bytes.set(cookie, 8);
  return bytes;
}

/** A structured chunk header followed by `extra` bytes reserved for its fixed fields. */
export function encodeChunkHeader(
  cookie: Uint8Array,
  chunk: { type: number; flags: number; payloadBytes: number },
  extra = 0,
): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(structuredHeaderBytes + extra);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, structuredReplyMagic);
  view.setUint16(4, chunk.flags);
  view.setUint16(6, chunk.type);
  bytes.set(cookie, 8);
  view.setUint32(16, chunk.payloadBytes);
  return { bytes, view };
}

/** An option reply: magic, option, reply type, length, data. */
export function encodeOptionReply(
  option: number,
  type: number,
  data: Uint8Array = new Uint8Array(),
): Uint8Array {
  const bytes = new Uint8Array(20 + data.length);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, optionReplyMagic);
  view.setUint32(8, option);
  view.setUint32(12, type);
  view.setUint32(16, data.length);
  bytes.set(data, 20);
  return bytes;
}

/** NBD_REP_META_CONTEXT's data: u32 context id, the context's name. */
export function encodeMetaContext(id: number, name: string): Uint8Array {
  const bytes = new TextEncoder().encode(name);
  const payload = new Uint8Array(4 + bytes.length);
  new DataView(payload.buffer).setUint32(0, id);
  payload.set(bytes, 4);
  return payload;
}
