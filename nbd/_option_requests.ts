/**
 * An option of the handshake as it is read and answered: the data of INFO/GO
 * and meta context requests decoded (names as the protocol allows them), the
 * replies one option sends, and the export it names opened or refused.
 */
import type { Store, VolumeAuthority } from "../core/mod.ts";
import { type NbdDevice, openExport } from "./device.ts";
import { exportNameBytesMax, metaQueriesMax } from "./limits.ts";
import { Reply } from "./protocol.ts";
import { nbdHandshakeFailures } from "../metrics/mod.ts";
import { logger } from "../log/mod.ts";

const log = logger("nbd");
/** Longest error message sent in an option reply (the rest is in the log). */
const replyMessageBytesMax = 1024;

const decoder = new TextDecoder("utf-8", { fatal: true });

/** The replies of one option: of a type with an optional payload, or an error with a message. */
export interface OptionReplies {
  reply(type: number, payload?: Uint8Array): Promise<void>;
  error(type: number, message: string): Promise<void>;
}

/**
 * The export `name` opened through `authority`; null, with ERR_UNKNOWN
 * answered (and counted as a failed handshake), when there is none or it
 * could not be opened: the reply then says why ("not available", as the
 * protocol words ERR_UNKNOWN), where a dropped connection would tell nothing.
 */
export async function openNamedExport(
  store: Store,
  authority: VolumeAuthority,
  name: string,
  replies: OptionReplies,
): Promise<NbdDevice | null> {
  let device: NbdDevice | null;
  try {
    device = await openExport(store, name, authority);
  } catch (error) {
    const message = `Cannot open export ${JSON.stringify(name)}: ${(error as Error).message}`;
    log.warn("{message}", { message, error });
    nbdHandshakeFailures.inc({ reason: "open_failed" });
    await replies.error(Reply.errUnknown, message.slice(0, replyMessageBytesMax));
    return null;
  }
  if (device === null) {
    nbdHandshakeFailures.inc({ reason: "unknown_export" });
    await replies.error(Reply.errUnknown, `no export named ${JSON.stringify(name)}`);
  }
  return device;
}

/** A name as the protocol allows it: UTF-8, no NUL, at most 4096 bytes; else null. */
export function decodeName(bytes: Uint8Array): string | null {
  if (bytes.length > exportNameBytesMax || bytes.includes(0)) return null;
  try {
    return decoder.decode(bytes);
  } catch {
    return null;
  }
}

/** INFO/GO data: u32 name length, name, u16 count, count × u16; null if it doesn't add up. */
export function parseInfoRequest(data: Uint8Array): { name: string; infos: number[] } | null {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (data.length < 6) return null;
  const nameLength = view.getUint32(0);
  if (nameLength > data.length - 6) return null;
  const count = view.getUint16(4 + nameLength);
  if (data.length !== 6 + nameLength + 2 * count) return null;
  const infos = Array.from({ length: count }, (_, i) => view.getUint16(6 + nameLength + 2 * i));
  const name = decodeName(data.subarray(4, 4 + nameLength));
  return name === null ? null : { name, infos };
}

/** Meta context data: u32 name length, name, u32 count, count × (u32 length, query). */
export function parseMetaRequest(data: Uint8Array): { name: string; queries: string[] } | null {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (data.length < 8) return null;
  const nameLength = view.getUint32(0);
  if (nameLength > data.length - 8) return null;
  const count = view.getUint32(4 + nameLength);
  if (count > metaQueriesMax) return null;
  const queries: string[] = [];
  let at = 8 + nameLength;
  for (let i = 0; i < count; i++) {
    if (at + 4 > data.length) return null;
    const length = view.getUint32(at);
    if (length > data.length - at - 4) return null;
    const query = decodeName(data.subarray(at + 4, at + 4 + length));
    if (query === null) return null;
    queries.push(query);
    at += 4 + length;
  }
  if (at !== data.length) return null;
  const name = decodeName(data.subarray(4, 4 + nameLength));
  return name === null ? null : { name, queries };
}
