/**
 * Writes of new blocks that go around the page cache (`O_DIRECT`). A block is
 * written once and read later, if ever, so caching it as it arrives buys
 * little, and every page a buffered write caches is memory to find and fill:
 * on a virtual machine whose free memory goes back to the host (virtio free
 * page reporting, as on the machines here) that cost 2.8 s of CPU a GiB, on
 * every replica (decisions.md: "The first fill and the page cache"). Ceph's
 * BlueStore writes its block device the same way. Objects stay buffered: their
 * bytes are read and overwritten soon, from the pages the write left.
 *
 * A direct write needs its offset, length and buffer aligned to the device's
 * block: the bytes are copied into one staging buffer that starts a memory page
 * (a probe write checks that the file system takes it), and only the aligned
 * prefix of a write goes direct; the
 * tail goes through the page cache. Durability does not change: the file is
 * synced before it is renamed into place, as before (`fdatasync` on any
 * descriptor of a file covers its direct writes too). File systems without
 * `O_DIRECT` (older tmpfs) and any failed direct write fall back to buffered
 * writes.
 *
 * A direct write waits for the disk: 4.5 ms for a 4 MiB block here, the event
 * loop stalled meanwhile. New blocks (`writePrefixAsync`) are written by
 * libc's `pwrite` on a worker thread (_libc.ts) from one of a few staging
 * buffers, so an upload's blocks and a replica's calls go on while they land.
 * A replica's large object changes go the same way; the object's later
 * reads and changes wait for them (_object_files.ts).
 */
import * as fs from "node:fs";
import { join } from "node:path";
import {
  type DirectWriteKind,
  directWrites,
  directWritesAvailable,
  directWritesUnstaged,
} from "../metrics/mod.ts";
import { libc } from "./_libc.ts";
import { BufferRing, startsPage } from "./buffer_pool.ts";

/** Alignment of a direct write's offset and length (a page: any device block divides it). */
const alignBytes = 4096;
/** Bytes staged and written per call. */
const stagingBytes = 4 * 1024 * 1024;
/** Shorter writes go through the page cache: a direct write waits for the disk. */
const directBytesMin = 128 * 1024;
/** Staging buffers of writes off the event loop (made as needed; a write waits for a free one). */
const asyncSlotsMax = 4;

const directFlags = fs.constants.O_WRONLY | fs.constants.O_DIRECT;

/** See the module doc. */
export class DirectWrites {
  #staging: Uint8Array;
  /** Staging buffers of writes off the event loop. */
  #slots = new BufferRing(stagingBytes, asyncSlotsMax, pageAlignedBytes);

  private constructor(staging: Uint8Array) {
    this.#staging = staging;
  }

  /**
   * Probes direct writes in directory `dir`; null when its file system refuses
   * them (`atoll_disk_direct_writes_available` says which).
   */
  static probe(dir: string): DirectWrites | null {
    const direct = DirectWrites.#probe(dir);
    directWritesAvailable.set(direct === null ? 0 : 1);
    return direct;
  }

  static #probe(dir: string): DirectWrites | null {
    const path = join(dir, "direct-probe");
    let fd: number;
    try {
      fd = fs.openSync(path, directFlags | fs.constants.O_CREAT | fs.constants.O_TRUNC, 0o644);
    } catch {
      return null;
    }
    try {
      const staging = pageAlignedBytes(stagingBytes);
      fs.writeSync(fd, staging, 0, alignBytes, 0);
      return new DirectWrites(staging);
    } catch {
      return null; // the file system refuses direct writes even from a page
    } finally {
      fs.closeSync(fd);
      fs.rmSync(path, { force: true });
    }
  }

  /** True when a write of `data` at `position` has a prefix that goes direct. */
  takes(data: Uint8Array, position: number): boolean {
    return alignedPrefix(data, position) > 0;
  }

  /**
   * Writes the aligned prefix of `data` (a `kind`, for the metrics) at
   * `position` of the existing file `path`; returns its length (0: nothing
   * written, write it all buffered).
   */
  writePrefix(path: string, data: Uint8Array, position: number, kind: DirectWriteKind): number {
    const aligned = alignedPrefix(data, position);
    if (aligned === 0) return 0;
    const fd = this.#open(path, kind);
    if (fd === null) return 0;
    try {
      for (let done = 0; done < aligned;) {
        const chunk = Math.min(stagingBytes, aligned - done);
        this.#staging.set(data.subarray(done, done + chunk));
        let wrote = 0;
        while (wrote < chunk) {
          wrote += fs.writeSync(fd, this.#staging, wrote, chunk - wrote, position + done + wrote);
        }
        done += chunk;
      }
      directWrites.inc({ kind, result: "direct" });
      return aligned;
    } catch {
      // A short or refused direct write: the caller writes the whole range buffered.
      this.#failed(kind);
      return 0;
    } finally {
      fs.closeSync(fd);
    }
  }

  /**
   * writePrefix with the write itself off the event loop (see the module doc);
   * on the event loop where libc cannot be loaded.
   */
  async writePrefixAsync(
    path: string,
    data: Uint8Array,
    position: number,
    kind: DirectWriteKind,
  ): Promise<number> {
    const aligned = alignedPrefix(data, position);
    if (aligned === 0) return 0;
    if (libc() === null) return this.writePrefix(path, data, position, kind);
    const fd = this.#open(path, kind);
    if (fd === null) return 0;
    // A caller's buffer that starts a page is written as it is (an upload's block, a
    // link's pooled body: buffer_pool.ts); any other is staged, a slot at a time.
    const slot = startsPage(data) ? null : await this.#slots.take();
    try {
      if (slot === null) {
        await pwriteAll(fd, data.subarray(0, aligned), position, path);
        directWritesUnstaged.inc({ kind });
      } else {
        for (let done = 0; done < aligned; done += stagingBytes) {
          const chunk = Math.min(stagingBytes, aligned - done);
          slot.set(data.subarray(done, done + chunk));
          await pwriteAll(fd, slot.subarray(0, chunk), position + done, path);
        }
      }
      directWrites.inc({ kind, result: "direct" });
      return aligned;
    } catch {
      this.#failed(kind); // refused or short: the caller writes the whole range buffered
      return 0;
    } finally {
      fs.closeSync(fd);
      if (slot !== null) this.#slots.release(slot);
    }
  }

  /** `path` opened for direct writes; null (counted as failed) when it cannot be. */
  #open(path: string, kind: DirectWriteKind): number | null {
    try {
      return fs.openSync(path, directFlags);
    } catch {
      this.#failed(kind);
      return null;
    }
  }

  #failed(kind: DirectWriteKind): void {
    directWrites.inc({ kind, result: "failed" });
  }
}

/** Writes all of `bytes` at `position` with libc's `pwrite` off the event loop; throws if short. */
async function pwriteAll(fd: number, bytes: Uint8Array, position: number, path: string) {
  const calls = libc()!;
  for (let wrote = 0; wrote < bytes.length;) {
    const at = position + wrote;
    const n = await calls.pwrite(
      fd,
      bytes.subarray(wrote),
      BigInt(bytes.length - wrote),
      BigInt(at),
    );
    if (n <= 0) throw new Error(`direct write of ${path} at ${at}: ${n}`);
    wrote += Number(n);
  }
}

/** Bytes of `data` written direct at `position`: its aligned prefix, or 0 (write it buffered). */
function alignedPrefix(data: Uint8Array, position: number): number {
  const aligned = data.length - data.length % alignBytes;
  return position % alignBytes !== 0 || aligned < directBytesMin ? 0 : aligned;
}

/**
 * `bytes` bytes whose first starts a memory page. The kernel takes a direct write
 * from any buffer aligned to the device's logical block (512 bytes here), but one
 * that does not start a page is split into many small requests: 60 ms for 4 MiB
 * against 2.4 ms from a page-aligned buffer on this machine (dd: 3.3 ms). A plain
 * ArrayBuffer of that size comes from malloc, 16 bytes past a page (an earlier
 * probe stepped 496 bytes in to reach 512-byte alignment); the memory of a
 * WebAssembly instance is mapped whole, from a page.
 */
function pageAlignedBytes(bytes: number): Uint8Array {
  const wasmPageBytes = 64 * 1024;
  const memory = new WebAssembly.Memory({ initial: Math.ceil(bytes / wasmPageBytes) });
  return new Uint8Array(memory.buffer, 0, bytes);
}
