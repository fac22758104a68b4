/**
 * Blocks and objects on their replicas: replicated puts and reads, versioned object copies, and the write quorum.
 *
 * @module
 */
export * from "./block_rpc.ts";
export * from "./block_service.ts";
export * from "./fences.ts";
export * from "./object_link.ts";
export * from "./object_rpc.ts";
export * from "./object_rpc_link.ts";
export * from "./object_service.ts";
export * from "./object_journal.ts";
export * from "./journal_disk.ts";
export * from "./replicated_objects.ts";
export * from "./object_floors.ts";
