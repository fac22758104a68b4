/**
 * The client side of links: calls to a peer share up to
 * {@linkcode linkConnectionsPerPeerMax} persistent links, opened on demand
 * (a second one when the first is busy with a large transfer), each
 * authenticated once by the handshake, many calls in flight on each, replies
 * matched by request id. A link that dies fails its calls as unreachable (the
 * next call opens a new one); a call the peer cannot have run (its frame never
 * left, or the peer said goaway before reading it) is sent again once on a new
 * link. A call that times out with nothing heard from its link since it was
 * sent makes the client ping the link, and close it when even the ping goes
 * unanswered (a peer that vanished without closing its connections); such a
 * peer, or one that gives no handshake, is silent: calls to it fail at once
 * until it answers again (_silent_peers.ts).
 */
import { BufferPool, systemClock, systemTimers } from "../../core/mod.ts";
import { RefusalError } from "./auth.ts";
import { ClientLink, NotSentError, unreachable } from "./_client_link.ts";
import { isSilence, SilenceError, SilentPeers } from "./_silent_peers.ts";
import { LinkConn } from "./_link_conn.ts";
import { type HandshakeParty, openHandshake, PeerRefusedError } from "./link_handshake.ts";
import {
  encodeMessageFrame,
  FrameKind,
  linkClientIdleTimeoutMs,
  linkConnectionsPerPeerMax,
  linkHandshakeTimeoutMs,
  linkHttpPeerRecheckMs,
  linkProbeTimeoutMs,
  NotALinkError,
} from "./link_wire.ts";
import { dial } from "./net_env.ts";
import { type CallOptions, type RpcCaller, rpcTimeoutMsDefault } from "./rpc_client.ts";
import { faults, type OutgoingMessage, RpcError, type RpcMessage } from "./rpc_message.ts";

/** Bytes of reply buffers a client keeps for reuse, in all, and the largest it keeps. */
const pooledReplyBytesMax = 16 * 1024 * 1024;
const pooledReplyBytesEach = 8 * 1024 * 1024;
/** A link with this many bytes still to write is busy: a call opens another link to the peer. */
const busyQueuedBytes = 256 * 1024;
/** Peers remembered as answering in HTTP (the least recently found forgotten first). */
const httpPeersMax = 1024;

/** Options of a {@linkcode LinkClient}. */
export interface LinkClientOptions {
  /** This member's id, bound into every handshake. */
  selfId: string;
  /** Told of every peer whose handshake answer we refused (wrong proof, other cluster). */
  onRefusal?: (peer: string, refusal: RefusalError) => void;
  /**
   * Calls a peer that answers the preamble in HTTP (a member of an earlier
   * version, during a rolling upgrade): a sealed RPC client.
   */
  fallback?: RpcCaller;
  /** Tests shorten these. */
  handshakeTimeoutMs?: number;
  idleTimeoutMs?: number;
  probeTimeoutMs?: number;
}

interface Peer {
  links: ClientLink[];
  opening: Promise<ClientLink> | null;
}

/** Calls methods on peers over links; see the module doc. */
export class LinkClient implements RpcCaller {
  readonly #party: HandshakeParty;
  readonly #options: LinkClientOptions;
  readonly #peers = new Map<string, Peer>();
  readonly #methodNames = new Map<string, Uint8Array>();
  /** Peers that answered in HTTP, and until when they are called through the fallback. */
  readonly #httpPeers = new Map<string, number>();
  /** The ends of the open links (close awaits them). */
  readonly #ended = new Set<Promise<void>>();
  #address = "";
  #closed = false;
  /** Replies of calls made with `pooledReply`, read into reused buffers. */
  readonly #replies = new BufferPool(pooledReplyBytesMax, pooledReplyBytesEach);
  #stopSweep: (() => void) | null = null;
  /** Peers that answer nothing: calls fail at once; each is checked every second. */
  readonly #silent = new SilentPeers((address) => this.#check(address));

  constructor(
    key: HandshakeParty["key"],
    identity: HandshakeParty["identity"],
    options: LinkClientOptions,
  ) {
    this.#party = { key, identity, selfId: options.selfId };
    this.#options = options;
  }

  /** Names this member's cluster address (HOST:PORT) to peers in later handshakes, for their logs. */
  announce(address: string): void {
    this.#address = address;
  }

  /** Calls `method` at `address` (HOST:PORT); throws RpcError on failure. */
  async call(
    address: string,
    method: string,
    message: OutgoingMessage = { header: {} },
    timeoutMs = rpcTimeoutMsDefault,
    options: CallOptions = {},
  ): Promise<RpcMessage> {
    const fail = (cause: Error) => unreachable(method, address, cause);
    if (faults.isolated()) throw fail(new Error("this node is isolated"));
    if (this.#closed) throw fail(new Error("the client is closed"));
    const silence = this.#silent.silence(address);
    if (silence !== null) throw fail(silence);
    const deadlineMs = systemClock.now() + timeoutMs;
    const fallback = this.#options.fallback;
    if (fallback !== undefined && this.#speaksHttp(address)) {
      return await fallback.call(address, method, message, timeoutMs);
    }
    const frame = { kind: FrameKind.call, id: 0, method: this.#methodName(method) };
    const parts = encodeMessageFrame(frame, message.header, message.data);
    for (let attempt = 1;; attempt++) {
      const link = await this.#linkTo(address, deadlineMs).catch((error) => {
        if (!(error instanceof NotALinkError) || fallback === undefined) {
          throw describeOpenFailure(method, address, error, timeoutMs);
        }
        this.#httpPeers.delete(address);
        this.#httpPeers.set(address, systemClock.now() + linkHttpPeerRecheckMs);
        if (this.#httpPeers.size > httpPeersMax) {
          this.#httpPeers.delete(this.#httpPeers.keys().next().value!);
        }
        return null;
      });
      if (link === null) {
        const leftMs = Math.max(0, deadlineMs - systemClock.now());
        return await fallback!.call(address, method, message, leftMs);
      }
      try {
        const replies = options.pooledReply === true ? this.#replies : null;
        return await link.exchange(method, parts, deadlineMs, replies);
      } catch (error) {
        if (!(error instanceof NotSentError)) throw error;
        if (attempt === 2) throw fail(link.conn.closeReason ?? error);
      }
    }
  }

  /** True while `address` answered in HTTP lately (it is called through the fallback). */
  #speaksHttp(address: string): boolean {
    const untilMs = this.#httpPeers.get(address);
    if (untilMs === undefined) return false;
    if (untilMs > systemClock.now()) return true;
    this.#httpPeers.delete(address);
    return false;
  }

  /** Closes every link (their calls fail as unreachable); later calls fail at once. */
  async close(): Promise<void> {
    this.#closed = true;
    const openings = [...this.#peers.values()].map((peer) => peer.opening).filter((o) =>
      o !== null
    );
    await Promise.allSettled(openings);
    for (const peer of this.#peers.values()) {
      for (const link of peer.links) link.conn.close(new Error("the client is closed"));
    }
    await Promise.allSettled([...this.#ended]);
    this.#silent.close();
    this.#stopSweep?.();
    this.#stopSweep = null;
  }

  /** A link to `address`: the least busy one, opening one when there is none or all are busy. */
  async #linkTo(address: string, deadlineMs: number): Promise<ClientLink> {
    let peer = this.#peers.get(address);
    if (peer === undefined) this.#peers.set(address, peer = { links: [], opening: null });
    let best: ClientLink | null = null;
    let usable = 0;
    const clusterId = this.#party.identity.current();
    for (const link of peer.links) {
      if (link.peer.clusterId !== clusterId) {
        // Opened before this node joined a cluster: its handshake vouched for none.
        link.conn.close(new Error("this node's cluster id changed"));
        continue;
      }
      if (link.goingAway) continue;
      usable++;
      if (best === null || link.load < best.load) best = link;
    }
    const busy = best === null || best.conn.queuedBytes >= busyQueuedBytes;
    if (busy && peer.opening === null && usable < linkConnectionsPerPeerMax) {
      const opening = peer.opening = this.#open(address, peer);
      opening.catch((error) => {
        if (isSilence(error)) this.#markSilent(address);
      }).finally(() => {
        if (peer.opening === opening) peer.opening = null;
        if (peer.links.length === 0 && peer.opening === null) this.#peers.delete(address);
      });
    }
    if (best !== null) return best;
    return await withDeadline(peer.opening!, deadlineMs);
  }

  async #open(address: string, peer: Peer): Promise<ClientLink> {
    const timeoutMs = this.#options.handshakeTimeoutMs ?? linkHandshakeTimeoutMs;
    const conn = await dial(address, AbortSignal.timeout(timeoutMs));
    const link = new LinkConn(conn);
    const cancel = systemTimers.after(
      timeoutMs,
      () => link.close(new SilenceError(`no handshake within ${timeoutMs} ms`)),
    );
    let client: ClientLink;
    try {
      const linkPeer = await openHandshake(link, { ...this.#party, address: this.#address });
      client = new ClientLink(link, linkPeer, address);
    } catch (error) {
      if (error instanceof RefusalError) this.#options.onRefusal?.(address, error);
      link.close(error as Error);
      throw error instanceof RefusalError || error instanceof PeerRefusedError
        ? error
        : link.closeReason;
    } finally {
      cancel();
    }
    if (this.#closed) link.close(new Error("the client is closed"));
    peer.links.push(client);
    this.#ended.add(client.ended);
    client.ended.then(() => {
      if (isSilence(client.conn.closeReason)) this.#markSilent(address);
      this.#ended.delete(client.ended);
      peer.links = peer.links.filter((other) => other !== client);
      if (peer.links.length === 0 && peer.opening === null) this.#peers.delete(address);
      if (this.#peers.size === 0 && this.#stopSweep !== null) {
        this.#stopSweep();
        this.#stopSweep = null;
      }
    });
    this.#stopSweep ??= systemTimers.every(1000, () => this.#sweep());
    return client;
  }

  /**
   * `address` answers nothing: its calls fail at once from now on, and its
   * other links go (their calls could only time out).
   */
  #markSilent(address: string): void {
    this.#silent.mark(address);
    for (const link of this.#peers.get(address)?.links ?? []) {
      link.conn.close(new SilenceError("the peer went silent on another link"));
    }
  }

  /** Checks a silent peer: resolves once a new link to it has done its handshake. */
  async #check(address: string): Promise<void> {
    let peer = this.#peers.get(address);
    if (peer === undefined) this.#peers.set(address, peer = { links: [], opening: null });
    await this.#open(address, peer);
  }

  #sweep(): void {
    const now = systemClock.now();
    const limits = {
      idleMs: this.#options.idleTimeoutMs ?? linkClientIdleTimeoutMs,
      probeMs: this.#options.probeTimeoutMs ?? linkProbeTimeoutMs,
    };
    for (const peer of this.#peers.values()) {
      for (const link of peer.links) link.sweep(now, limits);
    }
  }

  #methodName(method: string): Uint8Array {
    let bytes = this.#methodNames.get(method);
    if (bytes === undefined) {
      bytes = new TextEncoder().encode(method);
      if (bytes.length > 255) throw new RangeError(`Cannot call ${method}: name over 255 bytes`);
      if (this.#methodNames.size < 1024) this.#methodNames.set(method, bytes);
    }
    return bytes;
  }
}

/** The RpcError a call fails with when no link to its peer could be opened. */
function describeOpenFailure(method: string, address: string, error: unknown, timeoutMs: number) {
  const call = `Cannot call ${method} on ${address}`;
  if (error instanceof RefusalError) {
    const detail = `refused its answer (${error.reason}): ${error.detail}`;
    return new RpcError(`${call}: ${detail}`, false, { cause: error });
  }
  if (error instanceof PeerRefusedError) {
    return new RpcError(`${call}: ${error.message}`, false, { cause: error });
  }
  if (error === deadlinePassed) {
    return unreachable(method, address, new Error(`no link within ${timeoutMs} ms`));
  }
  return unreachable(method, address, error instanceof Error ? error : new Error(String(error)));
}

const deadlinePassed = new Error("deadline passed");

/** `promise`, or a rejection with `deadlinePassed` at `deadlineMs`. */
function withDeadline<T>(promise: Promise<T>, deadlineMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const cancel = systemTimers.after(
      Math.max(0, deadlineMs - systemClock.now()),
      () => reject(deadlinePassed),
    );
    promise.then(resolve, reject).finally(cancel);
  });
}
