/**
 * How members talk: links (persistent, multiplexed connections authenticated
 * once by a handshake with the cluster key) for the data plane's calls; sealed
 * envelopes (key, cluster id, sequence numbers) for UDP gossip and sealed RPC
 * over HTTP; the cluster port that serves both; the cluster identity; and
 * refusals an operator can see.
 *
 * @module
 */
export * from "./auth.ts";
export * from "./cluster_node.ts";
export * from "./identity.ts";
export { LinkClient, type LinkClientOptions } from "./link_client.ts";
export { LinkServer, type LinkServerOptions } from "./link_server.ts";
export * from "./link_wire.ts";
export { type ClusterPort, listenClusterPort, requestPortLimitsDefault } from "./net_env.ts";
export * from "./refusals.ts";
export * from "./replay_guard.ts";
export * from "./rpc.ts";
export * from "./rpc_client.ts";
export * from "./rpc_message.ts";
