/**
 * A typed client of a node's HTTP API (DESIGN.md "Contracts"), one method per
 * call. The wire types are the ones the server builds its answers from
 * (core/infos.ts, http/app.ts), imported as types only: one definition, no drift.
 */

import type {
  ImageInfo,
  SnapshotInfo,
  UploadResult,
  UploadStatus,
  VolumeInfo,
} from "../core/infos.ts";
import type { MemberInfo } from "../http/app.ts";
import type { ChangeList } from "../core/changes.ts";

export type {
  ChangeList,
  ImageInfo,
  MemberInfo,
  SnapshotInfo,
  UploadResult,
  UploadStatus,
  VolumeInfo,
};
export type { VolumeOrigin } from "../core/records.ts";
export type { VolumeQos } from "../core/qos.ts";

/** What a new volume starts from: exactly one of image, snapshot (`VOL@SNAP`) or size. */
/** Where a new volume comes from: `size` alone (empty), or a clone, larger with `size`. */
export type VolumeSource =
  | { image: string; size?: number; qos?: Record<string, number | null> }
  | { snapshot: string; size?: number; qos?: Record<string, number | null> }
  | { size: number; qos?: Record<string, number | null> };

/** A node answered with a 4xx or 5xx status; `status` lets a caller tell 401 from 404. */
export class ApiError extends Error {
  override name = "ApiError";
  constructor(message: string, readonly status: number, options?: ErrorOptions) {
    super(message, options);
  }
}

/** Options of {@linkcode AtollClient}. */
export interface ClientOptions {
  /** Base URL of the node, e.g. `http://127.0.0.1:8080`. */
  url: string;
  /** Sent as `Authorization: Bearer <token>` when set. */
  token?: string | null;
  /** Time allowed for a call other than an upload, in milliseconds. */
  timeoutMs?: number;
}

/** Called while an upload streams, with the bytes handed to the connection so far. */
export type SentCallback = (sentBytes: number) => void;

const requestTimeoutMsDefault = 30_000;

/**
 * Client of one node.
 *
 * @example
 * ```ts
 * const client = new AtollClient({ url: "http://127.0.0.1:8080" });
 * await client.createVolume("vm1", { image: "debian-12" });
 * ```
 */
export class AtollClient {
  readonly url: string;
  readonly #token: string | null;
  readonly #timeoutMs: number;

  constructor(options: ClientOptions) {
    this.url = options.url.replace(/\/+$/, "");
    this.#token = options.token ?? null;
    this.#timeoutMs = options.timeoutMs ?? requestTimeoutMsDefault;
  }

  /** `GET /healthz`. */
  health(): Promise<{ status: string; version: string }> {
    return this.#json("Cannot check health", "GET", "/healthz");
  }

  /**
   * Streams the file at `path` as image `name` (`PUT /v1/images/{name}`), never
   * holding it whole in memory. Deno's fetch drops a Content-Length header set on
   * a stream body, so the body goes chunked; the node takes either.
   */
  async uploadImage(path: string, name: string, onSent?: SentCallback): Promise<UploadResult> {
    const action = `Cannot upload image ${JSON.stringify(name)}`;
    const file = await openFile(path, action);
    let sentBytes = 0;
    const counter = new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        controller.enqueue(chunk);
        sentBytes += chunk.length;
        onSent?.(sentBytes);
      },
    });
    try {
      const response = await this.#send(action, imagePath(name), {
        method: "PUT",
        headers: { "content-type": "application/octet-stream" },
        body: file.readable.pipeThrough(counter),
        duplex: "half",
      } as RequestInit, null);
      const result = await readJson<Omit<UploadResult, "created">>(response, action);
      return { ...result, created: response.status === 201 };
    } finally {
      // The readable closes the file once read to its end; an early answer leaves it open.
      try {
        file.close();
      } catch { /* already closed */ }
    }
  }

  /** `GET /v1/uploads`: uploads under way on the node; `timeoutMs` overrides the client's. */
  uploads(options: { timeoutMs?: number } = {}): Promise<UploadStatus[]> {
    return this.#json("Cannot list uploads", "GET", "/v1/uploads", undefined, options.timeoutMs);
  }

  /** `GET /v1/images`. */
  listImages(): Promise<ImageInfo[]> {
    return this.#json("Cannot list images", "GET", "/v1/images");
  }

  /** `GET /v1/images/{name}/info`. */
  imageInfo(name: string): Promise<ImageInfo> {
    const path = `/v1/images/${encodeURIComponent(name)}/info`;
    return this.#json(`Cannot show image ${JSON.stringify(name)}`, "GET", path);
  }

  /** `DELETE /v1/images/{name}`. */
  async deleteImage(name: string): Promise<void> {
    await this.#send(`Cannot delete image ${JSON.stringify(name)}`, imagePath(name), {
      method: "DELETE",
    });
  }

  /** `POST /v1/volumes`: a thin clone of an image or snapshot, or an empty volume. */
  createVolume(name: string, source: VolumeSource): Promise<VolumeInfo> {
    const action = `Cannot create volume ${JSON.stringify(name)}`;
    return this.#json(action, "POST", "/v1/volumes", { name, ...source });
  }

  /** `POST /v1/volumes/NAME/resize`: grows it, or with `force` shrinks it. */
  resizeVolume(name: string, size: number, force: boolean): Promise<VolumeInfo> {
    const action = `Cannot resize volume ${JSON.stringify(name)}`;
    return this.#json(action, "POST", `${volumePath(name)}/resize`, { size, force });
  }

  /** `POST /v1/volumes/NAME/rollback`: back to its snapshot; `force` even while in use. */
  rollbackVolume(name: string, snapshot: string, force: boolean): Promise<VolumeInfo> {
    const action = `Cannot roll back volume ${JSON.stringify(name)}`;
    return this.#json(action, "POST", `${volumePath(name)}/rollback`, { snapshot, force });
  }

  /** `POST /v1/volumes/NAME/flatten`: the clone no longer depends on its origin. */
  flattenVolume(name: string): Promise<VolumeInfo & { flattenedBlocks: number }> {
    const action = `Cannot flatten volume ${JSON.stringify(name)}`;
    return this.#json(action, "POST", `${volumePath(name)}/flatten`, {});
  }

  /**
   * `PATCH /v1/volumes/NAME/qos`: changes the limits `patch` names (null
   * removes one); with `replace`, `PUT`: the limits become exactly `patch`.
   */
  setVolumeQos(
    name: string,
    patch: Record<string, number | null>,
    options: { replace?: boolean } = {},
  ): Promise<VolumeInfo> {
    const action = `Cannot set the I/O limits of volume ${JSON.stringify(name)}`;
    const method = options.replace ? "PUT" : "PATCH";
    return this.#json(action, method, `${volumePath(name)}/qos`, patch);
  }

  /** `GET /v1/volumes`. */
  listVolumes(): Promise<VolumeInfo[]> {
    return this.#json("Cannot list volumes", "GET", "/v1/volumes");
  }

  /** `GET /v1/volumes/{name}`. */
  volumeInfo(name: string): Promise<VolumeInfo> {
    return this.#json(`Cannot show volume ${JSON.stringify(name)}`, "GET", volumePath(name));
  }

  /** `DELETE /v1/volumes/{name}`; with `cascade`, its snapshots go too. */
  async deleteVolume(name: string, options: { cascade?: boolean } = {}): Promise<void> {
    const query = options.cascade ? "?cascade=true" : "";
    await this.#send(`Cannot delete volume ${JSON.stringify(name)}`, volumePath(name) + query, {
      method: "DELETE",
    });
  }

  /**
   * `POST /v1/volumes/{name}/lease`: `acquire` moves the write lease to the node
   * asked (a hypervisor's pre-migrate hook), `break` frees it from a dead holder.
   */
  changeLease(name: string, action: "acquire" | "break"): Promise<VolumeInfo> {
    const what = action === "acquire" ? "move the lease of" : "break the lease of";
    return this.#json(
      `Cannot ${what} volume ${JSON.stringify(name)}`,
      "POST",
      `${volumePath(name)}/lease`,
      { action },
      60_000,
    );
  }

  /** `GET /v1/volumes/{name}/changes`: extents changed since a snapshot (to another, or now). */
  volumeChanges(name: string, since: string, until?: string): Promise<ChangeList> {
    const query = new URLSearchParams({ since, ...(until === undefined ? {} : { until }) });
    const action = `Cannot list the changes of volume ${JSON.stringify(name)}`;
    return this.#json(action, "GET", `${volumePath(name)}/changes?${query}`);
  }

  /** `POST /v1/volumes/{volume}/snapshots`. */
  createSnapshot(volume: string, name: string): Promise<SnapshotInfo> {
    const action = `Cannot create snapshot ${JSON.stringify(`${volume}@${name}`)}`;
    return this.#json(action, "POST", `${volumePath(volume)}/snapshots`, { name });
  }

  /** `GET /v1/volumes/{volume}/snapshots`. */
  listSnapshots(volume: string): Promise<SnapshotInfo[]> {
    const action = `Cannot list snapshots of volume ${JSON.stringify(volume)}`;
    return this.#json(action, "GET", `${volumePath(volume)}/snapshots`);
  }

  /** `DELETE /v1/volumes/{volume}/snapshots/{name}`. */
  async deleteSnapshot(volume: string, name: string): Promise<void> {
    const action = `Cannot delete snapshot ${JSON.stringify(`${volume}@${name}`)}`;
    const path = `${volumePath(volume)}/snapshots/${encodeURIComponent(name)}`;
    await this.#send(action, path, { method: "DELETE" });
  }

  /** `POST /v1/cluster/members/{id}/lost`. */
  async declareLost(id: string): Promise<void> {
    const action = `Cannot declare member ${JSON.stringify(id)} lost`;
    await this.#json(action, "POST", `/v1/cluster/members/${encodeURIComponent(id)}/lost`);
  }

  /** `GET /v1/cluster`. */
  cluster(): Promise<ClusterStatus> {
    return this.#json("Cannot show cluster status", "GET", "/v1/cluster");
  }

  /**
   * A JSON call whose answer the caller reads (a backup's stream of progress
   * lines): no time limit once connected; throws ApiError on a 4xx/5xx answer.
   */
  call(action: string, method: string, path: string, body?: unknown): Promise<Response> {
    const headers = { "content-type": "application/json", accept: "application/x-ndjson" };
    const init: RequestInit = { method, headers, body: JSON.stringify(body) };
    return this.#send(action, path, init, null);
  }

  async #json<T>(
    action: string,
    method: string,
    path: string,
    body?: unknown,
    timeoutMs = this.#timeoutMs,
  ): Promise<T> {
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.headers = { "content-type": "application/json" };
      init.body = JSON.stringify(body);
    }
    return await readJson<T>(await this.#send(action, path, init, timeoutMs), action);
  }

  /**
   * Sends a request; throws ApiError on a 4xx/5xx answer, Error when the node
   * cannot be reached or does not answer within `timeoutMs` (null: no limit).
   */
  async #send(
    action: string,
    path: string,
    init: RequestInit,
    timeoutMs: number | null = this.#timeoutMs,
  ): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.#token !== null) headers.set("authorization", `Bearer ${this.#token}`);
    const signal = timeoutMs === null ? undefined : AbortSignal.timeout(timeoutMs);
    let response: Response;
    try {
      response = await fetch(this.url + path, { ...init, headers, signal });
    } catch (cause) {
      if (cause instanceof DOMException && cause.name === "TimeoutError") {
        const seconds = (timeoutMs ?? 0) / 1000;
        const message = `${action}: the node at ${this.url} did not answer within ${seconds} s`;
        throw new Error(message, { cause });
      }
      const { text, connecting } = fetchFailure(cause);
      if (connecting) throw new Error(`Cannot reach node at ${this.url}: ${text}`, { cause });
      throw new Error(`${action}: ${text}`, { cause });
    }
    if (response.ok) return response;
    const detail = await errorText(response);
    throw new ApiError(joinMessages(action, detail), response.status);
  }
}

function imagePath(name: string): string {
  return `/v1/images/${encodeURIComponent(name)}`;
}

function volumePath(name: string): string {
  return `/v1/volumes/${encodeURIComponent(name)}`;
}

async function openFile(path: string, action: string): Promise<Deno.FsFile> {
  try {
    return await Deno.open(path);
  } catch (cause) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    throw new Error(`${action}: cannot open ${path}: ${reason}`, { cause });
  }
}

async function readJson<T>(response: Response, action: string): Promise<T> {
  try {
    return await response.json() as T;
  } catch (cause) {
    throw new Error(`${action}: the node's answer is not JSON`, { cause });
  }
}

/** The `error` text of a JSON error answer, or the status line when there is none. */
async function errorText(response: Response): Promise<string> {
  const fallback = `HTTP ${response.status} ${response.statusText}`.trim();
  const text = await response.text().catch(() => "");
  try {
    const error = JSON.parse(text)?.error;
    if (typeof error === "string" && error !== "") return error;
  } catch { /* not JSON */ }
  return fallback;
}

/**
 * Joins what was attempted with the node's message, Go-style. The node's
 * messages already read "Cannot <action>: <state>"; one that repeats the action
 * is used alone, and another's "Cannot" is lowered so the line reads as one chain.
 */
export function joinMessages(action: string, detail: string): string {
  if (detail.startsWith(action)) return detail;
  return `${action}: ${detail.replace(/^Cannot /, "cannot ")}`;
}

/**
 * The useful part of a fetch failure, without Deno's "error sending request for
 * url (...)", and whether it happened while connecting (Deno says "(Connect)",
 * names DNS, or refuses the port itself) rather than later in the exchange.
 */
function fetchFailure(error: unknown): { text: string; connecting: boolean } {
  let text = error instanceof Error ? error.message : String(error);
  if (error instanceof Error && error.cause instanceof Error) text = error.cause.message;
  text = text.replace(/^error sending request for url \([^)]*\): /, "");
  const connecting = /\(Connect\)|dns error|are blocked/.test(text);
  return { text: text.replace(/^client error \(Connect\): /, ""), connecting };
}

/** What `GET /v1/cluster` answers: members, and in a cluster replication and healing. */
export interface ClusterStatus {
  members: MemberInfo[];
  replicas?: number;
  deadGraceMs?: number;
  /** Members declared lost (their copies given up). */
  lost?: string[];
  healing?: {
    passes: number;
    walks: number;
    lastPassMs: number;
    underReplicated: number;
    blocksCopied: number;
    objectsCopied: number;
    blocksHandedOff: number;
    errors: number;
    lastError: string | null;
  };
}
