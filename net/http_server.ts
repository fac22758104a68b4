/**
 * The node's HTTP/1.1 server, for the API port and the cluster request port.
 *
 * Deno.serve has no header or idle timeout and no connection cap, and its
 * accept loop ends the process when descriptors run out (EMFILE), so a node
 * on a host with the common limit of 1024 open files could be killed by ~1200
 * idle connections. This server owns its accept loop ({@linkcode Acceptor}:
 * caps, back-off) and every connection's deadlines, and hands each request to
 * a `(Request) => Response` handler (the hono app, the RPC server) as
 * Deno.serve did: bodies stream both ways, never buffered whole.
 */
import { type Logger, logger } from "../log/mod.ts";
import { Acceptor, isConnectionError } from "./accept_loop.ts";
import { Deadlines } from "./_deadlines.ts";
import { RequestBody } from "./_http_body.ts";
import { ConnectionEndedError, HttpConn, type HttpTimeouts } from "./_http_conn.ts";
import { HttpRequestError, parseHead, type RequestHead } from "./_http_head.ts";
import { closingAnswer, ResponseCutError, writeResponse } from "./_http_response.ts";
import { headerTimeoutMsDefault, idleTimeoutMsDefault, type ListenerLimits } from "./limits.ts";

/** Answers one request; `info.remoteAddr` is the client's address. */
export type HttpHandler = (
  request: Request,
  info: { remoteAddr: Deno.NetAddr },
) => Response | Promise<Response>;

/** Options of {@linkcode HttpServer.listen}. */
export interface HttpServerOptions {
  hostname: string;
  /** 0 picks a free port. */
  port: number;
  /** Names the listener in log lines: `http`, `cluster`. */
  name: string;
  handler: HttpHandler;
  limits: ListenerLimits;
  /** Defaults: the header and idle timeouts of net/limits.ts, no whole-request timeout. */
  timeouts?: Partial<HttpTimeouts>;
  /**
   * Whether a connection may carry another request after this answer (the
   * cluster port keeps only connections whose requests authenticate).
   */
  keepAliveAfter?: (response: Response) => boolean;
  /** Time in-flight requests get at shutdown before their connections are cut. */
  shutdownGraceMs?: number;
}

const continueBytes = new TextEncoder().encode("HTTP/1.1 100 Continue\r\n\r\n");

/** A listening HTTP server; see the module doc. */
export class HttpServer {
  readonly address: { hostname: string; port: number };
  /** Settles once {@linkcode shutdown} finished. */
  readonly finished: Promise<void>;
  readonly #options: HttpServerOptions;
  readonly #timeouts: HttpTimeouts;
  /** Null for a server fed connections accepted elsewhere ({@linkcode HttpServer.attach}). */
  readonly #acceptor: Acceptor | null;
  readonly #deadlines: Deadlines;
  readonly #conns = new Set<HttpConn>();
  readonly #drained = Promise.withResolvers<void>();
  readonly #log: Logger;
  #closing = false;
  #stopping: Promise<void> | null = null;

  private constructor(listener: Deno.TcpListener | null, options: HttpServerOptions) {
    this.#options = options;
    this.#log = logger(options.name);
    this.#timeouts = {
      headerTimeoutMs: options.timeouts?.headerTimeoutMs ?? headerTimeoutMsDefault,
      idleTimeoutMs: options.timeouts?.idleTimeoutMs ?? idleTimeoutMsDefault,
      requestTimeoutMs: options.timeouts?.requestTimeoutMs ?? Infinity,
    };
    const shortest = Math.min(...Object.values(this.#timeouts));
    this.#deadlines = new Deadlines(Math.max(25, Math.min(1000, Math.floor(shortest / 4))));
    this.address = listener === null
      ? { hostname: options.hostname, port: options.port }
      : { hostname: listener.addr.hostname, port: listener.addr.port };
    this.#acceptor = listener === null ? null : Acceptor.start(listener, {
      name: options.name,
      limits: options.limits,
      serve: (conn) => this.serveConnection(conn),
      refusal: closingAnswer(503, "Cannot serve: too many connections; try again"),
      evictIdle: (address) => this.evictIdle(address),
    });
    this.finished = this.#drained.promise;
  }

  /** Listens on `hostname:port` and serves `handler`. */
  static listen(options: HttpServerOptions): HttpServer {
    const listener = Deno.listen({ hostname: options.hostname, port: options.port });
    return new HttpServer(listener, options);
  }

  /**
   * A server for connections accepted elsewhere, handed over with
   * {@linkcode serveConnection}: a port that speaks HTTP and another protocol,
   * told apart by their first bytes (the cluster port). `hostname` and `port`
   * name that listener; the caller's accept loop applies `limits`.
   */
  static attach(options: HttpServerOptions): HttpServer {
    return new HttpServer(null, options);
  }

  /** Connections open now. */
  get connections(): number {
    return this.#acceptor?.connections ?? this.#conns.size;
  }

  /** Counters of the accept loop (admitted, refused, failed accepts), for metrics. */
  get acceptor(): Pick<Acceptor, "admitted" | "refused" | "evicted" | "acceptFailures"> {
    return this.#acceptor ?? { admitted: 0, refused: 0, evicted: 0, acceptFailures: 0 };
  }

  /**
   * Stops accepting, closes idle connections, lets requests under way finish
   * (their answers close their connections) within the grace, then cuts the rest.
   */
  shutdown(): Promise<void> {
    return this.#stopping ??= (async () => {
      this.#closing = true;
      await this.#acceptor?.close();
      for (const http of this.#conns) if (http.idle) http.expire();
      const timer = setTimeout(() => {
        for (const http of this.#conns) http.expire();
      }, this.#options.shutdownGraceMs ?? 10_000);
      if (this.#conns.size === 0) this.#drained.resolve();
      await this.#drained.promise;
      clearTimeout(timer);
    })();
  }

  /** Closes the connection kept alive longest without a request (from `address` when given). */
  evictIdle(address: string | null): boolean {
    let oldest: HttpConn | null = null;
    for (const http of this.#conns) {
      if (http.keptAliveSinceMs === null) continue;
      const remote = http.conn.remoteAddr;
      if (address !== null && (remote.transport !== "tcp" || remote.hostname !== address)) continue;
      if (oldest === null || http.keptAliveSinceMs < oldest.keptAliveSinceMs!) oldest = http;
    }
    oldest?.expire();
    return oldest !== null;
  }

  /** Serves `conn` until it closes; `received`: its first bytes, read already by whoever accepted it. */
  async serveConnection(conn: Deno.Conn, received?: Uint8Array): Promise<void> {
    const http = new HttpConn(conn, this.#timeouts, received);
    this.#conns.add(http);
    this.#deadlines.add(http);
    try {
      for (let first = true; first || !this.#closing; first = false) {
        const head = await http.readHead(first);
        if (head === null || !await this.#exchange(http, parseHead(head))) return;
      }
    } catch (error) {
      if (error instanceof HttpRequestError) {
        await http.write(closingAnswer(error.status, error.message)).catch(() => {});
        await http.linger();
      } else if (!(error instanceof ConnectionEndedError) && !isConnectionError(error)) {
        this.#log.error("connection failed: {error}", { error });
      }
    } finally {
      this.#deadlines.delete(http);
      this.#conns.delete(http);
      if (this.#closing && this.#conns.size === 0) this.#drained.resolve();
    }
  }

  /** Serves one request; resolves to whether the connection carries on. */
  async #exchange(http: HttpConn, head: RequestHead): Promise<boolean> {
    let answered = false;
    // A small body that came with its head is handed over as bytes: no stream to
    // build and pull for most API calls and cluster requests.
    const received = head.body.kind === "length" ? http.takeBuffered(head.body.bytes) : null;
    const body = head.body.kind === "none" || received !== null ? null : new RequestBody(
      http,
      head.body,
      head.expectContinue ? () => answered ? Promise.resolve() : http.write(continueBytes) : null,
    );
    let request: Request;
    try {
      request = new Request(this.#url(head), {
        method: head.method,
        headers: head.headers,
        body: received ?? body?.stream ?? null,
        duplex: "half",
      } as RequestInit);
    } catch (error) {
      throw new HttpRequestError(400, `Cannot read request: ${(error as Error).message}`);
    }
    let response: Response;
    try {
      response = await this.#options.handler(request, {
        remoteAddr: http.conn.remoteAddr as Deno.NetAddr,
      });
    } catch (error) {
      this.#log.error("{method} {path} failed: {error}", {
        method: head.method,
        path: head.target,
        error,
      });
      response = Response.json({ error: "internal error" }, { status: 500 });
    }
    answered = true;
    const keepAlive = head.keepAlive && (body === null || body.complete) && !this.#closing &&
      (this.#options.keepAliveAfter?.(response) ?? true);
    let carriesOn: boolean;
    try {
      carriesOn = await writeResponse(http, response, { ...head, keepAlive });
    } catch (error) {
      if (!(error instanceof ResponseCutError)) throw error;
      this.#log.warn("{method} {path}: response cut: {error}", {
        method: head.method,
        path: head.target,
        error: error.message,
      });
      http.expire();
      return false;
    }
    if (body !== null && !body.complete) {
      // The body was not read whole: drain a while so the client reads the answer, then close.
      if (!body.reading) await http.linger();
      return false;
    }
    return carriesOn;
  }

  #url(head: RequestHead): string {
    if (/^https?:\/\//i.test(head.target)) return head.target;
    if (!head.target.startsWith("/")) {
      throw new HttpRequestError(400, "Cannot read request: the target is not a path");
    }
    const { hostname, port } = this.address;
    const host = head.host ?? `${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
    if (!/^[^\s,/?#@]+$/.test(host)) {
      throw new HttpRequestError(400, "Cannot read request: bad Host header");
    }
    return `http://${host}${head.target}`;
  }
}
