/**
 * Who is in the cluster: SWIM gossip with Lifeguard refinements, its wire messages, over an injected transport, clock and randomness.
 *
 * @module
 */
export * from "./membership.ts";
export * from "./messages.ts";
export * from "./parse_messages.ts";
