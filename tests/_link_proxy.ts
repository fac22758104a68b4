/**
 * Helpers of the link tests: a cluster port serving links and sealed HTTP on
 * loopback with counted calls and refusals, and a TCP relay that records the
 * bytes crossing it and can go silent (a peer that vanished without closing)
 * or stop reading (a peer that reads nothing).
 */
import { Buffer } from "node:buffer";
import { ClusterKey, type RefusalReason } from "../cluster/transport/auth.ts";
import { MemoryIdentity } from "../cluster/transport/identity.ts";
import { LinkServer, type LinkServerOptions } from "../cluster/transport/link_server.ts";
import { type ClusterPort, listenClusterPort } from "../cluster/transport/net_env.ts";
import { rpcServer } from "../cluster/transport/rpc.ts";
import type { RpcMethod } from "../cluster/transport/rpc_message.ts";

export const key = new ClusterKey(new TextEncoder().encode("link-test-key-".repeat(3)));
export const stranger = new ClusterKey(new TextEncoder().encode("another-key-".repeat(4)));

/** A cluster port on loopback and what it saw. */
export interface TestPort {
  address: string;
  port: ClusterPort;
  links: LinkServer;
  /** Calls of "echo" that ran. */
  echoes: number;
  /** Reasons of the refusals it counted, with the peers it named. */
  refused: { peer: string; reason: RefusalReason }[];
}

/** Methods of the test server: echo, fail, and hang (answers after `header.ms`). */
function methods(port: { echoes: number }): Record<string, RpcMethod> {
  return {
    echo: async (request) => {
      port.echoes++;
      const ms = Number(request.header.delayMs ?? 0);
      if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
      return { header: { got: request.header.value }, data: request.data };
    },
    fail: () => {
      throw new RangeError("no such thing");
    },
  };
}

/** Serves links and sealed HTTP on `port` (0: a free one) until `stop()`. */
export function startPort(
  options: Partial<LinkServerOptions> & { port?: number } = {},
): TestPort & { stop(): Promise<void> } {
  const identity = options.identity ?? new MemoryIdentity();
  const refused: TestPort["refused"] = [];
  const onRefusal = (peer: string, refusal: { reason: RefusalReason }) =>
    refused.push({ peer, reason: refusal.reason });
  const state = { echoes: 0 };
  const served = methods(state);
  const links = new LinkServer({
    key,
    identity,
    selfId: "server",
    methods: served,
    onRefusal,
    ...options,
  });
  const requests = rpcServer(key, identity, served, { onRefusal });
  const port = listenClusterPort({ hostname: "127.0.0.1", port: options.port ?? 0 }, {
    links,
    requests,
  });
  return {
    address: `127.0.0.1:${port.port}`,
    port,
    links,
    get echoes() {
      return state.echoes;
    },
    refused,
    stop: () => port.shutdown(),
  };
}

/** A TCP relay to `targetPort` on loopback; see the module doc. */
export class Relay {
  readonly listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  /** Bytes from clients to the target, per connection, in order. */
  readonly toServer: Uint8Array[][] = [];
  /** Bytes from the target to clients, per connection, in order. */
  readonly toClient: Uint8Array[][] = [];
  /** While true, bytes are dropped in both directions. */
  silent = false;
  /** While set, nothing is read from clients (their writes back up); resolving it reads on. */
  paused: PromiseWithResolvers<void> | null = null;
  readonly #conns = new Set<Deno.Conn>();
  readonly #pipes = new Set<Promise<void>>();
  readonly #loop: Promise<void>;

  constructor(readonly targetPort: number) {
    this.#loop = this.#accept();
  }

  get address(): string {
    return `127.0.0.1:${this.listener.addr.port}`;
  }

  /** Cuts every relayed connection (both ends see it close). */
  cut(): void {
    for (const conn of this.#conns) conn.close();
    this.#conns.clear();
  }

  async close(): Promise<void> {
    this.listener.close();
    this.cut();
    await this.#loop;
    await Promise.allSettled([...this.#pipes]);
  }

  async #accept(): Promise<void> {
    try {
      for await (const client of this.listener) {
        const server = await Deno.connect({ hostname: "127.0.0.1", port: this.targetPort });
        this.#conns.add(client).add(server);
        const [up, down]: Uint8Array[][] = [[], []];
        this.toServer.push(up);
        this.toClient.push(down);
        for (const pipe of [this.#pipe(client, server, up), this.#pipe(server, client, down)]) {
          this.#pipes.add(pipe);
          pipe.finally(() => this.#pipes.delete(pipe));
        }
      }
    } catch { /* closed */ }
  }

  async #pipe(from: Deno.Conn, to: Deno.Conn, record: Uint8Array[]): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (let n = await from.read(buffer); n !== null; n = await from.read(buffer)) {
        if (this.toServer.includes(record)) {
          await this.paused?.promise;
        }
        if (this.silent) continue;
        record.push(buffer.slice(0, n));
        await to.write(buffer.subarray(0, n));
      }
    } catch { /* cut */ }
    for (const conn of [from, to]) {
      if (this.#conns.delete(conn)) conn.close();
    }
  }
}

/** All of `chunks` in one array. */
export function concat(chunks: Uint8Array[]): Uint8Array {
  return Buffer.concat(chunks);
}

/** Reads `conn` until it ends (a reset counts as an end); returns what came. */
export async function readToEnd(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(64 * 1024);
  try {
    for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
      chunks.push(buffer.slice(0, n));
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
  }
  return concat(chunks);
}

/** Waits until `check()` holds, failing after `limitMs`. */
export async function eventually(what: string, check: () => boolean, limitMs = 5000) {
  const started = performance.now();
  while (!check()) {
    if (performance.now() - started > limitMs) throw new Error(`${what}: not within ${limitMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
