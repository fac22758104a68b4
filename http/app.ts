/**
 * The HTTP API of a node (DESIGN.md "Contracts"), on hono. Handlers throw domain
 * errors; `onError` is the one place that turns them into statuses.
 */
import { type Context, Hono, type Next } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { createHash, timingSafeEqual } from "node:crypto";
import {
  BusyError,
  ConflictError,
  CorruptionError,
  isBlockName,
  isMetaKey,
  isNoSpace,
  isObjectName,
  LocalAuthority,
  NotFoundError,
  type Store,
  TruncatedError,
  UnavailableError,
  validateName,
  type VolumeAuthority,
} from "../core/mod.ts";
import { Metrics } from "./metrics.ts";
import { logger } from "../log/mod.ts";

const log = logger("http");
import { dataResponse } from "./data_response.ts";

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
  /** Gauges and counters measured now, added to /metrics (the cluster's). */
  gauges?: () => Record<string, { help: string; value: number }>;
  /** Write leases of volumes, in a cluster. */
  leases?: {
    info(name: string): Promise<unknown>;
    acquire(name: string): Promise<void>;
    breakLease(name: string): Promise<void>;
  };
  /** Ids of the members that hold `name` (a block, object or metadata key), in a cluster. */
  replicasOf?: (name: string) => string[];
  /**
   * Opens volumes for the data routes, as NBD does: the single node's own
   * authority by default, a cluster's write leases (coherent reads, fenced writes).
   */
  authority?: VolumeAuthority;
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
  const metrics = new Metrics();
  metrics.counter("atoll_http_requests_total", "HTTP requests answered");
  metrics.counter("atoll_http_errors_total", "HTTP requests answered with a 4xx or 5xx status");
  metrics.counter("atoll_upload_bytes_total", "Image bytes received by completed uploads");
  metrics.counter("atoll_upload_new_bytes_total", "Bytes of blocks stored for the first time");
  metrics.counter("atoll_gc_deleted_blocks_total", "Blocks deleted by garbage collection");

  const app = new Hono<AppEnv>();
  app.onError((error, c) => {
    const status = statusOf(error);
    metrics.add("atoll_http_errors_total");
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
    metrics.add("atoll_http_requests_total");
    log.info("{method} {path} {status} {ms} ms", {
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
  app.get("/metrics", (c) => {
    const uploads = store.uploads();
    const text = metrics.render({
      atoll_uploads_in_progress: { help: "Uploads running now", value: uploads.length },
      ...options.gauges?.(),
    });
    return c.text(text, 200, { "content-type": "text/plain; version=0.0.4" });
  });

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

  app.put("/v1/images/:name", async (c) => {
    const name = validateName(c.req.param("name"), "image");
    const body = c.req.raw.body;
    const expectedBytes = contentLength(c.req.header("content-length"));
    if (body === null || expectedBytes === 0) {
      throw new TypeError(`Cannot upload image "${name}": the body is empty`);
    }
    const result = await store.uploadImage(name, clientBytes(body), { expectedBytes });
    metrics.add("atoll_upload_bytes_total", result.size);
    metrics.add("atoll_upload_new_bytes_total", result.newBytes);
    const { created, ...info } = result;
    return c.json(info, created ? 201 : 200);
  });
  app.get("/v1/images", async (c) => c.json(await store.listImages()));
  app.get("/v1/uploads", (c) => c.json(store.uploads()));
  app.get("/v1/images/:name", async (c) => {
    const view = await store.openImage(c.req.param("name"));
    return await dataResponse(view, c.req.header("range"));
  });
  app.get("/v1/images/:name/info", async (c) => c.json(await store.imageInfo(c.req.param("name"))));
  app.delete("/v1/images/:name", async (c) => {
    await store.deleteImage(c.req.param("name"));
    return c.body(null, 204);
  });

  app.post("/v1/volumes", async (c) => {
    const request = await jsonBody(c.req.raw);
    return c.json(await store.createVolume(request as never), 201);
  });
  app.get("/v1/volumes", async (c) => c.json(await store.listVolumes()));
  app.get("/v1/volumes/:name", async (c) => {
    const name = c.req.param("name");
    return c.json(await (options.leases?.info(name) ?? store.volumeInfo(name)));
  });
  app.post("/v1/volumes/:name/lease", async (c) => {
    const name = validateName(c.req.param("name"), "volume");
    const { action } = await jsonBody(c.req.raw);
    if (action !== "acquire" && action !== "break") {
      throw new TypeError(
        `Cannot change the lease of "${name}": action must be "acquire" or "break"`,
      );
    }
    if (options.leases === undefined) {
      throw new ConflictError(
        `Cannot change the lease of "${name}": this node runs alone (no --gossip)`,
      );
    }
    if (action === "acquire") await options.leases.acquire(name);
    else await options.leases.breakLease(name);
    return c.json(await options.leases.info(name));
  });
  app.delete("/v1/volumes/:name", async (c) => {
    await store.deleteVolume(c.req.param("name"), { cascade: c.req.query("cascade") === "true" });
    return c.body(null, 204);
  });
  app.get("/v1/volumes/:name/data", async (c) => {
    const volume = await authority.open(validateName(c.req.param("name"), "volume"));
    return await dataResponse({
      sizeBytes: volume.sizeBytes,
      readAt: async (range, into = new Uint8Array(range.length)) => {
        await volume.read(range, into);
        return into;
      },
    }, c.req.header("range"));
  });
  app.patch("/v1/volumes/:name/data", async (c) => {
    const volume = await authority.open(validateName(c.req.param("name"), "volume"));
    const offset = Number(c.req.query("offset") ?? "0");
    const body = c.req.raw.body;
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new TypeError(`Cannot write volume "${volume.name}": offset must be a byte count`);
    }
    let written = 0;
    if (body !== null) {
      for await (const chunk of clientBytes(body)) {
        await volume.write(offset + written, chunk, false);
        written += chunk.length;
      }
    }
    await volume.flush();
    return c.json({ name: volume.name, offset, written });
  });

  app.post("/v1/volumes/:name/snapshots", async (c) => {
    const request = await jsonBody(c.req.raw) as { name?: unknown };
    const name = validateName(request.name, "snapshot");
    return c.json(await store.createSnapshot(c.req.param("name"), name), 201);
  });
  app.get("/v1/volumes/:name/snapshots", async (c) => {
    return c.json(await store.listSnapshots(c.req.param("name")));
  });
  app.get("/v1/volumes/:name/snapshots/:snapshot/data", async (c) => {
    const view = await store.openSnapshot(c.req.param("name"), c.req.param("snapshot"));
    return await dataResponse(view, c.req.header("range"));
  });
  app.delete("/v1/volumes/:name/snapshots/:snapshot", async (c) => {
    await store.deleteSnapshot(c.req.param("name"), c.req.param("snapshot"));
    return c.body(null, 204);
  });

  app.get(
    "/v1/cluster",
    (c) => c.json({ members: options.members(), ...options.clusterStatus?.() }),
  );
  app.get("/v1/cluster/replicas/:name", (c) => {
    const name = c.req.param("name");
    if (options.replicasOf === undefined) {
      throw new ConflictError("Cannot place names: this node runs alone (no --gossip)");
    }
    if (!isBlockName(name) && !isObjectName(name) && !isMetaKey(name.replace(":", "/"))) {
      throw new TypeError(
        `Cannot place ${JSON.stringify(name)}: expected a block hash, an object name or KIND:NAME`,
      );
    }
    return c.json({ name, replicas: options.replicasOf(name.replace(":", "/")) });
  });
  app.post("/v1/gc", async (c) => {
    const result = await store.collectGarbage();
    metrics.add("atoll_gc_deleted_blocks_total", result.deletedBlocks);
    return c.json(result);
  });
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
  return 500;
}

function bearerAuth(token: string) {
  const expected = digest(token);
  return async (c: Context, next: Next) => {
    const header = c.req.header("authorization") ?? "";
    const given = header.startsWith("Bearer ") ? header.slice(7) : null;
    if (given === null || !timingSafeEqual(digest(given), expected)) {
      throw new HTTPException(401, {
        message: "Cannot authorize request: a valid bearer token is required",
      });
    }
    await next();
  };
}

function digest(text: string): Uint8Array {
  // Equal-length digests let timingSafeEqual compare tokens of any length.
  return createHash("sha256").update(text).digest();
}

/** Parses a JSON object body, or throws TypeError (400). */
async function jsonBody(request: Request): Promise<Record<string, unknown>> {
  let value: unknown;
  try {
    value = await request.json();
  } catch (cause) {
    if (cause instanceof HTTPException) throw cause;
    throw new TypeError("Cannot parse request: the body is not JSON", { cause });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError("Cannot parse request: the body is not a JSON object");
  }
  return value as Record<string, unknown>;
}

/** The Content-Length header as a number, null when absent; TypeError when malformed. */
function contentLength(header: string | undefined): number | null {
  if (header === undefined) return null;
  if (!/^\d{1,16}$/.test(header)) throw new TypeError(`Cannot read body: bad Content-Length`);
  return Number(header);
}

/**
 * The chunks of a request body. A body that breaks off (the client went away,
 * or sent less than its Content-Length) is the client's fault: TruncatedError.
 */
async function* clientBytes(body: ReadableStream<Uint8Array>): AsyncIterable<Uint8Array> {
  const reader = body.getReader();
  let done = false;
  try {
    while (!done) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (cause) {
        done = true;
        throw new TruncatedError(
          `Cannot read request body: the connection ended before the body did`,
          { cause },
        );
      }
      done = result.done;
      if (!result.done) yield result.value;
    }
  } finally {
    if (!done) await reader.cancel().catch(() => {});
  }
}
