/**
 * The accept loop every listener of a node runs: it caps connections in all and
 * per remote address, and a failed accept (EMFILE, ENFILE, ENOMEM, an aborted
 * handshake) is answered by a pause and a retry, never by an exit or a silent
 * stop. Deno.serve offers neither, and a Deno.serve whose accept fails with
 * EMFILE ends the process: this is why the node owns its accept loops.
 */
import { type Logger, logger } from "../log/mod.ts";
import { acceptBackoffMsMax, acceptBackoffMsMin, type ListenerLimits } from "./limits.ts";

/** Refused connections answered (HTTP 503) at once; more are closed without an answer. */
const refusalsAnsweringMax = 16;

/** Options of {@linkcode Acceptor.start}. */
export interface AcceptOptions {
  /** Names the listener, and the component of its log lines: `http`, `nbd`, `cluster`. */
  name: string;
  limits: ListenerLimits;
  /** Serves one connection; the acceptor closes it once the promise settles. */
  serve(conn: Deno.Conn): Promise<void>;
  /** Bytes written to a connection refused by a cap before it is closed (an HTTP 503). */
  refusal?: Uint8Array;
  /**
   * At a cap, closes one idle connection (from `address` when the address's
   * cap is the one reached) to admit the new one instead of refusing it;
   * false when none is idle. HTTP clients keep pooled connections open they
   * no longer use, and a peer's pool must not lock it out of the cluster port.
   */
  evictIdle?: (address: string | null) => boolean;
}

/** A running accept loop and the connections it admitted. */
export class Acceptor {
  readonly #listener: Deno.Listener;
  readonly #options: AcceptOptions;
  readonly #open = new Set<Deno.Conn>();
  readonly #perAddress = new Map<string, number>();
  readonly #log: Logger;
  readonly #loop: Promise<void>;
  #closed = false;
  #refusing = false;
  #wake: (() => void) | null = null;
  /** Connections admitted since start. */
  admitted = 0;
  /** Connections closed at once because a cap was reached. */
  /** Refusals being answered now (see #refuse). */
  #answering = 0;
  refused = 0;
  /** Idle connections closed to admit a new one at a cap. */
  evicted = 0;
  /** Accept calls that failed (descriptors exhausted, mostly). */
  acceptFailures = 0;

  private constructor(listener: Deno.Listener, options: AcceptOptions) {
    this.#listener = listener;
    this.#options = options;
    this.#log = logger(options.name);
    this.#loop = this.#acceptLoop();
  }

  /** Starts accepting on `listener`. */
  static start(listener: Deno.Listener, options: AcceptOptions): Acceptor {
    return new Acceptor(listener, options);
  }

  /** Connections open now. */
  get connections(): number {
    return this.#open.size;
  }

  /** Stops accepting (open connections stay; see {@linkcode closeConnections}). */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#wake?.();
      try {
        this.#listener.close();
      } catch { /* already closed */ }
    }
    await this.#loop;
  }

  /** Closes every open connection (their serve functions see their reads fail). */
  closeConnections(): void {
    for (const conn of this.#open) closeQuietly(conn);
  }

  async #acceptLoop(): Promise<void> {
    let failures = 0;
    while (!this.#closed) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#closed || error instanceof Deno.errors.BadResource) return;
        this.acceptFailures++;
        // One line per burst: a flood would otherwise write one per attempt.
        if (failures++ === 0) {
          this.#log.warn("cannot accept a connection ({open} open): {error}; backing off", {
            open: this.#open.size,
            error: error instanceof Error ? error.message : String(error),
          });
        }
        await this.#pause(Math.min(acceptBackoffMsMax, acceptBackoffMsMin * 2 ** (failures - 1)));
        continue;
      }
      if (failures > 0) {
        this.#log.info("accepting again after {failures} failed accepts", { failures });
        failures = 0;
      }
      this.#admit(conn);
    }
  }

  #admit(conn: Deno.Conn): void {
    const { connectionsMax, connectionsPerAddressMax } = this.#options.limits;
    const address = conn.remoteAddr.transport === "tcp" ? conn.remoteAddr.hostname : null;
    const fromAddress = address === null ? 0 : this.#perAddress.get(address) ?? 0;
    const full = this.#open.size >= connectionsMax;
    if (full || fromAddress >= connectionsPerAddressMax) {
      // The evicted connection's descriptor is free at once; the counts follow when it ends.
      if (this.#options.evictIdle?.(full ? null : address) !== true) {
        this.#refuse(conn, address, fromAddress);
        return;
      }
      this.evicted++;
    }
    if (this.#refusing) {
      this.#refusing = false;
      this.#log.info("admitting connections again ({open} open)", { open: this.#open.size });
    }
    if (conn.remoteAddr.transport === "tcp") (conn as Deno.TcpConn).setNoDelay(true);
    this.#open.add(conn);
    if (address !== null) this.#perAddress.set(address, fromAddress + 1);
    this.admitted++;
    this.#options.serve(conn)
      .catch((error) => this.#log.error("connection failed: {error}", { error }))
      .finally(() => {
        this.#open.delete(conn);
        if (address !== null) {
          const left = this.#perAddress.get(address)! - 1;
          if (left === 0) this.#perAddress.delete(address);
          else this.#perAddress.set(address, left);
        }
        closeQuietly(conn);
      });
  }

  #refuse(conn: Deno.Conn, address: string | null, fromAddress: number): void {
    this.refused++;
    if (!this.#refusing) {
      this.#refusing = true;
      const { connectionsMax, connectionsPerAddressMax } = this.#options.limits;
      if (this.#open.size >= connectionsMax) {
        this.#log.warn("refusing connections: {open} open, the most this listener serves", {
          open: this.#open.size,
        });
      } else {
        this.#log.warn(
          "refusing connections from {client}: {open} open, the most one address may have",
          { client: address, open: fromAddress, limit: connectionsPerAddressMax },
        );
      }
    }
    const refusal = this.#options.refusal;
    // A flood is refused without an answer past a few at once: each answer holds
    // its descriptor until written, and a slow event loop would pile them up.
    if (refusal === undefined || this.#answering >= refusalsAnsweringMax) {
      return closeQuietly(conn);
    }
    this.#answering++;
    // A fresh socket's send buffer is empty: this write completes at once.
    conn.write(refusal).catch(() => {}).finally(() => {
      this.#answering--;
      closeQuietly(conn);
    });
  }

  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

/** Closes `conn`, ignoring that it may be closed already. */
export function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

/** Errors of a connection that ended, which are not worth a log line. */
export function isConnectionError(error: unknown): boolean {
  return [
    Deno.errors.BadResource,
    Deno.errors.BrokenPipe,
    Deno.errors.ConnectionReset,
    Deno.errors.ConnectionAborted,
    Deno.errors.Interrupted,
    Deno.errors.UnexpectedEof,
    Deno.errors.NotConnected,
  ].some((kind) => error instanceof kind);
}
