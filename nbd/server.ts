/**
 * The NBD server of a node: listens on TCP (default 127.0.0.1:10809) or a unix
 * socket, bounds connections (in all and per remote address, through the
 * node's accept loop, which backs off when descriptors run out), and runs
 * handshake then transmission on each. Nothing a client sends can crash the
 * node: every connection's failure ends at that connection.
 *
 * A connection that has not finished its handshake within
 * {@linkcode handshakeTimeoutMs} is closed; an established one has no idle
 * timeout, since a VM's disk may see no I/O for hours.
 */
import { BufferPool, LocalAuthority, type Store, type VolumeAuthority } from "../core/mod.ts";
import { parseHostPort } from "../core/address.ts";
import {
  Acceptor,
  closeQuietly,
  type ListenerLimits,
  nbdConnectionsMax,
  nbdConnectionsPerAddressMax,
} from "../net/mod.ts";
import { ConnectionClosedError, ConnReader, ReplyWriter } from "./conn_io.ts";
import {
  handshake,
  type HandshakeOptions,
  NbdFramingError,
  type ReadinessCheck,
} from "./handshake.ts";
import { handshakeTimeoutMs, pooledBufferBytesMax, pooledBufferSizeMax } from "./limits.ts";
import { serveTransmission } from "./transmission.ts";
import { logger } from "../log/mod.ts";
import {
  type HandshakeFailureReason,
  nbdHandshakeFailures,
  openVolumes,
  type VolumeStats,
} from "../metrics/mod.ts";

const log = logger("nbd");

/** Where to listen: `{hostname, port}` or `{path}` of a unix socket. */
export type NbdAddress = { hostname: string; port: number } | { path: string };

/** Parses `HOST:PORT` or `unix:PATH`. */
export function parseNbdAddress(text: string): NbdAddress {
  if (text.startsWith("unix:")) {
    const path = text.slice("unix:".length);
    if (path === "") throw new TypeError(`Cannot use --nbd ${text}: the socket path is empty`);
    return { path };
  }
  try {
    return parseHostPort(text, "--nbd");
  } catch {
    throw new TypeError(
      `Cannot use --nbd ${JSON.stringify(text)}: expected HOST:PORT or unix:PATH`,
    );
  }
}

/** A listening NBD server. */
export class NbdServer {
  readonly address: NbdAddress;
  #store: Store;
  #acceptor: Acceptor;
  /**
   * WRITE payloads and READ replies. Page-aligned: a cluster node's own copy of a
   * fill goes to disk around the page cache straight from the payload, where a
   * buffer that does not start a page took a staging copy (core/_direct_writes.ts).
   */
  #buffers = new BufferPool(pooledBufferBytesMax, pooledBufferSizeMax, { pageAligned: true });
  #handshakeOptions: HandshakeOptions;
  /** Whether each volume's requests are counted and timed (metrics/volume_stats.ts). */
  #volumeMetrics: boolean;

  private constructor(
    store: Store,
    listener: Deno.Listener,
    address: NbdAddress,
    options: { handshake: HandshakeOptions; limits: ListenerLimits; volumeMetrics: boolean },
  ) {
    this.#store = store;
    this.#handshakeOptions = options.handshake;
    this.#volumeMetrics = options.volumeMetrics;
    this.address = address;
    this.#acceptor = Acceptor.start(listener, {
      name: "nbd",
      limits: options.limits,
      serve: (conn) => this.#serve(conn),
    });
  }

  /**
   * Starts listening at `address`. A stale unix socket file is replaced. With
   * `ready`, a connection's handshake is refused while the node is not ready
   * (NBD_REP_ERR_SHUTDOWN with the reason, which qemu-img and nbdinfo print).
   * `limits` caps connections (default: the NBD maxima of net/limits.ts; a node
   * passes the caps its open-files limit allows). `volumeMetrics: false` stops
   * counting and timing each volume's requests (default true; the cost bench
   * compares the two).
   */
  static async listen(
    store: Store,
    address: NbdAddress,
    options: {
      authority?: VolumeAuthority;
      ready?: ReadinessCheck;
      limits?: ListenerLimits;
      volumeMetrics?: boolean;
    } = {},
  ): Promise<NbdServer> {
    // Volumes open through their authority: the single node's own, or a cluster's leases.
    const authority = options.authority ?? new LocalAuthority(store);
    const setup = {
      handshake: { authority, ready: options.ready },
      limits: options.limits ??
        {
          connectionsMax: nbdConnectionsMax,
          connectionsPerAddressMax: nbdConnectionsPerAddressMax,
        },
      volumeMetrics: options.volumeMetrics ?? true,
    };
    if ("path" in address) {
      await Deno.remove(address.path).catch(() => {});
      const listener = Deno.listen({ transport: "unix", path: address.path });
      return new NbdServer(store, listener, address, setup);
    }
    const listener = Deno.listen({ hostname: address.hostname, port: address.port });
    const bound = listener.addr as Deno.NetAddr;
    const at = { hostname: bound.hostname, port: bound.port };
    return new NbdServer(store, listener, at, setup);
  }

  /** Connections open now. */
  get connections(): number {
    return this.#acceptor.connections;
  }

  /** Connections served since start (for metrics). */
  get connectionsServed(): number {
    return this.#acceptor.admitted;
  }

  /** Stops accepting and closes every connection. */
  async close(): Promise<void> {
    await this.#acceptor.close();
    this.#acceptor.closeConnections();
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    const reader = new ConnReader(conn);
    const writer = new ReplyWriter(conn);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      closeQuietly(conn);
    }, handshakeTimeoutMs);
    const client = clientOf(conn);
    let opened: { export: string; atMs: number } | null = null;
    let stats: VolumeStats | null = null;
    let closeWriter = () => {};
    try {
      const session = await handshake(this.#store, reader, writer, this.#handshakeOptions)
        .catch((error) => {
          nbdHandshakeFailures.inc({ reason: timedOut ? "timeout" : failureReason(error) });
          throw error;
        })
        .finally(() => clearTimeout(timer));
      if (session !== null) {
        opened = { export: session.device.name, atMs: performance.now() };
        // A volume's export may write: a rollback is refused while it is open.
        if (session.device.canWrite) closeWriter = this.#store.noteWriter(session.device.name);
        log.info("connection opened to {export} from {client}", {
          export: opened.export,
          client,
          writable: session.device.canWrite,
        });
        // Volumes (the writable exports) have limits and figures; images and snapshots none.
        const limiter = session.device.canWrite ? this.#store.ioLimiter(session.device.name) : null;
        if (this.#volumeMetrics && session.device.canWrite) {
          stats = openVolumes.open(session.device.name);
        }
        await serveTransmission(session, {
          reader,
          writer,
          buffers: this.#buffers,
          limiter,
          stats,
        });
      }
    } catch (error) {
      if (error instanceof ConnectionClosedError || error instanceof Deno.errors.BadResource) {
        return;
      }
      // A read cut short by close(): this server ended the connection itself.
      if (error instanceof Deno.errors.Interrupted) return;
      if (error instanceof Deno.errors.ConnectionReset || error instanceof Deno.errors.BrokenPipe) {
        return;
      }
      if (error instanceof NbdFramingError) return;
      log.error("connection from {client} failed: {error}", { client, error });
    } finally {
      if (stats !== null) openVolumes.release(stats);
      closeWriter();
      if (opened !== null) {
        log.info("connection to {export} from {client} closed after {ms} ms", {
          export: opened.export,
          client,
          ms: Math.round(performance.now() - opened.atMs),
        });
      }
    }
  }
}

/** Why a handshake failed, for atoll_nbd_handshake_failures_total (a timeout is told apart before). */
function failureReason(error: unknown): HandshakeFailureReason {
  if (error instanceof NbdFramingError) return error.reason;
  if (
    error instanceof ConnectionClosedError || error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted || error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe
  ) return "disconnected";
  return "error";
}

/** HOST:PORT of a TCP client, the socket path of a unix one. */
function clientOf(conn: Deno.Conn): string {
  const addr = conn.remoteAddr;
  return addr.transport === "unix" || addr.transport === "unixpacket"
    ? `unix:${(conn.localAddr as Deno.UnixAddr).path}`
    : `${(addr as Deno.NetAddr).hostname}:${(addr as Deno.NetAddr).port}`;
}
