/**
 * The raw disk an upload's body describes: the body itself when it is raw, or
 * the disk a qcow2 body holds, converted here on the node so that a plain
 * `curl -T disk.qcow2` stores the disk and never the container. A qcow2's
 * tables may point anywhere in the file, so its body is spooled to a
 * temporary file first (_spool.ts) and read back in guest order
 * (_qcow2_reader.ts); the raw bytes then take the same path as a raw upload
 * (dedup, progress, limits).
 */
import { detectFormat, type DiskFormat, type UploadFormat } from "./_image_formats.ts";
import { parseQcow2Header, qcow2HeaderBytes } from "./_qcow2_header.ts";
import { qcow2Disk } from "./_qcow2_reader.ts";
import { Spool } from "./_spool.ts";
import { TruncatedError } from "./errors.ts";
import type { ZeroRun } from "./ingest.ts";
import { sectorBytes, spoolBytesMax } from "./limits.ts";

/** The raw disk of an upload, ready to be cut into blocks. */
export interface RawDisk {
  format: DiskFormat;
  /** The raw disk's bytes (runs of zeros by length, where the format says so). */
  bytes: AsyncIterable<Uint8Array | ZeroRun>;
  /** Its size when known before reading: a raw body's Content-Length, a qcow2's virtual size. */
  sizeBytes: number | null;
  /** Gives back what the conversion holds (the spooled file); call it once done, stored or not. */
  close(): Promise<void>;
}

/** Options of {@linkcode rawDisk}. */
export interface RawDiskOptions {
  format: UploadFormat;
  /** The body's announced length (Content-Length), when known. */
  expectedBytes: number | null;
  /** Where a qcow2 body is spooled (the node's `DATA/tmp/`); the system's temporary directory when null. */
  spoolDir: string | null;
  /** Start of every error message, e.g. `Cannot upload image "x"`. */
  what: string;
  /** Called as a qcow2 body is spooled, with its bytes so far. */
  onSpooled?: (bytes: number) => void;
}

/**
 * The raw disk `body` describes. Throws (a 400) before storing anything when
 * the body is a container other than qcow2, a raw body's announced length is
 * not whole sectors, or a qcow2's header is malformed or uses a feature this
 * reader refuses (backing file, encryption, external data file, zstd).
 */
export async function rawDisk(
  body: AsyncIterable<Uint8Array>,
  options: RawDiskOptions,
): Promise<RawDisk> {
  const { what, expectedBytes } = options;
  const detected = await detectFormat(body, options.format, what);
  if (detected.format === "raw") {
    if (expectedBytes !== null && expectedBytes % sectorBytes !== 0) {
      throw new TypeError(notWholeSectors(what, expectedBytes));
    }
    return { format: "raw", bytes: detected.body, sizeBytes: expectedBytes, close: async () => {} };
  }
  let spool: Spool;
  try {
    spool = await Spool.write(detected.body, {
      dir: options.spoolDir,
      expectedBytes,
      bytesMax: spoolBytesMax,
      onBytes: options.onSpooled,
    });
  } catch (error) {
    throw prefixed(error, what);
  }
  try {
    const head = new Uint8Array(Math.min(qcow2HeaderBytes, spool.sizeBytes));
    await spool.readInto(head, { offset: 0, length: head.length });
    const header = await parseQcow2Header(head, spool.sizeBytes, async (range) => {
      const name = new Uint8Array(range.length);
      await spool.readInto(name, range);
      return name;
    });
    return {
      format: "qcow2",
      bytes: converted(qcow2Disk(spool, header), what),
      sizeBytes: header.sizeBytes,
      close: () => spool.close(),
    };
  } catch (error) {
    await spool.close();
    throw prefixed(error, what);
  }
}

/** The message that refuses a disk of `bytes` that is not whole sectors. */
export function notWholeSectors(what: string, bytes: number): string {
  return `${what}: its size, ${bytes} bytes, is not a multiple of ${sectorBytes} ` +
    `(a disk is whole sectors; pad it, e.g. truncate -s %${sectorBytes} FILE)`;
}

async function* converted(
  chunks: AsyncIterable<Uint8Array | ZeroRun>,
  what: string,
): AsyncIterable<Uint8Array | ZeroRun> {
  try {
    yield* chunks;
  } catch (error) {
    throw prefixed(error, what);
  }
}

/** `error` with `what` before its message, of the same class (so of the same status). */
function prefixed(error: unknown, what: string): unknown {
  if (error instanceof Error && error.message.startsWith("Cannot ")) return error;
  if (error instanceof TruncatedError) return new TruncatedError(`${what}: ${error.message}`);
  if (error instanceof RangeError) return new RangeError(`${what}: ${error.message}`);
  if (error instanceof TypeError) return new TypeError(`${what}: ${error.message}`);
  return error;
}
