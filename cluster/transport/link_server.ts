/**
 * The server side of links: a connection whose first bytes were the link
 * preamble gets the handshake and nothing else until it proves the cluster key
 * (within {@linkcode linkHandshakeTimeoutMs}, handshake frames of at most
 * {@linkcode handshakeBodyBytesMax}); a refusal is counted by reason, logged
 * and answered, and the connection closed. An open link runs calls as they
 * come, many at once, each answered by its request id as soon as it is done;
 * past {@linkcode linkCallsInFlightMax} calls or {@linkcode linkBytesInFlightMax}
 * bytes in flight it reads no more until some finish (TCP pushes back on the
 * client). A framing violation closes the link; a failing call is answered.
 * Large calls to methods that keep no reference to their data (`pooledData`:
 * the writes of replicas) are read into buffers reused once answered.
 */
import { systemClock, systemTimers } from "../../core/mod.ts";
import { logger } from "../../log/mod.ts";
import { isConnectionError, lingerTimeoutMs, stallTimeoutMs } from "../../net/mod.ts";
import { RefusalError } from "./auth.ts";
import { LinkConn } from "./_link_conn.ts";
import {
  acceptHandshake,
  encodeRefusal,
  type HandshakeParty,
  type LinkPeer,
  PeerRefusedError,
} from "./link_handshake.ts";
import { LinkCalls } from "./_link_calls.ts";
import {
  encodeBareFrame,
  type Frame,
  FrameKind,
  linkBytesInFlightMax,
  linkCallsInFlightMax,
  linkHandshakeTimeoutMs,
  linkIdleTimeoutMs,
  NotALinkError,
} from "./link_wire.ts";
import { faults, rpcBytesMax, type RpcMethod } from "./rpc_message.ts";

const log = logger("cluster");

/** Options of a {@linkcode LinkServer}. */
export interface LinkServerOptions extends HandshakeParty {
  methods: Record<string, RpcMethod>;
  /**
   * Methods whose handlers keep no reference to a call's data once they
   * settled (nor hand it out in their reply): their large call bodies are read
   * into pooled buffers, reused as soon as the reply is written.
   */
  pooledData?: ReadonlySet<string>;
  /** Told of every handshake refused, with the peer (IP, and the port it says it listens on). */
  onRefusal?: (peer: string, refusal: RefusalError) => void;
  /** Tests shorten these. */
  handshakeTimeoutMs?: number;
  idleTimeoutMs?: number;
}

interface Served {
  link: LinkConn;
  peer: LinkPeer | null;
  handshakeDeadlineMs: number;
  inFlight: number;
  bytesInFlight: number;
  /** Since when it takes no more calls (a goaway went out); null while it does. */
  goingAwaySinceMs: number | null;
  /** Since when our side is shut (last answer out); the client has a linger time to close. */
  finishedSinceMs: number | null;
  /** Resumes reading once the link is below its in-flight bounds again. */
  wake: (() => void) | null;
}

/** Serves links on connections handed to it (see cluster_port in net_env.ts). */
export class LinkServer {
  readonly #options: LinkServerOptions;
  readonly #served = new Set<Served>();
  readonly #handshakeTimeoutMs: number;
  readonly #idleTimeoutMs: number;
  #stopSweep: (() => void) | null = null;
  #closing = false;
  #drained = Promise.withResolvers<void>();
  readonly #calls: LinkCalls;

  constructor(options: LinkServerOptions) {
    this.#options = options;
    this.#calls = new LinkCalls(options.methods, options.pooledData);
    this.#handshakeTimeoutMs = options.handshakeTimeoutMs ?? linkHandshakeTimeoutMs;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? linkIdleTimeoutMs;
  }

  /** Time a connection has to complete its handshake (the cluster port waits as long for its first bytes). */
  get handshakeTimeoutMs(): number {
    return this.#handshakeTimeoutMs;
  }

  /** Links open now, authenticated or not. */
  get connections(): number {
    return this.#served.size;
  }

  /**
   * Serves `conn`, whose first bytes (`received`, the preamble taken off) were
   * read already; its handshake is due {@linkcode handshakeTimeoutMs} after
   * `acceptedMs` (`systemClock.now()` when it was accepted).
   */
  async serve(conn: Deno.Conn, received: Uint8Array, acceptedMs = systemClock.now()) {
    const served: Served = {
      link: new LinkConn(conn, received),
      peer: null,
      handshakeDeadlineMs: acceptedMs + this.#handshakeTimeoutMs,
      inFlight: 0,
      bytesInFlight: 0,
      goingAwaySinceMs: null,
      finishedSinceMs: null,
      wake: null,
    };
    this.#served.add(served);
    this.#stopSweep ??= systemTimers.every(this.#tickMs(), () => this.#sweep());
    try {
      if (this.#closing || faults.isolated()) return;
      served.peer = await this.#handshake(served);
      if (served.peer !== null) await this.#serveCalls(served, served.peer);
    } catch (error) {
      if (served.link.closeReason === null && !isConnectionError(error)) {
        log.warn("closing the link from {peer}: {error}", {
          peer: peerName(conn, served.peer?.address ?? ""),
          error: (error as Error).message,
        });
      }
    } finally {
      served.link.close(new Error("the link ended"));
      this.#served.delete(served);
      if (this.#served.size === 0) {
        this.#stopSweep?.();
        this.#stopSweep = null;
        if (this.#closing) this.#drained.resolve();
      }
    }
  }

  /** Closes the authenticated link idle longest (from `address` when given); false when none is. */
  evictIdle(address: string | null): boolean {
    let oldest: Served | null = null;
    for (const served of this.#served) {
      if (served.peer === null || served.inFlight > 0) continue;
      const remote = served.link.conn.remoteAddr as Deno.NetAddr;
      if (address !== null && remote.hostname !== address) continue;
      if (oldest === null || served.link.lastReadMs < oldest.link.lastReadMs) oldest = served;
    }
    oldest?.link.close(new Error("closed to admit another connection"));
    return oldest !== null;
  }

  /**
   * Takes no more calls: each link says so (goaway), answers the calls it read
   * within `graceMs`, and closes once its client did (or after a linger time).
   */
  async shutdown(graceMs = 10_000): Promise<void> {
    this.#closing = true;
    for (const served of this.#served) {
      if (served.peer === null) served.link.close(new Error("the server shut down"));
      else this.#goAway(served);
    }
    if (this.#served.size === 0) return;
    const cancel = systemTimers.after(graceMs, () => {
      for (const served of this.#served) served.link.close(new Error("the server shut down"));
    });
    await this.#drained.promise;
    cancel();
  }

  /** The peer once it proved the key; null when the handshake was refused (and answered so). */
  async #handshake(served: Served): Promise<LinkPeer | null> {
    let address = "";
    try {
      return await acceptHandshake(served.link, this.#options, (said) => address = said);
    } catch (error) {
      if (error instanceof PeerRefusedError) return null;
      const refusal = error instanceof RangeError || error instanceof NotALinkError
        ? new RefusalError("authentication", `malformed handshake (${error.message})`)
        : error;
      if (!(refusal instanceof RefusalError)) throw error;
      this.#options.onRefusal?.(peerName(served.link.conn, address), refusal);
      // The answer goes out before the close; the handshake deadline bounds the wait.
      const written = Promise.withResolvers<void>();
      const answer = encodeBareFrame(FrameKind.refusal, 0, encodeRefusal(refusal));
      if (served.link.send([answer], written.resolve)) {
        await Promise.race([written.promise, served.link.closed]);
      }
      return null;
    }
  }

  async #serveCalls(served: Served, peer: LinkPeer): Promise<void> {
    const { link } = served;
    link.closed.then(() => served.wake?.());
    for (;;) {
      while (
        link.closeReason === null && (served.inFlight >= linkCallsInFlightMax ||
          served.bytesInFlight + link.queuedBytes >= linkBytesInFlightMax)
      ) await new Promise<void>((resolve) => served.wake = resolve);
      const frame = await link.readFrame(rpcBytesMax, this.#calls.poolFor);
      if (frame === null) return;
      if (served.goingAwaySinceMs !== null) continue; // not run: the client may send it again
      if (frame.kind === FrameKind.ping) {
        link.send([encodeBareFrame(FrameKind.pong, frame.id, new Uint8Array())]);
        continue;
      }
      if (frame.kind !== FrameKind.call) {
        throw new RangeError(`Cannot read call: a frame of kind ${frame.kind}`);
      }
      // Cut off (tests of partitions), or our cluster id changed since the handshake: close.
      if (faults.isolated() || this.#options.identity.current() !== peer.clusterId) return;
      this.#run(served, frame);
    }
  }

  #run(served: Served, frame: Frame): void {
    served.inFlight++;
    served.bytesInFlight += frame.body.length;
    const resume = () => {
      const wake = served.wake;
      served.wake = null;
      wake?.();
    };
    this.#calls.answer(frame).then((answer) => {
      served.inFlight--;
      served.bytesInFlight -= frame.body.length;
      // Buffers go back once the reply is out (never, if the link closes first).
      const released = answer.written;
      served.link.send(answer.parts, released === null ? resume : () => (released(), resume()));
      if (served.goingAwaySinceMs !== null && served.inFlight === 0) this.#finish(served);
      resume();
    });
  }

  /** Takes no more calls on `served`: tells the client, and finishes once nothing is in flight. */
  #goAway(served: Served): void {
    if (served.goingAwaySinceMs !== null) return;
    served.goingAwaySinceMs = systemClock.now();
    served.link.send([encodeBareFrame(FrameKind.goaway, 0, new Uint8Array())]);
    if (served.inFlight === 0) this.#finish(served);
  }

  /**
   * Shuts our side once the last answer is out, and reads on (discarding) until
   * the client closes: closing with its calls unread would reset the connection,
   * and the client could lose the answers and the goaway before them.
   */
  #finish(served: Served): void {
    if (served.finishedSinceMs !== null) return;
    served.finishedSinceMs = systemClock.now();
    served.link.finish();
  }

  #sweep(): void {
    const now = systemClock.now();
    for (const served of this.#served) {
      const { link } = served;
      if (served.peer === null && now > served.handshakeDeadlineMs) {
        link.close(new Error("no handshake in time"));
      } else if (
        served.finishedSinceMs !== null && now - served.finishedSinceMs > lingerTimeoutMs
      ) {
        link.close(new Error("the client did not close"));
      } else if (served.inFlight === 0 && now - link.lastReadMs > this.#idleTimeoutMs) {
        this.#goAway(served);
      } else if (link.writingSinceMs !== null && now - link.writingSinceMs > stallTimeoutMs) {
        link.close(new Error("the peer reads nothing"));
      }
    }
  }

  #tickMs(): number {
    return Math.max(25, Math.min(1000, Math.floor(this.#handshakeTimeoutMs / 4)));
  }
}

/** The peer for logs: its IP address, and the port it says it listens on. */
function peerName(conn: Deno.Conn, address: string): string {
  const remote = conn.remoteAddr as Deno.NetAddr;
  const host = remote.hostname.includes(":") ? `[${remote.hostname}]` : remote.hostname;
  const port = address.match(/:(\d{1,5})$/)?.[1];
  return port === undefined ? host : `${host}:${port}`;
}
