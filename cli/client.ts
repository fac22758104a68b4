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
import { NodeHttp, readJson } from "./_node_http.ts";

export { ApiError, joinMessages } from "./_node_http.ts";

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
  readonly #http: NodeHttp;

  constructor(options: ClientOptions) {
    this.#http = new NodeHttp(
      options.url.replace(/\/+$/, ""),
      options.token ?? null,
      options.timeoutMs ?? requestTimeoutMsDefault,
    );
    this.url = this.#http.url;
  }

  /** `GET /healthz`. */
  health(): Promise<{ status: string; version: string }> {
    return this.#http.json("Cannot check health", "GET", "/healthz");
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
      const response = await this.#http.send(action, imagePath(name), {
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
    return this.#http.json(
      "Cannot list uploads",
      "GET",
      "/v1/uploads",
      undefined,
      options.timeoutMs,
    );
  }

  /** `GET /v1/images`. */
  listImages(): Promise<ImageInfo[]> {
    return this.#http.json("Cannot list images", "GET", "/v1/images");
  }

  /** `GET /v1/images/{name}/info`. */
  imageInfo(name: string): Promise<ImageInfo> {
    const path = `/v1/images/${encodeURIComponent(name)}/info`;
    return this.#http.json(`Cannot show image ${JSON.stringify(name)}`, "GET", path);
  }

  /** `DELETE /v1/images/{name}`. */
  async deleteImage(name: string): Promise<void> {
    await this.#http.send(`Cannot delete image ${JSON.stringify(name)}`, imagePath(name), {
      method: "DELETE",
    });
  }

  /** `POST /v1/volumes`: a thin clone of an image or snapshot, or an empty volume. */
  createVolume(name: string, source: VolumeSource): Promise<VolumeInfo> {
    const action = `Cannot create volume ${JSON.stringify(name)}`;
    return this.#http.json(action, "POST", "/v1/volumes", { name, ...source });
  }

  /** `POST /v1/volumes/NAME/resize`: grows it, or with `force` shrinks it. */
  resizeVolume(name: string, size: number, force: boolean): Promise<VolumeInfo> {
    const action = `Cannot resize volume ${JSON.stringify(name)}`;
    return this.#http.json(action, "POST", `${volumePath(name)}/resize`, { size, force });
  }

  /** `POST /v1/volumes/NAME/rollback`: back to its snapshot; `force` even while in use. */
  rollbackVolume(name: string, snapshot: string, force: boolean): Promise<VolumeInfo> {
    const action = `Cannot roll back volume ${JSON.stringify(name)}`;
    return this.#http.json(action, "POST", `${volumePath(name)}/rollback`, { snapshot, force });
  }

  /** `POST /v1/volumes/NAME/flatten`: the clone no longer depends on its origin. */
  flattenVolume(name: string): Promise<VolumeInfo & { flattenedBlocks: number }> {
    const action = `Cannot flatten volume ${JSON.stringify(name)}`;
    return this.#http.json(action, "POST", `${volumePath(name)}/flatten`, {});
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
    return this.#http.json(action, method, `${volumePath(name)}/qos`, patch);
  }

  /** `GET /v1/volumes`. */
  listVolumes(): Promise<VolumeInfo[]> {
    return this.#http.json("Cannot list volumes", "GET", "/v1/volumes");
  }

  /** `GET /v1/volumes/{name}`. */
  volumeInfo(name: string): Promise<VolumeInfo> {
    return this.#http.json(`Cannot show volume ${JSON.stringify(name)}`, "GET", volumePath(name));
  }

  /** `DELETE /v1/volumes/{name}`; with `cascade`, its snapshots go too. */
  async deleteVolume(name: string, options: { cascade?: boolean } = {}): Promise<void> {
    const query = options.cascade ? "?cascade=true" : "";
    await this.#http.send(
      `Cannot delete volume ${JSON.stringify(name)}`,
      volumePath(name) + query,
      {
        method: "DELETE",
      },
    );
  }

  /**
   * `POST /v1/volumes/{name}/lease`: `acquire` moves the write lease to the node
   * asked (a hypervisor's pre-migrate hook), `break` frees it from a dead holder.
   */
  changeLease(name: string, action: "acquire" | "break"): Promise<VolumeInfo> {
    const what = action === "acquire" ? "move the lease of" : "break the lease of";
    return this.#http.json(
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
    return this.#http.json(action, "GET", `${volumePath(name)}/changes?${query}`);
  }

  /** `POST /v1/volumes/{volume}/snapshots`. */
  createSnapshot(volume: string, name: string): Promise<SnapshotInfo> {
    const action = `Cannot create snapshot ${JSON.stringify(`${volume}@${name}`)}`;
    return this.#http.json(action, "POST", `${volumePath(volume)}/snapshots`, { name });
  }

  /** `GET /v1/volumes/{volume}/snapshots`. */
  listSnapshots(volume: string): Promise<SnapshotInfo[]> {
    const action = `Cannot list snapshots of volume ${JSON.stringify(volume)}`;
    return this.#http.json(action, "GET", `${volumePath(volume)}/snapshots`);
  }

  /** `DELETE /v1/volumes/{volume}/snapshots/{name}`. */
  async deleteSnapshot(volume: string, name: string): Promise<void> {
    const action = `Cannot delete snapshot ${JSON.stringify(`${volume}@${name}`)}`;
    const path = `${volumePath(volume)}/snapshots/${encodeURIComponent(name)}`;
    await this.#http.send(action, path, { method: "DELETE" });
  }

  /** `POST /v1/cluster/members/{id}/lost`. */
  async declareLost(id: string): Promise<void> {
    const action = `Cannot declare member ${JSON.stringify(id)} lost`;
    await this.#http.json(action, "POST", `/v1/cluster/members/${encodeURIComponent(id)}/lost`);
  }

  /** `GET /v1/cluster`. */
  cluster(): Promise<ClusterStatus> {
    return this.#http.json("Cannot show cluster status", "GET", "/v1/cluster");
  }

  /**
   * A JSON call whose answer the caller reads (a backup's stream of progress
   * lines): no time limit once connected; throws ApiError on a 4xx/5xx answer.
   */
  call(action: string, method: string, path: string, body?: unknown): Promise<Response> {
    const headers = { "content-type": "application/json", accept: "application/x-ndjson" };
    const init: RequestInit = { method, headers, body: JSON.stringify(body) };
    return this.#http.send(action, path, init, null);
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
