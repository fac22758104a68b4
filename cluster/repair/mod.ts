/**
 * Background work that keeps data whole: healing (re-replication, hand-off, hints, scrub) and garbage collection across members.
 *
 * @module
 */
export * from "./cluster_gc.ts";
export * from "./healer.ts";
