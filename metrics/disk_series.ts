/**
 * The data disk's writes around the page cache (core/_direct_writes.ts): new
 * blocks, and a replica's large copies of changes its writer made elsewhere;
 * and the reads that then find pages outside the page cache (core/_fd_cache.ts).
 */
import { Counter, Gauge } from "prom-client";
import { registry } from "./registry.ts";

/** What a direct write stored (the `kind` label). */
export type DirectWriteKind = "block" | "object";
const kinds: DirectWriteKind[] = ["block", "object"];

/** Direct writes by kind and result: `direct`, or `failed` (written through the page cache instead). */
export const directWrites: Counter<"kind" | "result"> = new Counter({
  name: "atoll_disk_direct_writes_total",
  help: "Writes of new blocks and of replicas' large changes around the page cache (O_DIRECT), " +
    "by kind (block, object) and result: direct, or failed (then written through the page cache)",
  labelNames: ["kind", "result"],
  registers: [registry],
});
for (const kind of kinds) {
  for (const result of ["direct", "failed"]) directWrites.inc({ kind, result }, 0);
}

/** Direct writes taken from the caller's own page-aligned buffer, without a staging copy. */
export const directWritesUnstaged: Counter<"kind"> = new Counter({
  name: "atoll_disk_direct_writes_unstaged_total",
  help: "Direct writes (counted in atoll_disk_direct_writes_total too) written from the caller's " +
    "page-aligned buffer (an upload's block, a link's pooled body) rather than copied into a " +
    "staging buffer first, by kind (block, object)",
  labelNames: ["kind"],
  registers: [registry],
});
for (const kind of kinds) directWritesUnstaged.inc({ kind }, 0);

/** Object writes answered before they were done (a replica's large changes) that then failed. */
export const lostWrites: Counter = new Counter({
  name: "atoll_disk_lost_writes_total",
  help: "Writes of a replica's large changes, answered once under way, that then failed (the " +
    "object reads and syncs as lost until the replica gives the copy up and its writer replaces it)",
  registers: [registry],
});

/** 1 when the data directory took the O_DIRECT probe at start. */
export const directWritesAvailable: Gauge = new Gauge({
  name: "atoll_disk_direct_writes_available",
  help: "1 when the data directory's file system takes O_DIRECT writes (probed at start); " +
    "0 when it refused them (every write then goes through the page cache) or the node has no " +
    "local data disk (RADOS engine)",
  registers: [registry],
});

/** Small reads that found some of their pages outside the page cache (read off the event loop). */
export const coldReads: Counter = new Counter({
  name: "atoll_disk_cold_reads_total",
  help: "Reads under 128 KiB that found some of their bytes outside the page cache and waited " +
    "for the disk off the event loop (a replica's copies, written around the cache, read after " +
    "a migration or by another member)",
  registers: [registry],
});

/** Windows of files read at random from the disk that the kernel was asked to read whole. */
export const readAheads: Counter = new Counter({
  name: "atoll_disk_read_aheads_total",
  help: "4 MiB windows of object and block files asked of the kernel in the background once " +
    "their reads had found cold pages eight times",
  registers: [registry],
});
