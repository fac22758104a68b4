/**
 * The real network of a node, in one place: the cluster port (TCP), which
 * serves links and sealed HTTP requests, told apart by their first bytes;
 * connections to peers' ports (links, and sealed requests posted over HTTP);
 * and UDP datagrams. Everything else in the cluster reaches peers through
 * interfaces (`RpcCaller`, the membership's environment), which the
 * deterministic simulation implements with its own network.
 *
 * @module
 */
import dgram from "node:dgram";
import {
  Acceptor,
  closeQuietly,
  clusterConnectionsMax,
  clusterConnectionsPerAddressMax,
  clusterRequestTimeoutMs,
  type HttpHandler,
  HttpServer,
  type ListenerLimits,
} from "../../net/mod.ts";
import type { LinkServer } from "./link_server.ts";
import { linkPreamble } from "./link_wire.ts";

/** Connects to the cluster port of the member at `address` (HOST:PORT or [V6]:PORT). */
export async function dial(address: string, signal: AbortSignal): Promise<Deno.Conn> {
  const match = address.match(/^\[?([^\]]+)\]?:(\d{1,5})$/);
  if (match === null) throw new TypeError(`Cannot connect to "${address}": not HOST:PORT`);
  const conn = await Deno.connect({ hostname: match[1], port: Number(match[2]), signal });
  conn.setNoDelay(true);
  return conn;
}

/** The listening cluster port. */
export interface ClusterPort {
  readonly port: number;
  /** Stops accepting, lets calls and requests under way finish, then closes every connection. */
  shutdown(): Promise<void>;
}

/**
 * Listens on `hostname:port` (0 picks a free port) for links and for sealed
 * HTTP requests, under one set of connection caps. A connection whose first
 * bytes are the link preamble goes to `links`; any other to the HTTP server
 * serving `requests` (which must deliver a whole request within
 * {@linkcode clusterRequestTimeoutMs} of its first byte, and carries another
 * only after an answer of 200: a sealed reply, which the handler gives only
 * to a request sealed with the key). A connection that has not told which
 * within the links' handshake timeout is closed.
 */
export function listenClusterPort(
  bind: { hostname: string; port: number },
  serve: { links: LinkServer; requests: HttpHandler },
  limits: ListenerLimits = requestPortLimitsDefault,
): ClusterPort {
  const listener = Deno.listen({ hostname: bind.hostname, port: bind.port });
  const http = HttpServer.attach({
    hostname: listener.addr.hostname,
    port: listener.addr.port,
    name: "cluster",
    handler: serve.requests,
    limits,
    timeouts: {
      headerTimeoutMs: clusterRequestTimeoutMs,
      requestTimeoutMs: clusterRequestTimeoutMs,
    },
    keepAliveAfter: (response) => response.status === 200,
  });
  const acceptor = Acceptor.start(listener, {
    name: "cluster",
    limits,
    serve: (conn) => chooseProtocol(conn, serve.links, http),
    // No answer at a cap: an HTTP 503 means nothing to a link.
    evictIdle: (address) => http.evictIdle(address) || serve.links.evictIdle(address),
  });
  return {
    port: listener.addr.port,
    shutdown: async () => {
      await acceptor.close();
      await Promise.all([http.shutdown(), serve.links.shutdown()]);
      acceptor.closeConnections();
    },
  };
}

/**
 * Reads a connection's first bytes, no more than the preamble, and hands it to
 * the link server or the HTTP server with what was read.
 */
async function chooseProtocol(conn: Deno.Conn, links: LinkServer, http: HttpServer) {
  const acceptedMs = performance.now();
  const first = new Uint8Array(linkPreamble.length);
  let received = 0;
  let link = true;
  const timer = setTimeout(() => closeQuietly(conn), links.handshakeTimeoutMs);
  try {
    while (link && received < first.length) {
      const n = await conn.read(first.subarray(received));
      if (n === null) return;
      for (let i = received; i < received + n; i++) link &&= first[i] === linkPreamble[i];
      received += n;
    }
  } catch {
    return; // closed by the timer, or by the peer
  } finally {
    clearTimeout(timer);
  }
  if (link) await links.serve(conn, new Uint8Array(), acceptedMs);
  else await http.serveConnection(conn, first.subarray(0, received));
}

/** Posts a sealed request body to the cluster port of the member at `address`. */
export function postRequest(
  address: string,
  body: Uint8Array<ArrayBuffer>,
  init: { signal: AbortSignal; headers: Record<string, string> },
): Promise<Response> {
  return fetch(`http://${address}/rpc`, { method: "POST", body, ...init });
}

/** The cluster port's connection caps when the node does not size them from its open-files limit. */
export const requestPortLimitsDefault: ListenerLimits = {
  connectionsMax: clusterConnectionsMax,
  connectionsPerAddressMax: clusterConnectionsPerAddressMax,
};

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
