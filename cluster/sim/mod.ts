/**
 * Deterministic simulations: membership on thousands of nodes, and the metadata (registers, voters, reconfiguration) under seeded faults.
 *
 * @module
 */
export * from "./meta_sim.ts";
export * from "./simulator.ts";
