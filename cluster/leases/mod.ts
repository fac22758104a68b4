/**
 * Write leases: at most one node writes a volume, and the lease follows its VM.
 *
 * @module
 */
export * from "./leases.ts";
