/**
 * The real network of a node, in one place: sealed requests posted over HTTP,
 * the request port served with `Deno.serve`, and UDP datagrams. Everything
 * else in the cluster reaches peers through interfaces (`RpcCaller`, the
 * membership's environment), which the deterministic simulation implements
 * with its own network.
 *
 * @module
 */
import dgram from "node:dgram";

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

/** Serves `handler` on `hostname:port` (0 picks a free port). */
export async function listenRequests(
  bind: { hostname: string; port: number },
  handler: (request: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>) => Promise<Response>,
): Promise<RequestPort> {
  const listening = Promise.withResolvers<number>();
  const server = Deno.serve({
    hostname: bind.hostname,
    port: bind.port,
    onListen: (address) => listening.resolve(address.port),
  }, handler);
  return { port: await listening.promise, shutdown: () => server.shutdown() };
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
