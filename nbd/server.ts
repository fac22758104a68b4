/**
 * The NBD server of a node: listens on TCP (default 127.0.0.1:10809) or a unix
 * socket, bounds connections, and runs handshake then transmission on each.
 * Nothing a client sends can crash the node: every connection's failure ends at
 * that connection.
 */
import { LocalAuthority, type Store, type VolumeAuthority } from "../core/mod.ts";
import { parseHostPort } from "../core/address.ts";
import { ConnectionClosedError, ConnReader, ReplyWriter } from "./conn_io.ts";
import {
  handshake,
  type HandshakeOptions,
  NbdFramingError,
  type ReadinessCheck,
} from "./handshake.ts";
import {
  connectionsMax,
  handshakeTimeoutMs,
  pooledBufferBytesMax,
  pooledBufferSizeMax,
} from "./limits.ts";
import { BufferPool } from "./buffer_pool.ts";
import { serveTransmission } from "./transmission.ts";

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
  #listener: Deno.Listener;
  #store: Store;
  #connections = new Set<Deno.Conn>();
  #accepting: Promise<void>;
  #buffers = new BufferPool(pooledBufferBytesMax, pooledBufferSizeMax);
  /** Connections served since start (for metrics). */
  connectionsServed = 0;

  #handshakeOptions: HandshakeOptions;

  private constructor(
    store: Store,
    listener: Deno.Listener,
    address: NbdAddress,
    handshakeOptions: HandshakeOptions,
  ) {
    this.#store = store;
    this.#handshakeOptions = handshakeOptions;
    this.#listener = listener;
    this.address = address;
    this.#accepting = this.#acceptLoop();
  }

  /**
   * Starts listening at `address`. A stale unix socket file is replaced. With
   * `ready`, a connection's handshake is refused while the node is not ready
   * (NBD_REP_ERR_SHUTDOWN with the reason, which qemu-img and nbdinfo print).
   */
  static async listen(
    store: Store,
    address: NbdAddress,
    options: { authority?: VolumeAuthority; ready?: ReadinessCheck } = {},
  ): Promise<NbdServer> {
    // Volumes open through their authority: the single node's own, or a cluster's leases.
    const authority = options.authority ?? new LocalAuthority(store);
    const handshakeOptions = { authority, ready: options.ready };
    if ("path" in address) {
      await Deno.remove(address.path).catch(() => {});
      const listener = Deno.listen({ transport: "unix", path: address.path });
      return new NbdServer(store, listener, address, handshakeOptions);
    }
    const listener = Deno.listen({ hostname: address.hostname, port: address.port });
    const bound = listener.addr as Deno.NetAddr;
    const at = { hostname: bound.hostname, port: bound.port };
    return new NbdServer(store, listener, at, handshakeOptions);
  }

  /** Connections open now. */
  get connections(): number {
    return this.#connections.size;
  }

  /** Stops accepting and closes every connection. */
  async close(): Promise<void> {
    this.#listener.close();
    for (const conn of this.#connections) closeQuietly(conn);
    await this.#accepting;
  }

  async #acceptLoop(): Promise<void> {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch {
        return; // listener closed
      }
      if (this.#connections.size >= connectionsMax) {
        closeQuietly(conn);
        continue;
      }
      if (conn.remoteAddr.transport === "tcp") (conn as Deno.TcpConn).setNoDelay(true);
      this.#connections.add(conn);
      this.connectionsServed++;
      this.#serve(conn).finally(() => {
        this.#connections.delete(conn);
        closeQuietly(conn);
      });
    }
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    const reader = new ConnReader(conn);
    const writer = new ReplyWriter(conn);
    const timer = setTimeout(() => closeQuietly(conn), handshakeTimeoutMs);
    try {
      const session = await handshake(this.#store, reader, writer, this.#handshakeOptions)
        .finally(() => clearTimeout(timer));
      if (session !== null) {
        await serveTransmission(session, { reader, writer, buffers: this.#buffers });
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
      console.error(`nbd: connection failed: ${error}`);
    }
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}
