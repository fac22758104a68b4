/**
 * RADOS compound operations: a write operation (or a read operation) is built
 * in memory, then sent to the object's primary OSD as one request that applies
 * all of its steps or none. Compare-and-set of metadata and the fencing of
 * object writes rest on that: the check and the change travel together.
 */
import { cString, librados } from "./_librados.ts";
import { RadosError } from "./_errors.ts";

/** An io context: a pool and a namespace in it. */
export interface IoContext {
  readonly pointer: Deno.PointerValue;
  readonly label: string;
}

const pointerOut = () => new BigUint64Array(1);
const pointerIn = (out: BigUint64Array) => Deno.UnsafePointer.create(out[0]);

/** Steps of one atomic write; {@linkcode WriteOp.operate} sends them and releases the op. */
export class WriteOp {
  #op: Deno.PointerValue;
  /** Status words of the steps that report one (omap comparisons). */
  #statuses: Int32Array[] = [];

  constructor() {
    this.#op = librados().rados_create_write_op();
  }

  /** Creates the object: `exclusive` fails the op with EEXIST when it exists. */
  create(exclusive: boolean): this {
    librados().rados_write_op_create(this.#op, exclusive ? 1 : 0, null);
    return this;
  }

  /** Fails the op (ECANCELED) unless `stored op value` holds for xattr `name` (strings). */
  compareXattr(name: string, op: number, value: string): this {
    const bytes = cString(value);
    librados().rados_write_op_cmpxattr(
      this.#op,
      cString(name),
      op,
      bytes,
      BigInt(bytes.length - 1),
    );
    return this;
  }

  setXattr(name: string, value: string): this {
    const bytes = cString(value);
    librados().rados_write_op_setxattr(this.#op, cString(name), bytes, BigInt(bytes.length - 1));
    return this;
  }

  /** Writes `data` at `offset` (librados copies it now). */
  write(data: Uint8Array, offset: number): this {
    librados().rados_write_op_write(this.#op, data, BigInt(data.length), BigInt(offset));
    return this;
  }

  writeFull(data: Uint8Array): this {
    librados().rados_write_op_write_full(this.#op, data, BigInt(data.length));
    return this;
  }

  truncate(size: number): this {
    librados().rados_write_op_truncate(this.#op, BigInt(size));
    return this;
  }

  remove(): this {
    librados().rados_write_op_remove(this.#op);
    return this;
  }

  /**
   * Fails the op unless `stored op value` holds for omap key `key` (a missing
   * key compares as the empty string).
   */
  compareOmap(key: string, op: number, value: string): this {
    const bytes = cString(value);
    const status = new Int32Array(1);
    this.#statuses.push(status);
    librados().rados_write_op_omap_cmp(
      this.#op,
      cString(key),
      op,
      bytes,
      BigInt(bytes.length - 1),
      new Uint8Array(status.buffer),
    );
    return this;
  }

  setOmap(entries: [string, Uint8Array][]): this {
    const keys = entries.map(([key]) => cString(key));
    const values = entries.map(([, value]) => value.length === 0 ? new Uint8Array(1) : value);
    const lengths = new BigUint64Array(entries.map(([, value]) => BigInt(value.length)));
    librados().rados_write_op_omap_set(
      this.#op,
      pointerArray(keys),
      pointerArray(values),
      lengths,
      BigInt(entries.length),
    );
    return this;
  }

  removeOmap(keys: string[]): this {
    librados().rados_write_op_omap_rm_keys(
      this.#op,
      pointerArray(keys.map(cString)),
      BigInt(keys.length),
    );
    return this;
  }

  /** Sends the op to object `oid`; throws RadosError (errno) when any step failed. */
  async operate(io: IoContext, oid: string): Promise<void> {
    try {
      const rc = await librados().rados_write_op_operate(
        this.#op,
        io.pointer,
        cString(oid),
        null,
        0,
      );
      if (rc < 0) throw new RadosError(-rc, `write ${io.label}/${oid}`);
      for (const status of this.#statuses) {
        if (status[0] < 0) throw new RadosError(-status[0], `write ${io.label}/${oid}`);
      }
    } finally {
      librados().rados_release_write_op(this.#op);
    }
  }
}

/** One omap entry read back. */
export type OmapEntries = Map<string, Uint8Array>;

/** Steps of one read; {@linkcode ReadOp.operate} sends them and releases the op. */
export class ReadOp {
  #op: Deno.PointerValue;
  #statuses: Int32Array[] = [];
  #after: (() => void)[] = [];

  constructor() {
    this.#op = librados().rados_create_read_op();
  }

  #status(): Uint8Array {
    const status = new Int32Array(1);
    this.#statuses.push(status);
    return new Uint8Array(status.buffer);
  }

  /** Reads into `into` from `offset`; `done` gets the bytes read once the op ran. */
  read(offset: number, into: Uint8Array, done: (bytesRead: number) => void): this {
    const bytesRead = new BigUint64Array(1);
    librados().rados_read_op_read(
      this.#op,
      BigInt(offset),
      BigInt(into.length),
      into,
      new Uint8Array(bytesRead.buffer),
      this.#status(),
    );
    this.#after.push(() => done(Number(bytesRead[0])));
    return this;
  }

  /** The omap values of `keys` (missing keys are left out). */
  omapByKeys(keys: string[], done: (entries: OmapEntries) => void): this {
    const iterator = pointerOut();
    librados().rados_read_op_omap_get_vals_by_keys(
      this.#op,
      pointerArray(keys.map(cString)),
      BigInt(keys.length),
      new Uint8Array(iterator.buffer),
      this.#status(),
    );
    this.#after.push(() => done(drain(pointerIn(iterator))));
    return this;
  }

  /** Up to `max` omap entries after `startAfter` whose keys start with `prefix`, sorted. */
  omapRange(
    range: { startAfter: string; prefix: string; max: number },
    done: (entries: OmapEntries, more: boolean) => void,
  ): this {
    const iterator = pointerOut();
    const more = new Uint8Array(1);
    librados().rados_read_op_omap_get_vals2(
      this.#op,
      cString(range.startAfter),
      cString(range.prefix),
      BigInt(range.max),
      new Uint8Array(iterator.buffer),
      more,
      this.#status(),
    );
    this.#after.push(() => done(drain(pointerIn(iterator)), more[0] !== 0));
    return this;
  }

  /** Sends the op to `oid`; throws RadosError (errno), ENOENT for a missing object. */
  async operate(io: IoContext, oid: string): Promise<void> {
    try {
      const rc = await librados().rados_read_op_operate(this.#op, io.pointer, cString(oid), 0);
      if (rc < 0) throw new RadosError(-rc, `read ${io.label}/${oid}`);
      for (const status of this.#statuses) {
        if (status[0] < 0) throw new RadosError(-status[0], `read ${io.label}/${oid}`);
      }
      for (const after of this.#after) after();
    } finally {
      librados().rados_release_read_op(this.#op);
    }
  }
}

/** A C array of pointers to `buffers` (which the caller keeps alive meanwhile). */
function pointerArray(buffers: Uint8Array[]): BigUint64Array {
  return new BigUint64Array(
    buffers.map((buffer) => BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)))),
  );
}

/** Copies every entry out of an omap iterator and ends it. */
function drain(iterator: Deno.PointerValue): OmapEntries {
  const entries: OmapEntries = new Map();
  if (iterator === null) return entries;
  const key = pointerOut(),
    value = pointerOut(),
    keyLength = pointerOut(),
    valueLength = pointerOut();
  const lib = librados();
  try {
    for (;;) {
      const rc = lib.rados_omap_get_next2(
        iterator,
        new Uint8Array(key.buffer),
        new Uint8Array(value.buffer),
        new Uint8Array(keyLength.buffer),
        new Uint8Array(valueLength.buffer),
      );
      if (rc < 0) throw new RadosError(-rc, "omap iteration");
      if (key[0] === 0n) return entries;
      const name = copy(pointerIn(key), Number(keyLength[0]));
      const bytes = copy(pointerIn(value), Number(valueLength[0]));
      entries.set(new TextDecoder().decode(name), bytes);
    }
  } finally {
    lib.rados_omap_get_end(iterator);
  }
}

function copy(pointer: Deno.PointerValue, length: number): Uint8Array {
  if (pointer === null || length === 0) return new Uint8Array(0);
  return new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(pointer, length).slice(0));
}
