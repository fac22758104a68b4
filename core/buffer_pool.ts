/**
 * Reusable buffers for payloads (NBD requests and replies, large frames between
 * nodes). A fresh buffer per request pays first-touch page faults on every
 * byte (a new 1 MiB array per NBD read cut sequential reads to ~0.15× nbdkit;
 * a fresh 1 MiB array costs ~0.3 ms here, five times its copy), so buffers are
 * kept in size classes and handed out again.
 *
 * The classes are the powers of two up to 1 MiB, and above it eight steps
 * between one power and the next: a frame between nodes carrying a 4 MiB
 * block is a few dozen bytes over 4 MiB (its method and header), and took an
 * 8 MiB class, zeroed on allocation and twice the memory, when powers of two
 * were the only classes.
 */
import { assert } from "./assert.ts";

const classMinBytes = 4096;
/** Above this size, classes come in eighths of a power of two. */
const classStepsFromBytes = 1024 * 1024;

/**
 * Free lists of buffers by size class, shared by the connections of a server:
 * at most `pooledBytesMax` bytes are kept in all, and no single buffer larger
 * than `bufferBytesMax` (rare huge requests allocate and let go).
 */
export class BufferPool {
  #free = new Map<number, Uint8Array[]>();
  #pooledBytes = 0;

  constructor(readonly pooledBytesMax: number, readonly bufferBytesMax: number) {}

  /** A buffer of exactly `length` bytes (a view of a pooled, class-sized one). */
  acquire(length: number): Uint8Array {
    const size = classOf(length);
    const buffer = this.#free.get(size)?.pop();
    if (buffer === undefined) return new Uint8Array(size).subarray(0, length);
    this.#pooledBytes -= size;
    return buffer.subarray(0, length);
  }

  /** Gives a buffer from acquire() back; the caller must not use it afterwards. */
  release(view: Uint8Array): void {
    const whole = new Uint8Array(view.buffer);
    assert(whole.length === classOf(whole.length), "only pooled buffers come back");
    if (whole.length > this.bufferBytesMax) return;
    if (this.#pooledBytes + whole.length > this.pooledBytesMax) return;
    let list = this.#free.get(whole.length);
    if (list === undefined) this.#free.set(whole.length, list = []);
    list.push(whole);
    this.#pooledBytes += whole.length;
  }
}

/** The smallest class holding `length` bytes (see the module doc). */
export function classOf(length: number): number {
  let size = classMinBytes;
  while (size < length) size *= 2;
  if (size <= classStepsFromBytes) return size;
  const step = size / 16; // eight steps from size / 2 to size
  return Math.ceil(length / step) * step;
}

/**
 * A fixed set of reusable buffers of one size, made as needed up to
 * `countMax`: a taker waits for one given back once all are out. Fresh
 * buffers pay page faults on first touch (an upload's block buffers), or are
 * costly to make (page-aligned staging for direct writes).
 */
export class BufferRing {
  #free: Uint8Array[] = [];
  #waiters: ((buffer: Uint8Array) => void)[] = [];
  #made = 0;

  constructor(
    readonly bytes: number,
    readonly countMax: number,
    readonly make: (bytes: number) => Uint8Array = (bytes) => new Uint8Array(bytes),
  ) {}

  take(): Promise<Uint8Array> {
    const free = this.#free.pop();
    if (free !== undefined) return Promise.resolve(free);
    if (this.#made < this.countMax) {
      this.#made++;
      return Promise.resolve(this.make(this.bytes));
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Gives back a buffer from take() (or one that replaces it, of the same size). */
  release(buffer: Uint8Array): void {
    assert(buffer.length === this.bytes);
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) waiter(buffer);
    else this.#free.push(buffer);
  }
}
