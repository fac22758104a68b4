/** Every limit of the NBD server, named with its unit, asserted together. */
import { assert } from "../core/assert.ts";

/** Largest READ or WRITE payload; advertised as the maximum block size. */
export const requestBytesMax = 32 * 1024 * 1024;
/** Preferred block size advertised to clients. */
export const preferredBlockBytes = 4096;
/** Largest option payload accepted during the handshake (names are ≤ 4096 bytes). */
export const optionBytesMax = 64 * 1024;
/** Longest export name, per the protocol's string rule. */
export const exportNameBytesMax = 4096;
/** Options one handshake may send before the server hangs up. */
export const optionsMax = 256;
/** Metadata context queries one option may carry. */
export const metaQueriesMax = 64;
/** Metadata contexts one SET_META_CONTEXT may select (more: NBD_REP_ERR_TOO_BIG). */
export const selectedMetaContextsMax = 8;
/** Metadata contexts one LIST_META_CONTEXT lists (a volume's snapshots past it are left out). */
export const listedMetaContextsMax = 1000;
/** Exports listed by NBD_OPT_LIST. */
export const listedExportsMax = 10_000;
/** Requests one connection may have in flight; reading pauses beyond it. */
export const inflightRequestsMax = 64;
/**
 * Time a client has to finish the handshake (QEMU takes milliseconds); an idle
 * connection that never starts one holds a descriptor no longer than this.
 * Connection caps are the node's listener limits (net/limits.ts).
 */
export const handshakeTimeoutMs = 10_000;
/** Payload buffer bytes the node keeps for reuse, across all connections. */
export const pooledBufferBytesMax = 128 * 1024 * 1024;
/** Largest single buffer kept for reuse (a 4 MiB block; larger requests are rare). */
export const pooledBufferSizeMax = 4 * 1024 * 1024;
/** Extents one BLOCK_STATUS reply describes at most. */
export const blockStatusExtentsMax = 4096;

assert(exportNameBytesMax + 1024 <= optionBytesMax, "a GO option with a full-length name fits");
assert(preferredBlockBytes <= requestBytesMax);
assert(requestBytesMax <= 2 ** 25, "payloads up to 32 MiB are never treated as abuse");
