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
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { type DirectWriteKind, directWrites, directWritesAvailable } from "../metrics/mod.ts";

/** Alignment of a direct write's offset and length (a page: any device block divides it). */
const alignBytes = 4096;
/** Bytes staged and written per call. */
const stagingBytes = 4 * 1024 * 1024;
/** Shorter writes go through the page cache: a direct write waits for the disk. */
const directBytesMin = 128 * 1024;

const directFlags = fs.constants.O_WRONLY | fs.constants.O_DIRECT;

/** See the module doc. */
export class DirectWrites {
  #staging: Uint8Array;

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

  /**
   * Writes the aligned prefix of `data` (a `kind`, for the metrics) at
   * `position` of the existing file `path`; returns its length (0: nothing
   * written, write it all buffered).
   */
  writePrefix(path: string, data: Uint8Array, position: number, kind: DirectWriteKind): number {
    const aligned = data.length - data.length % alignBytes;
    if (position % alignBytes !== 0 || aligned < directBytesMin) return 0;
    let fd: number;
    try {
      fd = fs.openSync(path, directFlags);
    } catch {
      this.#failed(kind);
      return 0;
    }
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

  #failed(kind: DirectWriteKind): void {
    directWrites.inc({ kind, result: "failed" });
  }
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
