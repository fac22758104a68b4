/**
 * Reusable buffers for payloads (NBD requests and replies, large frames between
 * nodes). A fresh buffer per request pays first-touch page faults on every
 * byte (a new 1 MiB array per NBD read cut sequential reads to ~0.15× nbdkit;
 * a fresh 1 MiB array cost ~0.3 ms on the first machine, five times its copy,
 * and 2.5–2.8 ms on a later one, seventy: decisions.md, "Fetched pages through
 * reused buffers"), so buffers are kept in size classes and handed out again.
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

/** Bytes of a memory page: where the buffer of a direct write must start (_direct_writes.ts). */
export const pageBytes = 4096;

/**
 * Where the memory of each buffer asked about starts: asking FFI took about
 * a microsecond, a tenth of a cached 4 KiB read (_file_io.ts, readCached). A
 * fixed-length ArrayBuffer's memory never moves while it lives; a detached or
 * resizable one is not kept (a WebAssembly memory that grows detaches the old).
 */
const bufferAddresses = new WeakMap<ArrayBufferLike, bigint>();

/** The address of `view`'s first byte; null where it cannot be known (no FFI allowed). */
export function addressOf(view: Uint8Array): bigint | null {
  const buffer = view.buffer;
  const base = bufferAddresses.get(buffer);
  if (base !== undefined) return base + BigInt(view.byteOffset);
  let address: bigint;
  try {
    address = Deno.UnsafePointer.value(Deno.UnsafePointer.of(view as Uint8Array<ArrayBuffer>));
  } catch {
    return null;
  }
  const fixed = !(buffer as ArrayBuffer).resizable && !(buffer as ArrayBuffer).detached;
  if (fixed && view.length > 0) {
    bufferAddresses.set(buffer, address - BigInt(view.byteOffset));
  }
  return address;
}

/** True when `view` starts a memory page (a direct write can take it as it is). */
export function startsPage(view: Uint8Array): boolean {
  const address = addressOf(view);
  return address !== null && address % BigInt(pageBytes) === 0n;
}

/**
 * `length` bytes of `buffer` (`slack` bytes longer than needed: a page or
 * none) placed so that byte `alignAt` of the view starts a page, when it can.
 * A plain ArrayBuffer from the allocator starts 16 bytes past a page here.
 */
function placed(buffer: ArrayBuffer, length: number, slack: number, alignAt: number): Uint8Array {
  if (slack === 0) return new Uint8Array(buffer, 0, length);
  const address = addressOf(new Uint8Array(buffer));
  if (address === null) return new Uint8Array(buffer, 0, length);
  const page = BigInt(pageBytes);
  const offset = Number((page - (address + BigInt(alignAt)) % page) % page);
  return new Uint8Array(buffer, offset, length);
}

/**
 * `bytes` bytes starting a page where that can be known, in a plain (transferable) ArrayBuffer.
 * Direct writes' own staging buffers are WebAssembly memory instead (_direct_writes.ts): they
 * must start a page also where the address cannot be read (no FFI), and are never transferred.
 */
export function pageAligned(bytes: number): Uint8Array {
  return placed(new ArrayBuffer(bytes + pageBytes), bytes, pageBytes, 0);
}

/**
 * Free lists of buffers by size class, shared by the connections of a server:
 * at most `pooledBytesMax` bytes are kept in all, and no single buffer larger
 * than `bufferBytesMax` (rare huge requests allocate and let go). With
 * `pageAligned`, each buffer is a page longer than its class and a view can
 * be asked to start a page at a given byte (where a frame's data begins, so
 * that a direct write takes it without a copy).
 */
export class BufferPool {
  #free = new Map<number, ArrayBuffer[]>();
  #pooledBytes = 0;
  readonly #slack: number;

  constructor(
    readonly pooledBytesMax: number,
    readonly bufferBytesMax: number,
    options: { pageAligned?: boolean } = {},
  ) {
    this.#slack = options.pageAligned === true ? pageBytes : 0;
  }

  /**
   * A buffer of exactly `length` bytes (a view of a pooled, class-sized one);
   * in a page-aligned pool, its byte `alignAt` starts a page.
   */
  acquire(length: number, alignAt = 0): Uint8Array {
    const size = classOf(length);
    let buffer = this.#free.get(size)?.pop();
    if (buffer === undefined) buffer = new ArrayBuffer(size + this.#slack);
    else this.#pooledBytes -= size;
    return placed(buffer, length, this.#slack, alignAt);
  }

  /** Gives a buffer from acquire() back; the caller must not use it afterwards. */
  release(view: Uint8Array): void {
    const buffer = view.buffer as ArrayBuffer;
    const size = buffer.byteLength - this.#slack;
    assert(size === classOf(size), "only pooled buffers come back");
    if (size > this.bufferBytesMax) return;
    if (this.#pooledBytes + size > this.pooledBytesMax) return;
    let list = this.#free.get(size);
    if (list === undefined) this.#free.set(size, list = []);
    list.push(buffer);
    this.#pooledBytes += size;
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
