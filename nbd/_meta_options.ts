/**
 * The handshake's options LIST_META_CONTEXT (which metadata contexts an
 * export offers) and SET_META_CONTEXT (those BLOCK_STATUS will answer on it);
 * _meta_contexts.ts says what each context is.
 */
import type { Store, VolumeAuthority } from "../core/mod.ts";
import { selectedMetaContextsMax } from "./limits.ts";
import {
  listContexts,
  type MetaContext,
  selectableCount,
  selectContexts,
} from "./_meta_contexts.ts";
import { encodeMetaContext, Reply } from "./protocol.ts";
import { openNamedExport, type OptionReplies, parseMetaRequest } from "./_option_requests.ts";

const malformed = "malformed meta context request";

/** What a SET_META_CONTEXT selected: the export it named, and the contexts there. */
export interface MetaSelection {
  name: string;
  contexts: MetaContext[];
}

/** What a meta context option works with: the node's exports, and its replies. */
export interface MetaOption {
  store: Store;
  authority: VolumeAuthority;
  replies: OptionReplies;
}

/** Answers LIST_META_CONTEXT: the contexts of the export named that match its queries. */
export async function listMetaContexts(data: Uint8Array, option: MetaOption): Promise<void> {
  const { store, authority, replies } = option;
  const request = parseMetaRequest(data);
  if (request === null) return await replies.error(Reply.errInvalid, malformed);
  if (await openNamedExport(store, authority, request.name, replies) === null) return;
  for (const name of await listContexts(store, request.name, request.queries)) {
    await replies.reply(Reply.metaContext, encodeMetaContext(0, name));
  }
  await replies.reply(Reply.ack);
}

/**
 * Answers SET_META_CONTEXT (after STRUCTURED_REPLY only): what it selected,
 * or null when it failed. Either replaces what the last one selected (proto.md).
 */
export async function setMetaContexts(
  data: Uint8Array,
  option: MetaOption,
  structuredReplies: boolean,
): Promise<MetaSelection | null> {
  const { store, authority, replies } = option;
  const request = parseMetaRequest(data);
  if (request === null) {
    await replies.error(Reply.errInvalid, malformed);
    return null;
  }
  if (!structuredReplies) {
    await replies.error(Reply.errInvalid, "SET_META_CONTEXT needs structured replies first");
    return null;
  }
  const device = await openNamedExport(store, authority, request.name, replies);
  if (device === null) return null;
  if (selectableCount(request.queries) > selectedMetaContextsMax) {
    await replies.error(Reply.errTooBig, `more than ${selectedMetaContextsMax} metadata contexts`);
    return null;
  }
  const contexts = await selectContexts(store, request.name, device, request.queries);
  for (const context of contexts) {
    await replies.reply(Reply.metaContext, encodeMetaContext(context.id, context.name));
  }
  await replies.reply(Reply.ack);
  return { name: request.name, contexts };
}
