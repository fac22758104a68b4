/**
 * How members talk: sealed envelopes (key, cluster id, sequence numbers), sealed RPC over HTTP, UDP gossip sockets, the cluster identity, and refusals an operator can see.
 *
 * @module
 */
export * from "./auth.ts";
export * from "./cluster_node.ts";
export * from "./identity.ts";
export * from "./refusals.ts";
export * from "./replay_guard.ts";
export * from "./rpc.ts";
export * from "./rpc_client.ts";
export * from "./rpc_message.ts";
