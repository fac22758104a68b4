/**
 * A node's place in the cluster, on real sockets: SWIM membership over UDP
 * datagrams, and sealed requests (push-pull, join, and the data plane's
 * methods) over HTTP on the same port number over TCP, as memberlist does.
 * Every message in either direction is authenticated with the cluster key;
 * what fails authentication is dropped and counted, never acted upon.
 */
import dgram from "node:dgram";
import { AuthenticationError, type ClusterKey, NonceWindow } from "./auth.ts";
import { Membership, type MemberState } from "./membership.ts";
import { type Message, parseMessage } from "./messages.ts";
import { faults, RpcClient, type RpcMethod, rpcServer } from "./rpc.ts";

/** Options of {@linkcode ClusterNode.start}. */
export interface ClusterNodeOptions {
  key: ClusterKey;
  /** Where to listen (UDP and TCP): HOST:PORT; port 0 picks a free one. */
  bind: { hostname: string; port: number };
  /** Addresses of members to join through. */
  join: string[];
  self: { id: string; zone: string | null; weight: number };
  /** Data-plane methods other nodes may call. */
  methods?: Record<string, RpcMethod>;
}

/** Counters an operator sees in /metrics. */
export interface ClusterCounters {
  datagramsIn: number;
  datagramsOut: number;
  rejected: number;
}

/** A running cluster member. */
export class ClusterNode {
  readonly address: string;
  readonly membership: Membership;
  readonly rpc: RpcClient;
  readonly counters: ClusterCounters = { datagramsIn: 0, datagramsOut: 0, rejected: 0 };
  #socket: dgram.Socket;
  #server: Deno.HttpServer;
  #key: ClusterKey;

  private constructor(
    key: ClusterKey,
    socket: dgram.Socket,
    server: Deno.HttpServer,
    address: string,
    self: ClusterNodeOptions["self"],
  ) {
    this.#key = key;
    this.#socket = socket;
    this.#server = server;
    this.address = address;
    this.rpc = new RpcClient(key);
    this.membership = new Membership({ ...self, address }, {
      now: () => performance.now(),
      random: Math.random,
      schedule: (delayMs, fn) => {
        const timer = setTimeout(fn, delayMs);
        return { cancel: () => clearTimeout(timer) };
      },
      send: (to, message) => this.#sendDatagram(to, message),
      sendReliable: (to, message) => {
        this.rpc.call(to, "gossip", { header: { from: this.address, message } }, 5000)
          .catch(() => {}); // a lost stream message is as a lost datagram to SWIM
      },
    });
  }

  /** Binds the sockets and joins the cluster through `join`. */
  static async start(options: ClusterNodeOptions): Promise<ClusterNode> {
    const { hostname } = options.bind;
    // TCP first: with port 0 it picks the port, and UDP then takes the same number.
    let node: ClusterNode | null = null;
    const methods: Record<string, RpcMethod> = {
      ...options.methods,
      gossip: (request) => {
        const message = parseMessage(request.header.message);
        const from = request.header.from;
        if (message === undefined || typeof from !== "string") {
          throw new TypeError("malformed gossip message");
        }
        node?.membership.receive(from, message);
        return { header: {} };
      },
    };
    const listening = Promise.withResolvers<number>();
    const server = Deno.serve({
      hostname,
      port: options.bind.port,
      onListen: (address) => listening.resolve(address.port),
    }, rpcServer(options.key, methods));
    const port = await listening.promise;
    const socket = dgram.createSocket(hostname.includes(":") ? "udp6" : "udp4");
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(port, hostname, () => resolve());
    });
    const address = hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
    node = new ClusterNode(options.key, socket, server, address, options.self);
    node.#listen();
    node.membership.start(options.join);
    return node;
  }

  /** Every member this node knows, itself included. */
  members(): MemberState[] {
    return this.membership.members();
  }

  /** Leaves gracefully (others learn it at once), then closes the sockets. */
  async leave(drainMs = 500): Promise<void> {
    this.membership.leave();
    await new Promise((resolve) => setTimeout(resolve, drainMs));
    await this.close();
  }

  /** Closes the sockets without telling anyone (tests; a crash looks like this). */
  async close(): Promise<void> {
    this.membership.stop();
    this.#socket.close();
    await this.#server.shutdown();
  }

  #listen(): void {
    const nonces = new NonceWindow();
    this.#socket.on("message", (bytes: Uint8Array, remote: dgram.RemoteInfo) => {
      if (faults.isolated()) return;
      this.counters.datagramsIn++;
      let message: Message | undefined;
      try {
        const payload = this.#key.open(bytes, Date.now(), nonces);
        message = parseMessage(JSON.parse(new TextDecoder().decode(payload)));
      } catch (error) {
        if (!(error instanceof AuthenticationError) && !(error instanceof SyntaxError)) throw error;
      }
      if (message === undefined) {
        this.counters.rejected++;
        return;
      }
      const from = remote.family === "IPv6"
        ? `[${remote.address}]:${remote.port}`
        : `${remote.address}:${remote.port}`;
      this.membership.receive(from, message);
    });
  }

  #sendDatagram(to: string, message: Message): void {
    const match = to.match(/^\[?([^\]]+)\]?:(\d+)$/);
    if (match === null || faults.isolated()) return;
    const sealed = this.#key.seal(new TextEncoder().encode(JSON.stringify(message)), Date.now());
    this.counters.datagramsOut++;
    this.#socket.send(sealed, Number(match[2]), match[1]);
  }
}
