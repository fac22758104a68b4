/**
 * A request body as a byte stream read from the connection as the handler
 * pulls it, never buffered whole (image uploads are GiB-sized): Content-Length
 * bodies and chunked ones. Each pull reads into the chunk the stream hands out
 * (a BYOB reader's own buffer, or a fresh one), so bytes are not copied twice.
 */
import type { HttpConn } from "./_http_conn.ts";
import { HttpRequestError } from "./_http_head.ts";
import { chunkLineBytesMax, headBytesMax } from "./limits.ts";

/** Bytes one pull reads at most when the reader brings no buffer of its own. */
const chunkBytes = 256 * 1024;

/** A request body being read; `stream` is what the Request carries. */
export class RequestBody {
  readonly stream: ReadableStream<Uint8Array<ArrayBuffer>>;
  /** Every byte of the body came off the connection: it may carry another request. */
  complete = false;
  /** A read from the connection is under way (nothing else may read it meanwhile). */
  reading = false;
  #http: HttpConn;
  #before: (() => Promise<void>) | null;
  #received = 0;
  /** Content-Length bodies: bytes still to come. Chunked: bytes left of the current chunk. */
  #left: number;
  #chunked: boolean;
  #chunks = 0;

  /**
   * `beforeFirstRead` runs before the first byte is read (it sends `100 Continue`
   * to a client that waits for it, so a body nobody reads is never sent).
   */
  constructor(
    http: HttpConn,
    framing: { kind: "length"; bytes: number } | { kind: "chunked" },
    beforeFirstRead: (() => Promise<void>) | null,
  ) {
    this.#http = http;
    this.#before = beforeFirstRead;
    this.#chunked = framing.kind === "chunked";
    this.#left = framing.kind === "length" ? framing.bytes : 0;
    this.stream = new ReadableStream({
      type: "bytes",
      autoAllocateChunkSize: framing.kind === "length"
        ? Math.min(chunkBytes, framing.bytes)
        : chunkBytes,
      pull: (controller) => this.#pull(controller),
    });
  }

  async #pull(controller: ReadableByteStreamController): Promise<void> {
    const request = controller.byobRequest!;
    const view = new Uint8Array(
      request.view!.buffer,
      request.view!.byteOffset,
      request.view!.byteLength,
    );
    this.reading = true;
    try {
      if (this.#before !== null) {
        const before = this.#before;
        this.#before = null;
        await before();
      }
      if (this.#chunked && this.#left === 0 && !await this.#nextChunk()) {
        this.complete = true;
        controller.close();
        request.respond(0);
        return;
      }
      const n = await this.#http.readBody(view.subarray(0, Math.min(view.length, this.#left)));
      if (n === 0) {
        throw new TypeError(
          `Cannot read request body: the connection ended after ${this.#received} bytes`,
        );
      }
      this.#received += n;
      this.#left -= n;
      request.respond(n);
      if (!this.#chunked && this.#left === 0) {
        this.complete = true;
        controller.close();
      }
    } finally {
      this.reading = false;
    }
  }

  /** Reads the next chunk's size line; false after the last chunk and the trailers. */
  async #nextChunk(): Promise<boolean> {
    if (this.#chunks++ > 0 && await this.#http.readLine(2) !== "") {
      throw new HttpRequestError(400, "Cannot read request body: a chunk runs past its size");
    }
    const line = await this.#http.readLine(chunkLineBytesMax);
    const size = line.match(/^([0-9a-fA-F]{1,13})[ \t]*(?:;.*)?$/)?.[1];
    if (size === undefined) {
      throw new HttpRequestError(400, "Cannot read request body: malformed chunk size");
    }
    this.#left = parseInt(size, 16);
    if (this.#left > 0) return true;
    // Trailer fields are read and dropped: nothing here uses them.
    for (let bytes = 0; bytes <= headBytesMax;) {
      const trailer = await this.#http.readLine(chunkLineBytesMax);
      if (trailer === "") return false;
      bytes += trailer.length + 2;
    }
    throw new HttpRequestError(
      431,
      `Cannot read request body: trailers over ${headBytesMax} bytes`,
    );
  }
}
