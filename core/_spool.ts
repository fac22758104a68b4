/**
 * A spooled upload: a request body written whole to a temporary file, so that
 * a format whose tables may point anywhere in the file (qcow2) can be read at
 * random. The file lives in the node's spool directory (`DATA/tmp/`, which the
 * local engine empties at start, so a crash leaves nothing behind) and is
 * removed when the upload ends, stored or not.
 */
import { open as openFile, rm } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { assert } from "./assert.ts";
import { TruncatedError } from "./errors.ts";

/** Options of {@linkcode Spool.write}. */
export interface SpoolOptions {
  /** Directory of the temporary file; the system's temporary directory when null. */
  dir: string | null;
  /** The announced length; a body that ends early or runs over throws. */
  expectedBytes: number | null;
  /** Longest body taken (a RangeError past it). */
  bytesMax: number;
  /** Called with the bytes written so far, after each chunk. */
  onBytes?: (bytes: number) => void;
}

let spoolSerial = 0;

/** A body written to a temporary file, read back at any offset, removed by close(). */
export class Spool {
  readonly path: string;
  readonly sizeBytes: number;
  #file: FileHandle;
  #closed = false;

  private constructor(path: string, file: FileHandle, sizeBytes: number) {
    this.path = path;
    this.#file = file;
    this.sizeBytes = sizeBytes;
  }

  /**
   * Writes `body` whole to a new temporary file. Throws TruncatedError when it
   * ends before `expectedBytes`, RangeError when it runs past it or `bytesMax`;
   * the file is gone when it throws.
   */
  static async write(body: AsyncIterable<Uint8Array>, options: SpoolOptions): Promise<Spool> {
    const dir = options.dir ?? Deno.env.get("TMPDIR") ?? "/tmp";
    const path = join(dir, `spool.${Deno.pid}.${++spoolSerial}.${crypto.randomUUID()}`);
    const limit = Math.min(options.expectedBytes ?? options.bytesMax, options.bytesMax);
    const file = await openFile(path, "wx+", 0o600);
    let bytes = 0;
    try {
      for await (const chunk of body) {
        if (bytes + chunk.length > limit) {
          throw new RangeError(
            `the body runs past ${limit} bytes` +
              (options.expectedBytes === null ? " (the size limit)" : " (its announced length)"),
          );
        }
        let written = 0;
        while (written < chunk.length) {
          const { bytesWritten } = await file.write(chunk, written, chunk.length - written, bytes);
          written += bytesWritten;
          bytes += bytesWritten;
        }
        options.onBytes?.(bytes);
      }
      if (options.expectedBytes !== null && bytes !== options.expectedBytes) {
        throw new TruncatedError(
          `the body ended after ${bytes} of ${options.expectedBytes} bytes`,
        );
      }
      return new Spool(path, file, bytes);
    } catch (error) {
      await file.close().catch(() => {});
      await rm(path, { force: true });
      throw error;
    }
  }

  /**
   * Reads `range.length` bytes at `range.offset` into `into` (from its start);
   * bytes past the end of the file read as zeros, as a disk file's would.
   */
  async readInto(into: Uint8Array, range: { offset: number; length: number }): Promise<void> {
    assert(!this.#closed && range.length <= into.length && range.offset >= 0);
    const inFile = Math.max(0, Math.min(range.length, this.sizeBytes - range.offset));
    let done = 0;
    while (done < inFile) {
      const { bytesRead } = await this.#file.read(
        into,
        done,
        inFile - done,
        range.offset + done,
      );
      assert(bytesRead > 0, `the spool file ${this.path} shrank`);
      done += bytesRead;
    }
    into.fill(0, inFile, range.length);
  }

  /** Closes and removes the file; a second call does nothing. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#file.close().catch(() => {});
    await rm(this.path, { force: true });
  }
}
