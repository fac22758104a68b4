/**
 * A node's place in the cluster, on real sockets: SWIM membership over UDP
 * datagrams and sealed requests (push-pull, join), and the data plane's calls
 * over links, both on TCP on the same port number as the datagrams, as
 * memberlist does. Membership messages are authenticated with the cluster key
 * one by one and checked for freshness, cluster id and clock skew; a link is
 * authenticated once, by its handshake, for cluster id and key. What fails is
 * dropped, counted by reason in {@linkcode ClusterNode.refusals}, and logged.
 *
 * Datagrams are fresh by (boot id, sequence number): each process start draws a
 * random boot id and numbers its datagrams from 1, and a receiver keeps a sliding
 * window of the numbers it accepted per sender boot (at most
 * {@linkcode datagramSendersMax} senders, the least recently heard forgotten).
 */
import { randomBytes, systemClock, systemRandom, wallClockMs } from "../../core/mod.ts";
import { channelBytes, type ClusterKey, RefusalError, toHex } from "./auth.ts";
import type { ClusterIdentity } from "./identity.ts";
import { Membership, type MemberState } from "../membership/mod.ts";
import { type Message, parseMessage } from "../membership/mod.ts";
import { Refusals, type RefusalStatus } from "./refusals.ts";
import { ReplayGuard } from "./replay_guard.ts";
import { faults, RpcClient, type RpcMethod, rpcServer } from "./rpc.ts";
import type { ListenerLimits } from "../../net/mod.ts";
import { LinkClient } from "./link_client.ts";
import { LinkServer } from "./link_server.ts";
import {
  bindDatagrams,
  type ClusterPort,
  type DatagramSocket,
  listenClusterPort,
} from "./net_env.ts";

/** Sender boots whose datagram sequence windows are kept. */
export const datagramSendersMax = 1024;

/** Options of {@linkcode ClusterNode.start}. */
export interface ClusterNodeOptions {
  key: ClusterKey;
  /** The cluster id this node stamps on its messages, and checks or adopts on theirs. */
  identity: ClusterIdentity;
  /** Where to listen (UDP and TCP): HOST:PORT; port 0 picks a free one. */
  bind: { hostname: string; port: number };
  /** Addresses of members to join through. */
  join: string[];
  self: { id: string; zone: string | null; weight: number };
  /** Data-plane methods other nodes may call. */
  methods?: Record<string, RpcMethod>;
  /** Of those, the ones whose data may be read into reused buffers (LinkServerOptions.pooledData). */
  pooledData?: ReadonlySet<string>;
  /** The wall clock stamped on messages (tests shift it to play a skewed member). */
  wallClock?: () => number;
  /** Connection caps of the cluster port (default: net/limits.ts's cluster maxima). */
  portLimits?: ListenerLimits;
  /** Where refusals are counted (default: a new one); share it with the `rpc` given. */
  refusals?: Refusals;
  /** The client of the node's calls (default: one made here, closed with the node). */
  rpc?: LinkClient;
  /** Dead or left members gossip keeps past its retention (MembershipEnv.keepGone). */
  keepGone?: (id: string) => boolean;
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
  /** Calls to peers over links (the data plane). */
  readonly rpc: LinkClient;
  readonly counters: ClusterCounters = { datagramsIn: 0, datagramsOut: 0, rejected: 0 };
  /** Messages refused, by reason and by peer (datagrams, requests, and replies to ours). */
  readonly refusals: Refusals;
  #socket: DatagramSocket | null = null;
  #server: ClusterPort;
  /** Membership's reliable messages go sealed, like its datagrams (clock skew checked). */
  #gossipRpc: RpcClient;
  #ownsRpc: boolean;
  #options: ClusterNodeOptions;
  #wallClock: () => number;
  /** Random per process start: the channel of this node's datagrams. */
  #bootId = randomBytes(channelBytes);
  #datagramSequence = 0;
  #datagramWindows = new ReplayGuard(datagramSendersMax);

  private constructor(
    options: ClusterNodeOptions,
    refusals: Refusals,
    server: ClusterPort,
    address: string,
  ) {
    this.#options = options;
    this.#wallClock = options.wallClock ?? wallClockMs;
    this.refusals = refusals;
    this.#server = server;
    this.address = address;
    this.#gossipRpc = new RpcClient(options.key, options.identity, {
      wallClock: options.wallClock,
      onRefusal: (peer, refusal) => refusals.record(peer, refusal),
      from: address,
    });
    this.#ownsRpc = options.rpc === undefined;
    this.rpc = options.rpc ?? new LinkClient(options.key, options.identity, {
      selfId: options.self.id,
      onRefusal: (peer, refusal) => refusals.record(peer, refusal),
      fallback: this.#gossipRpc,
    });
    this.rpc.announce(address);
    const self = options.self;
    this.membership = new Membership({ ...self, address }, {
      now: systemClock.now,
      random: systemRandom,
      schedule: (delayMs, fn) => {
        const cancelled = new AbortController();
        systemClock.sleep(delayMs, cancelled.signal).then(fn, () => {});
        return { cancel: () => cancelled.abort() };
      },
      send: (to, message) => this.#sendDatagram(to, message),
      sendReliable: (to, message) => {
        this.#gossipRpc.call(to, "gossip", { header: { from: this.address, message } }, 5000)
          .catch(() => {}); // a lost stream message is as a lost datagram to SWIM
      },
      keepGone: options.keepGone,
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
    const refusals = options.refusals ?? new Refusals({ wallClock: options.wallClock });
    const onRefusal = (peer: string, refusal: RefusalError) => refusals.record(peer, refusal);
    // Membership messages only arrive sealed: links carry the data plane's methods.
    const links = new LinkServer({
      key: options.key,
      identity: options.identity,
      selfId: options.self.id,
      methods: options.methods ?? {},
      pooledData: options.pooledData,
      onRefusal,
    });
    const requests = rpcServer(options.key, options.identity, methods, {
      wallClock: options.wallClock,
      onRefusal,
    });
    const server = listenClusterPort(options.bind, { links, requests }, options.portLimits);
    const { port } = server;
    const address = hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
    const created = node = new ClusterNode(options, refusals, server, address);
    created.#socket = await bindDatagrams(
      { hostname, port },
      (bytes, from) => created.#receive(bytes, from),
    );
    created.membership.start(options.join);
    return node;
  }

  /** Every member this node knows, itself included. */
  members(): MemberState[] {
    return this.membership.members();
  }

  /** {@linkcode refusals} as JSON, for `/v1/cluster`. */
  refusalStatus(): RefusalStatus {
    return this.refusals.status();
  }

  /** Leaves gracefully (others learn it at once), then closes the sockets. */
  async leave(drainMs = 500): Promise<void> {
    this.membership.leave();
    await systemClock.sleep(drainMs);
    await this.close();
  }

  /** Closes the sockets without telling anyone (tests; a crash looks like this). */
  async close(): Promise<void> {
    this.membership.stop();
    this.#socket?.close();
    await this.#server.shutdown();
    if (this.#ownsRpc) await this.rpc.close();
  }

  #receive(bytes: Uint8Array, from: string): void {
    if (faults.isolated()) return;
    this.counters.datagramsIn++;
    let message: Message | undefined;
    try {
      const opened = this.#options.key.open(bytes, {
        nowMs: this.#wallClock(),
        identity: this.#options.identity,
        // A sender's boot unknown here starts a window: a datagram of a past boot,
        // replayed to a receiver that restarted or forgot that boot, is accepted, and
        // that is harmless to SWIM, whose state is ordered by incarnation (an old
        // "alive" or "suspect" is overridden by what is newer, a stale ack matches no
        // probe in flight).
        fresh: (channel, sequence) => this.#datagramWindows.accept(toHex(channel), sequence, true),
      });
      message = parseMessage(JSON.parse(new TextDecoder().decode(opened.payload)));
      if (message === undefined) throw new RefusalError("authentication", "malformed message");
    } catch (error) {
      const refusal = error instanceof SyntaxError
        ? new RefusalError("authentication", "malformed message")
        : error;
      if (!(refusal instanceof RefusalError)) throw error;
      this.counters.rejected++;
      this.refusals.record(from, refusal);
      return;
    }
    this.membership.receive(from, message);
  }

  #sendDatagram(to: string, message: Message): void {
    const match = to.match(/^\[?([^\]]+)\]?:(\d+)$/);
    if (match === null || faults.isolated()) return;
    const sealed = this.#options.key.seal(new TextEncoder().encode(JSON.stringify(message)), {
      nowMs: this.#wallClock(),
      identity: this.#options.identity,
      channel: this.#bootId,
      sequence: ++this.#datagramSequence,
    });
    this.counters.datagramsOut++;
    this.#socket?.send(sealed, { hostname: match[1], port: Number(match[2]) });
  }
}
