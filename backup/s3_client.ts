/**
 * The few S3 calls backups need (HEAD, PUT, GET, DELETE, ListObjectsV2), on one
 * bucket, signed with SigV4 by aws4fetch (a small, well-kept fetch wrapper:
 * WebCrypto, no dependencies, retries 5xx and 429 with back-off). Listings are
 * S3's XML, read with fast-xml-parser.
 *
 * A PUT may state its body's SHA-256 (`x-amz-content-sha256`): the store then
 * refuses bytes that do not match it, so a content block's name is checked by
 * the store itself as it arrives.
 */
import { AwsClient } from "aws4fetch";
import { XMLParser } from "fast-xml-parser";
import { s3RequestTimeoutMs } from "./limits.ts";

/** What signs and where it goes: see credentials.ts. */
export interface S3Config {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  region: string;
  /** `https://s3.REGION.amazonaws.com` or an S3-compatible store's URL. */
  endpoint: string;
  /** Bucket in the path (`endpoint/bucket/key`); else in the host name (AWS). */
  pathStyle: boolean;
}

/** One listed object. */
export interface S3Object {
  key: string;
  sizeBytes: number;
  /** Milliseconds since the epoch, by the store's clock. */
  lastModifiedMs: number;
}

/** A request the store refused (status and its error code), or one that got no answer. */
export class S3Error extends Error {
  override name = "S3Error";
  readonly status: number;
  constructor(message: string, status: number, options?: ErrorOptions) {
    super(message, options);
    this.status = status;
  }
}

const xml = new XMLParser({ isArray: (name) => name === "Contents" || name === "CommonPrefixes" });

/** A client of one bucket. */
export class S3Bucket {
  readonly bucket: string;
  #client: AwsClient;
  #base: string;

  constructor(config: S3Config, bucket: string) {
    this.bucket = bucket;
    this.#client = new AwsClient({
      accessKeyId: config.accessKeyId,
      secretAccessKey: config.secretAccessKey,
      sessionToken: config.sessionToken,
      service: "s3",
      region: config.region,
      retries: 4,
    });
    const endpoint = new URL(config.endpoint);
    this.#base = config.pathStyle
      ? `${endpoint.origin}${endpoint.pathname.replace(/\/$/, "")}/${bucket}`
      : `${endpoint.protocol}//${bucket}.${endpoint.host}`;
  }

  /** Size and age of `key`, or null when it does not exist. */
  async head(key: string): Promise<S3Object | null> {
    const response = await this.#send("HEAD", key);
    if (response.status === 404) return null;
    await this.#check(response, "HEAD", key);
    return {
      key,
      sizeBytes: Number(response.headers.get("content-length") ?? 0),
      lastModifiedMs: Date.parse(response.headers.get("last-modified") ?? ""),
    };
  }

  /**
   * Stores `body` at `key`. With `sha256` (lowercase hex of the body's
   * SHA-256), the store checks the bytes against it and refuses a mismatch.
   */
  async put(key: string, body: Uint8Array, options: { sha256?: string } = {}): Promise<void> {
    const headers: Record<string, string> = { "content-type": "application/octet-stream" };
    if (options.sha256 !== undefined) headers["x-amz-content-sha256"] = options.sha256;
    const response = await this.#send("PUT", key, { body, headers });
    await this.#check(response, "PUT", key);
    await response.body?.cancel();
  }

  /** The bytes at `key`, or null when it does not exist. */
  async get(key: string): Promise<Uint8Array | null> {
    const response = await this.#send("GET", key);
    if (response.status === 404) {
      await response.body?.cancel();
      return null;
    }
    await this.#check(response, "GET", key);
    return new Uint8Array(await response.arrayBuffer());
  }

  /** Removes `key`; removing a missing key is not an error. */
  async delete(key: string): Promise<void> {
    const response = await this.#send("DELETE", key);
    if (response.status !== 404) await this.#check(response, "DELETE", key);
    await response.body?.cancel();
  }

  /** Every object whose key starts with `prefix`, in key order, a page at a time. */
  async *list(prefix: string): AsyncIterable<S3Object> {
    let token: string | null = null;
    do {
      const query = new URLSearchParams({ "list-type": "2", prefix });
      if (token !== null) query.set("continuation-token", token);
      const response = await this.#send("GET", "", { query });
      await this.#check(response, "LIST", prefix);
      const result = xml.parse(await response.text()).ListBucketResult;
      if (result === undefined) throw new S3Error(`Cannot list "${prefix}": not a listing`, 502);
      for (const item of result.Contents ?? []) {
        yield {
          key: String(item.Key),
          sizeBytes: Number(item.Size),
          lastModifiedMs: Date.parse(item.LastModified),
        };
      }
      token = String(result.IsTruncated) === "true" ? String(result.NextContinuationToken) : null;
    } while (token !== null);
  }

  /** Creates the bucket (tests, benchmarks); an existing bucket of ours is not an error. */
  async createBucket(): Promise<void> {
    const response = await this.#send("PUT", "");
    if (response.status === 409) {
      const text = await response.text();
      if (text.includes("BucketAlreadyOwnedByYou")) return;
      throw new S3Error(`Cannot create bucket ${this.bucket}: ${text}`, 409);
    }
    await this.#check(response, "PUT", "");
    await response.body?.cancel();
  }

  /** The store's clock now (its `Date` header), in milliseconds since the epoch. */
  async now(): Promise<number> {
    const response = await this.#send("HEAD", "");
    await response.body?.cancel();
    const date = Date.parse(response.headers.get("date") ?? "");
    if (Number.isNaN(date)) throw new S3Error(`Cannot read the time of ${this.#base}`, 502);
    return date;
  }

  async #send(
    method: string,
    key: string,
    options: { body?: Uint8Array; headers?: Record<string, string>; query?: URLSearchParams } = {},
  ): Promise<Response> {
    const path = key === "" ? "/" : "/" + key.split("/").map(encodeURIComponent).join("/");
    const url = `${this.#base}${path}${options.query ? `?${options.query}` : ""}`;
    try {
      return await this.#client.fetch(url, {
        method,
        body: options.body as BodyInit | undefined,
        headers: options.headers,
        signal: AbortSignal.timeout(s3RequestTimeoutMs),
      });
    } catch (error) {
      throw new S3Error(`Cannot ${method} ${url}: ${(error as Error).message}`, 503, {
        cause: error,
      });
    }
  }

  async #check(response: Response, method: string, key: string): Promise<void> {
    if (response.ok) return;
    const text = method === "HEAD" ? "" : await response.text().catch(() => "");
    const code = text === "" ? response.statusText : xml.parse(text)?.Error?.Code ?? text;
    throw new S3Error(
      `Cannot ${method} s3://${this.bucket}/${key}: ${response.status} ${code}`,
      response.status,
    );
  }
}
