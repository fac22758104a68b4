/**
 * The HTTP API of a node (DESIGN.md "Contracts"), on hono. Handlers throw domain
 * errors; `onError` is the one place that turns them into statuses.
 *
 * This file holds the app's options, its middleware and error mapping; the
 * /v1 route groups are in _image_routes.ts, _volume_routes.ts and
 * _cluster_routes.ts.
 */
import { type Context, Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import {
  BusyError,
  ConflictError,
  CorruptionError,
  isNoSpace,
  LocalAuthority,
  NotFoundError,
  type Store,
  TruncatedError,
  UnavailableError,
  type VolumeAuthority,
} from "../core/mod.ts";
import { logger } from "../log/mod.ts";
import {
  httpRequestDuration,
  httpRequests,
  metricsContentType,
  metricsText,
} from "../metrics/mod.ts";
import { matchedRoutes } from "hono/route";
import { bearerAuth } from "./_bearer_auth.ts";
import { changeRoutes } from "./_change_routes.ts";
import { backupRoutes } from "./_backup_routes.ts";
import { clusterRoutes } from "./_cluster_routes.ts";
import { dashboardRoutes, statsRoutes } from "./_dashboard_routes.ts";
import { S3Error } from "../backup/mod.ts";
import { imageRoutes } from "./_image_routes.ts";
import { volumeRoutes } from "./_volume_routes.ts";

const log = logger("http");

/** A member of the cluster as `GET /v1/cluster` shows it. */
export interface MemberInfo {
  id: string;
  address: string;
  state: "alive" | "suspect" | "dead" | "left";
  zone: string | null;
  incarnation?: number;
  weight?: number;
}

/** Options of {@linkcode createApp}. */
export interface AppOptions {
  store: Store;
  /** When set, every /v1 route requires `Authorization: Bearer <token>`. */
  token?: string | null;
  /** The members the cluster view knows, this node first. */
  members: () => MemberInfo[];
  version: string;
  /** The cluster's state for `GET /v1/cluster` (replication, healing), when in one. */
  clusterStatus?: () => Record<string, unknown>;
  /** Write leases of volumes, in a cluster. */
  leases?: {
    info(name: string): Promise<unknown>;
    acquire(name: string): Promise<void>;
    breakLease(name: string): Promise<void>;
  };
  /**
   * Declares a member that is gone for good lost: the copies only it held are given up
   * (cluster/lost_members.ts), in a cluster.
   */
  declareLost?: (id: string) => Promise<void>;
  /** Ids of the members that hold `name` (a block, object or metadata key), in a cluster. */
  replicasOf?: (name: string) => string[];
  /**
   * Opens volumes for the data routes, as NBD does: the single node's own
   * authority by default, a cluster's write leases (coherent reads, fenced writes).
   */
  authority?: VolumeAuthority;
  /**
   * Every live member's figures for the dashboard (`GET /v1/stats`), this node
   * first; this node's alone when unset.
   */
  memberStats?: () => Promise<unknown[]>;
  /** Whether the node should take I/O now, for `GET /readyz`; ready when unset. */
  ready?: () => Readiness;
}

/** What {@linkcode AppOptions.ready} answers; `reason` says why a node is not ready. */
export type Readiness = { ready: boolean; reason?: string };

const jsonBodyBytesMax = 64 * 1024;

/** Builds the hono app; `app.fetch` serves it. */
export function createApp(options: AppOptions): Hono<AppEnv> {
  const { store } = options;
  const authority = options.authority ?? new LocalAuthority(store);

  const app = new Hono<AppEnv>();
  app.onError((error, c) => {
    const status = statusOf(error);
    // Unavailable, busy or full is a state of the node, not a bug: one line (and
    // when to try again), no stack.
    const about = { method: c.req.method, path: c.req.path, request: c.get("requestId") };
    if (error instanceof UnavailableError || error instanceof BusyError) {
      log.warn("{method} {path}: {error}", { ...about, error: error.message });
      return c.json({ error: error.message }, status, { "retry-after": "1" });
    }
    if (status === 507) {
      const message =
        `Cannot ${c.req.method} ${c.req.path}: the data disk is full (${error.message})`;
      log.warn("{message}", { ...about, message });
      return c.json({ error: message }, status);
    }
    // Client errors are the access log's to tell; a server error is a bug: its stack.
    if (status >= 500) log.error("{method} {path} failed: {error}", { ...about, error });
    return c.json({ error: error.message }, status);
  });
  app.notFound((c) =>
    c.json({ error: `Cannot ${c.req.method} ${c.req.path}: no such route` }, 404)
  );
  app.use(async (c, next) => {
    const started = performance.now();
    const requestId = requestIdOf(c.req.header("x-request-id"));
    c.set("requestId", requestId);
    c.header("x-request-id", requestId);
    await next();
    const route = routeOf(c);
    const seconds = (performance.now() - started) / 1000;
    httpRequests.inc({ method: c.req.method, route, status: String(c.res.status) });
    httpRequestDuration.observe({ method: c.req.method, route }, seconds);
    // A dashboard polls several routes every 1.5 s: its answered polls go to `debug`.
    const polled = c.req.header("x-atoll-poll") !== undefined && c.res.status < 400;
    log[polled ? "debug" : "info"]("{method} {path} {status} {ms} ms", {
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      ms: Math.round((performance.now() - started) * 10) / 10,
      request: requestId,
      client: clientOf(c.env),
    });
  });

  app.get("/healthz", (c) => c.json({ status: "ok", version: options.version }));
  // Liveness above; readiness here: send I/O only to nodes that answer 200.
  app.get("/readyz", (c) => {
    const { ready, reason } = options.ready?.() ?? { ready: true };
    if (ready) return c.json({ ready: true });
    return c.json({ ready: false, reason: reason ?? "not ready" }, 503);
  });
  app.get(
    "/metrics",
    async (c) => c.text(await metricsText(), 200, { "content-type": metricsContentType }),
  );

  app.route("/", dashboardRoutes());

  if (options.token) app.use("/v1/*", bearerAuth(options.token));
  app.use("/v1/*", async (c, next) => {
    // A node that is not ready (not joined to its cluster yet) changes nothing: what it
    // wrote alone would be a cluster of its own, never reconciled with the real one.
    const { ready, reason } = options.ready?.() ?? { ready: true };
    if (!ready && c.req.method !== "GET" && c.req.method !== "HEAD") {
      throw new UnavailableError(
        `Cannot ${c.req.method} ${c.req.path}: this node is not ready: ${reason ?? "not ready"}`,
      );
    }
    await next();
  });
  app.use("/v1/*", async (c, next) => {
    // Uploads and volume writes stream their bodies; everything else is small JSON.
    if (c.req.method === "POST") return await bodyLimit({ maxSize: jsonBodyBytesMax })(c, next);
    await next();
  });

  app.route("/v1", imageRoutes(store));
  app.route("/v1", volumeRoutes(options, authority));
  app.route("/v1", changeRoutes(store));
  app.route("/v1", clusterRoutes(options));
  app.route("/v1", backupRoutes(store, statusOf));
  app.route("/v1", statsRoutes(options));
  return app;
}

/** What the middleware hands on to the routes and the error handler. */
export type AppEnv = { Variables: { requestId: string } };

let requestSerial = 0;
/** Longest X-Request-Id kept from a client (longer ones are replaced). */
const requestIdBytesMax = 64;

/** The client's X-Request-Id when it is short and printable, else a new one. */
function requestIdOf(given: string | undefined): string {
  if (given !== undefined && given.length <= requestIdBytesMax && /^[\x21-\x7e]+$/.test(given)) {
    return given;
  }
  return `r${(++requestSerial).toString(36)}`;
}

/**
 * The route template that answered (`/v1/volumes/:name`), for the `route`
 * label: the last route registered for a method (not a middleware) that
 * matched, so that a request refused by a middleware (401, 503) still names
 * its route; `unmatched` when none did (404). Never the raw path, which a
 * client could make unbounded.
 */
function routeOf(c: Context): string {
  return matchedRoutes(c).findLast((route) => route.method !== "ALL")?.path ?? "unmatched";
}

/** HOST:PORT of the client when the server passed its address along (Deno.serve does). */
function clientOf(env: unknown): string | null {
  const addr = (env as { remoteAddr?: { hostname?: string; port?: number } } | undefined)
    ?.remoteAddr;
  return addr?.hostname === undefined ? null : `${addr.hostname}:${addr.port}`;
}

/** The one mapping from errors to HTTP statuses. */
function statusOf(error: Error): ContentfulStatusCode {
  if (error instanceof HTTPException) return error.status as ContentfulStatusCode;
  if (isNoSpace(error)) return 507;
  if (error instanceof NotFoundError) return 404;
  if (error instanceof ConflictError) return 409;
  if (error instanceof BusyError || error instanceof UnavailableError) return 503;
  if (error instanceof TruncatedError) return 400;
  if (error instanceof CorruptionError) return 500;
  if (error instanceof TypeError || error instanceof RangeError) return 400;
  // The S3 store refused or did not answer: a gateway's failure, not ours.
  if (error instanceof S3Error) return 502;
  return 500;
}
