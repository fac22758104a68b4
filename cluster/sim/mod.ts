/**
 * Deterministic simulations: membership on thousands of nodes, the metadata (registers, voters, reconfiguration), and the whole data path (engine, leases, volumes) under seeded faults.
 *
 * @module
 */
export * from "./cluster_sim.ts";
export * from "./meta_sim.ts";
export * from "./simulator.ts";
