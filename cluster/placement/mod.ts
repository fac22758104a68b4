/**
 * Where a name lives: weighted rendezvous hashing over the members, zones first.
 *
 * @module
 */
export * from "./placement.ts";
