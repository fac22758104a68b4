/**
 * The fixed newstyle handshake: greets, haggles options, and returns the export
 * the client chose (or null when it left). A framing violation throws
 * NbdFramingError and the caller closes the connection; an invalid option gets
 * an error reply and the haggling goes on.
 *
 * The meta context options are _meta_options.ts; decoding an option's data,
 * _option_requests.ts.
 */
import type { Store, VolumeAuthority } from "../core/mod.ts";
import type { ConnReader, ReplyWriter } from "./conn_io.ts";
import { listExports, type NbdDevice, openExport, transmissionFlags } from "./device.ts";
import {
  listedExportsMax,
  optionBytesMax,
  optionsMax,
  preferredBlockBytes,
  requestBytesMax,
} from "./limits.ts";
import type { MetaContext } from "./_meta_contexts.ts";
import { listMetaContexts, type MetaSelection, setMetaContexts } from "./_meta_options.ts";
import {
  decodeName,
  openNamedExport,
  type OptionReplies,
  parseInfoRequest,
} from "./_option_requests.ts";
import {
  clientFlagsKnown,
  encodeOptionReply,
  handshakeFlags,
  Info,
  nbdMagic,
  Option,
  optionMagic,
  Reply,
} from "./protocol.ts";
import { nbdHandshakeFailures } from "../metrics/mod.ts";

/** The client broke the protocol: close the connection. */
export class NbdFramingError extends Error {
  override name = "NbdFramingError";
  /** What /metrics counts the failed handshake as (atoll_nbd_handshake_failures_total). */
  readonly reason: "protocol" | "unknown_export";

  constructor(message: string, reason: "protocol" | "unknown_export" = "protocol") {
    super(message);
    this.reason = reason;
  }
}

/** What a successful handshake settled. */
export interface Session {
  device: NbdDevice;
  structuredReplies: boolean;
  /** The metadata contexts selected with SET_META_CONTEXT for this export (_meta_contexts.ts). */
  contexts: MetaContext[];
}

const encoder = new TextEncoder();

/** Whether the node takes I/O now; `reason` says why not (shown by the client). */
export type ReadinessCheck = () => { ready: boolean; reason?: string };

/** Options of {@linkcode handshake}. */
export interface HandshakeOptions {
  /** Opens volumes: the single node's own authority, or a cluster's write leases. */
  authority: VolumeAuthority;
  /** While not ready, every option that names or lists exports is refused. */
  ready?: ReadinessCheck;
}

/** Options that touch the exports: refused while the node is not ready. */
const exportOptions = new Set<number>([
  Option.exportName,
  Option.list,
  Option.info,
  Option.go,
  Option.listMetaContext,
  Option.setMetaContext,
]);

/** Runs the handshake; null when the client aborted or was refused. */
export async function handshake(
  store: Store,
  reader: ConnReader,
  writer: ReplyWriter,
  options: HandshakeOptions,
): Promise<Session | null> {
  const { authority } = options;
  const greeting = new Uint8Array(18);
  const greetingView = new DataView(greeting.buffer);
  greetingView.setBigUint64(0, nbdMagic);
  greetingView.setBigUint64(8, optionMagic);
  greetingView.setUint16(16, handshakeFlags.fixedNewstyle | handshakeFlags.noZeroes);
  await writer.send(greeting);

  const clientFlags = await readU32(reader);
  if ((clientFlags & ~clientFlagsKnown) !== 0) {
    throw new NbdFramingError(`unknown client flags 0x${clientFlags.toString(16)}`);
  }
  const noZeroes = (clientFlags & handshakeFlags.noZeroes) !== 0;
  let structuredReplies = false;
  /** The last SET_META_CONTEXT: the export it named and what it selected there. */
  let selected: MetaSelection | null = null;
  const contextsOf = (name: string) => selected?.name === name ? selected.contexts : [];

  for (let count = 0; count < optionsMax; count++) {
    const header = new Uint8Array(16);
    await reader.readExact(header);
    const view = new DataView(header.buffer);
    if (view.getBigUint64(0) !== optionMagic) throw new NbdFramingError("bad option magic");
    const option = view.getUint32(8);
    const length = view.getUint32(12);
    if (length > optionBytesMax) {
      throw new NbdFramingError(`option ${option} of ${length} bytes exceeds ${optionBytesMax}`);
    }
    const data = new Uint8Array(length);
    await reader.readExact(data);
    const reply = (type: number, payload?: Uint8Array) =>
      writer.send(encodeOptionReply(option, type, payload));
    const error = (type: number, message: string) => reply(type, encoder.encode(message));
    const replies: OptionReplies = { reply, error };

    const readiness = exportOptions.has(option) ? options.ready?.() : undefined;
    if (readiness !== undefined && !readiness.ready) {
      nbdHandshakeFailures.inc({ reason: "not_ready" });
      // EXPORT_NAME has no error reply: proto.md has the server end the session.
      if (option === Option.exportName) return null;
      // ERR_SHUTDOWN, "unwilling to continue negotiation": clients give up on this
      // node and say why (ERR_UNKNOWN would claim the export does not exist).
      await error(
        Reply.errShutdown,
        `Cannot serve exports: this node is not ready: ${readiness.reason ?? "starting"}`,
      );
      continue;
    }
    switch (option) {
      case Option.exportName: {
        const name = decodeName(data);
        const device = name === null ? null : await openExport(store, name, authority);
        if (name === null || device === null) {
          throw new NbdFramingError(`no export ${JSON.stringify(name)}`, "unknown_export");
        }
        const answer = new Uint8Array(noZeroes ? 10 : 134);
        const answerView = new DataView(answer.buffer);
        answerView.setBigUint64(0, BigInt(device.sizeBytes));
        answerView.setUint16(8, transmissionFlags(device));
        await writer.send(answer);
        return { device, structuredReplies, contexts: contextsOf(name) };
      }
      case Option.abort:
        await reply(Reply.ack).catch(() => {});
        return null;
      case Option.list:
        if (length !== 0) {
          await error(Reply.errInvalid, "LIST takes no data");
          break;
        }
        for (const name of await listExports(store, listedExportsMax)) {
          const bytes = encoder.encode(name);
          const entry = new Uint8Array(4 + bytes.length);
          new DataView(entry.buffer).setUint32(0, bytes.length);
          entry.set(bytes, 4);
          await reply(Reply.server, entry);
        }
        await reply(Reply.ack);
        break;
      case Option.info:
      case Option.go: {
        const request = parseInfoRequest(data);
        if (request === null) {
          await error(Reply.errInvalid, "malformed INFO/GO request");
          break;
        }
        const device = await openNamedExport(store, authority, request.name, replies);
        if (device === null) break;
        await sendInfo(reply, device, request.infos);
        await reply(Reply.ack);
        if (option === Option.go) {
          return { device, structuredReplies, contexts: contextsOf(request.name) };
        }
        break;
      }
      case Option.structuredReply:
        if (length !== 0) {
          await error(Reply.errInvalid, "STRUCTURED_REPLY takes no data");
          break;
        }
        structuredReplies = true;
        await reply(Reply.ack);
        break;
      case Option.listMetaContext:
        await listMetaContexts(data, { store, authority, replies });
        break;
      case Option.setMetaContext:
        // A SET replaces what the last one selected, even when it fails (proto.md).
        selected = await setMetaContexts(data, { store, authority, replies }, structuredReplies);
        break;
      case Option.startTls:
        await error(Reply.errUnsup, "TLS is not supported; use a unix socket or loopback");
        break;
      default:
        await error(Reply.errUnsup, `option ${option} is not supported`);
    }
  }
  throw new NbdFramingError(`more than ${optionsMax} options`);
}

async function sendInfo(
  reply: (type: number, payload: Uint8Array) => Promise<void>,
  device: NbdDevice,
  infos: number[],
): Promise<void> {
  const exportInfo = new DataView(new ArrayBuffer(12));
  exportInfo.setUint16(0, Info.export);
  exportInfo.setBigUint64(2, BigInt(device.sizeBytes));
  exportInfo.setUint16(10, transmissionFlags(device));
  await reply(Reply.info, new Uint8Array(exportInfo.buffer));
  // Block sizes go out whether asked or not: clients must learn the 32 MiB limit.
  const sizes = new DataView(new ArrayBuffer(14));
  sizes.setUint16(0, Info.blockSize);
  sizes.setUint32(2, 1);
  sizes.setUint32(6, preferredBlockBytes);
  sizes.setUint32(10, requestBytesMax);
  await reply(Reply.info, new Uint8Array(sizes.buffer));
  if (infos.includes(Info.name)) {
    const name = encoder.encode(device.name);
    const payload = new Uint8Array(2 + name.length);
    new DataView(payload.buffer).setUint16(0, Info.name);
    payload.set(name, 2);
    await reply(Reply.info, payload);
  }
}

async function readU32(reader: ConnReader): Promise<number> {
  const bytes = new Uint8Array(4);
  await reader.readExact(bytes);
  return new DataView(bytes.buffer).getUint32(0);
}
