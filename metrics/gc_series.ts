/**
 * Garbage collection's series, bumped by every collection: the automatic one
 * that follows deletions and uploads as well as `POST /v1/gc`.
 */
import { Counter } from "prom-client";
import { registry } from "./registry.ts";

/** Why a collection ran (the `trigger` label). */
export type GcTrigger = "automatic" | "request" | "failed_upload";
const triggers: GcTrigger[] = ["automatic", "request", "failed_upload"];

/** Collections completed, by trigger. */
export const gcRuns: Counter<"trigger"> = new Counter({
  name: "atoll_gc_runs_total",
  help: "Garbage collections completed, by trigger: automatic (a second after deletions and " +
    "uploads), request (POST /v1/gc), failed_upload",
  labelNames: ["trigger"],
  registers: [registry],
});
for (const trigger of triggers) gcRuns.inc({ trigger }, 0);

/** Blocks deleted by garbage collection. */
export const gcDeletedBlocks: Counter = new Counter({
  name: "atoll_gc_deleted_blocks_total",
  help: "Blocks deleted by garbage collection (automatic or asked for)",
  registers: [registry],
});

/** Objects deleted by garbage collection. */
export const gcDeletedObjects: Counter = new Counter({
  name: "atoll_gc_deleted_objects_total",
  help: "Volume objects deleted by garbage collection (automatic or asked for)",
  registers: [registry],
});
