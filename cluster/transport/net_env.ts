/**
 * The real network of a node, in one place: sealed requests posted over HTTP,
 * the request port served by the node's own HTTP server (net/), and UDP
 * datagrams. Everything
 * else in the cluster reaches peers through interfaces (`RpcCaller`, the
 * membership's environment), which the deterministic simulation implements
 * with its own network.
 *
 * @module
 */
import dgram from "node:dgram";
import {
  clusterConnectionsMax,
  clusterConnectionsPerAddressMax,
  clusterRequestTimeoutMs,
  HttpServer,
  type ListenerLimits,
} from "../../net/mod.ts";

/** Posts a sealed request body to the request port of the member at `address`. */
export function postRequest(
  address: string,
  body: Uint8Array<ArrayBuffer>,
  init: { signal: AbortSignal; headers: Record<string, string> },
): Promise<Response> {
  return fetch(`http://${address}/rpc`, { method: "POST", body, ...init });
}

/** A listening request port. */
export interface RequestPort {
  readonly port: number;
  shutdown(): Promise<void>;
}

/** The request port's connection caps when the node does not size them from its open-files limit. */
export const requestPortLimitsDefault: ListenerLimits = {
  connectionsMax: clusterConnectionsMax,
  connectionsPerAddressMax: clusterConnectionsPerAddressMax,
};

/**
 * Serves `handler` on `hostname:port` (0 picks a free port). Nothing is open
 * to anyone without the key, so a connection must deliver a whole request
 * within {@linkcode clusterRequestTimeoutMs} of its first byte, and carries
 * another only after an answer of 200: a sealed reply, which the handler
 * gives only to a request sealed with the key.
 */
export function listenRequests(
  bind: { hostname: string; port: number },
  handler: (request: Request, info: { remoteAddr: Deno.NetAddr }) => Promise<Response>,
  limits: ListenerLimits = requestPortLimitsDefault,
): Promise<RequestPort> {
  const server = HttpServer.listen({
    hostname: bind.hostname,
    port: bind.port,
    name: "cluster",
    handler,
    limits,
    timeouts: {
      headerTimeoutMs: clusterRequestTimeoutMs,
      requestTimeoutMs: clusterRequestTimeoutMs,
    },
    keepAliveAfter: (response) => response.status === 200,
  });
  return Promise.resolve({ port: server.address.port, shutdown: () => server.shutdown() });
}

/** A bound UDP socket. */
export interface DatagramSocket {
  send(bytes: Uint8Array, to: { hostname: string; port: number }): void;
  close(): void;
}

/** Binds UDP on `hostname:port`; `receive` gets each datagram and its sender as HOST:PORT. */
export async function bindDatagrams(
  bind: { hostname: string; port: number },
  receive: (bytes: Uint8Array, from: string) => void,
): Promise<DatagramSocket> {
  const socket = dgram.createSocket(bind.hostname.includes(":") ? "udp6" : "udp4");
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(bind.port, bind.hostname, () => resolve());
  });
  socket.on("message", (bytes: Uint8Array, remote: dgram.RemoteInfo) => {
    receive(
      bytes,
      remote.family === "IPv6"
        ? `[${remote.address}]:${remote.port}`
        : `${remote.address}:${remote.port}`,
    );
  });
  return {
    send: (bytes, to) => socket.send(bytes, to.port, to.hostname),
    close: () => socket.close(),
  };
}
