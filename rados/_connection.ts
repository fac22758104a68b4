/**
 * One connection to a Ceph cluster (a librados client instance) and its io
 * contexts, one per RADOS namespace of the pool; the simple calls that need no
 * compound operation (read, stat, remove, list), and watch/notify, through
 * which nodes ask a lease holder to let go.
 */
import { cString, librados } from "./_librados.ts";
import { errno, RadosError } from "./_errors.ts";
import type { IoContext } from "./_ops.ts";

/** Where and as whom to connect. */
export interface ConnectionOptions {
  /** A ceph.conf (monitors, keyring). */
  conf: string;
  pool: string;
  /** The client name without `client.` (default `admin`). */
  id?: string;
}

/** Time a connection attempt may take before it fails (librados' own default is 5 min). */
const connectTimeoutSeconds = 30;

/** Called on the event loop when a node asks the watcher of `oid` to let go. */
export type NotifyHandler = (notifyId: bigint, cookie: bigint) => void;

/** A connected librados client. */
export class Connection {
  readonly pool: string;
  /** This client's address as the OSDs see it: what a blocklist entry names. */
  readonly address: string;
  #cluster: Deno.PointerValue;
  #contexts = new Map<string, IoContext>();
  #callbacks: { close(): void }[] = [];
  #closed = false;

  private constructor(cluster: Deno.PointerValue, pool: string, address: string) {
    this.#cluster = cluster;
    this.pool = pool;
    this.address = address;
  }

  /** Connects; throws one clear line when librados is missing or the cluster refuses. */
  static async connect(options: ConnectionOptions): Promise<Connection> {
    const lib = librados();
    const out = new BigUint64Array(1);
    const name = `client.${options.id ?? "admin"}`;
    let rc = lib.rados_create2(
      new Uint8Array(out.buffer),
      cString("ceph"),
      cString(name),
      0n,
    );
    if (rc < 0) throw new RadosError(-rc, `create a RADOS client as ${name}`);
    const cluster = Deno.UnsafePointer.create(out[0]);
    try {
      rc = lib.rados_conf_read_file(cluster, cString(options.conf));
      if (rc < 0) throw new RadosError(-rc, `read Ceph configuration ${options.conf}`);
      for (const key of ["client_mount_timeout", "rados_mon_op_timeout"]) {
        lib.rados_conf_set(cluster, cString(key), cString(String(connectTimeoutSeconds)));
      }
      rc = await lib.rados_connect(cluster);
      if (rc < 0) throw new RadosError(-rc, `connect to Ceph with ${options.conf} as ${name}`);
    } catch (error) {
      await lib.rados_shutdown(cluster);
      throw error;
    }
    const addresses = new BigUint64Array(1);
    rc = lib.rados_getaddrs(cluster, new Uint8Array(addresses.buffer));
    const address = rc < 0 || addresses[0] === 0n
      ? ""
      : Deno.UnsafePointerView.getCString(Deno.UnsafePointer.create(addresses[0])!);
    const connection = new Connection(cluster, options.pool, address);
    try {
      await connection.#openPool();
    } catch (error) {
      await connection.close();
      throw error;
    }
    return connection;
  }

  async #openPool(): Promise<void> {
    await this.context("");
  }

  /** The io context of `namespace` in the pool (made on first use). */
  async context(namespace: string): Promise<IoContext> {
    const known = this.#contexts.get(namespace);
    if (known !== undefined) return known;
    const out = new BigUint64Array(1);
    const rc = await librados().rados_ioctx_create(
      this.#cluster,
      cString(this.pool),
      new Uint8Array(out.buffer),
    );
    if (rc < 0) {
      throw new RadosError(
        -rc,
        `open pool ${this.pool}${rc === -errno.ENOENT ? " (create it: ceph osd pool create)" : ""}`,
      );
    }
    const pointer = Deno.UnsafePointer.create(out[0]);
    librados().rados_ioctx_set_namespace(pointer, cString(namespace));
    const context = this.#contexts.get(namespace) ??
      { pointer, label: `${this.pool}/${namespace}` };
    if (context.pointer !== pointer) librados().rados_ioctx_destroy(pointer);
    this.#contexts.set(namespace, context);
    return context;
  }

  /** Reads up to `into.length` bytes at `offset`; the count read (0 past the end or when missing). */
  async read(io: IoContext, oid: string, into: Uint8Array, offset: number): Promise<number> {
    if (into.length === 0) return 0;
    const rc = await librados().rados_read(
      io.pointer,
      cString(oid),
      into,
      BigInt(into.length),
      BigInt(offset),
    );
    if (rc === -errno.ENOENT) return 0;
    if (rc < 0) throw new RadosError(-rc, `read ${io.label}/${oid}`);
    return rc;
  }

  /** The object's size, or null when it does not exist. */
  async size(io: IoContext, oid: string): Promise<number | null> {
    const size = new BigUint64Array(1);
    const rc = await librados().rados_stat(
      io.pointer,
      cString(oid),
      new Uint8Array(size.buffer),
      null,
    );
    if (rc === -errno.ENOENT) return null;
    if (rc < 0) throw new RadosError(-rc, `stat ${io.label}/${oid}`);
    return Number(size[0]);
  }

  /** Removes an object; a missing one is not an error. */
  async remove(io: IoContext, oid: string): Promise<void> {
    const rc = await librados().rados_remove(io.pointer, cString(oid));
    if (rc < 0 && rc !== -errno.ENOENT) throw new RadosError(-rc, `remove ${io.label}/${oid}`);
  }

  /** Every object name in the io context's namespace (the OSDs walk the whole pool). */
  async *list(io: IoContext): AsyncIterable<string> {
    const lib = librados();
    const out = new BigUint64Array(1);
    let rc = lib.rados_nobjects_list_open(io.pointer, new Uint8Array(out.buffer));
    if (rc < 0) throw new RadosError(-rc, `list ${io.label}`);
    const handle = Deno.UnsafePointer.create(out[0]);
    const entry = new BigUint64Array(1);
    try {
      for (;;) {
        rc = await lib.rados_nobjects_list_next(handle, new Uint8Array(entry.buffer), null, null);
        if (rc === -errno.ENOENT) return;
        if (rc < 0) throw new RadosError(-rc, `list ${io.label}`);
        yield Deno.UnsafePointerView.getCString(Deno.UnsafePointer.create(entry[0])!);
      }
    } finally {
      lib.rados_nobjects_list_close(handle);
    }
  }

  /**
   * Watches `oid` (created if missing): `onNotify` runs on the event loop for
   * each notification, which the watcher acknowledges with {@linkcode ack}.
   * Returns the watch's cookie, for {@linkcode unwatch}.
   */
  async watch(io: IoContext, oid: string, onNotify: NotifyHandler): Promise<bigint> {
    const notified = Deno.UnsafeCallback.threadSafe(
      {
        parameters: ["pointer", "u64", "u64", "u64", "pointer", "usize"],
        result: "void",
      } as const,
      (_arg, notifyId, cookie) => onNotify(BigInt(notifyId), BigInt(cookie)),
    );
    // A watch lost (a reconnection) is found by the next move of the lease: nothing to do here.
    const failed = Deno.UnsafeCallback.threadSafe(
      { parameters: ["pointer", "u64", "i32"], result: "void" } as const,
      () => {},
    );
    notified.unref();
    failed.unref();
    this.#callbacks.push(notified, failed);
    const cookie = new BigUint64Array(1);
    const rc = await librados().rados_watch2(
      io.pointer,
      cString(oid),
      new Uint8Array(cookie.buffer),
      notified.pointer,
      failed.pointer,
      null,
    );
    if (rc < 0) throw new RadosError(-rc, `watch ${io.label}/${oid}`);
    return cookie[0];
  }

  /** Ends a watch. */
  async unwatch(io: IoContext, cookie: bigint): Promise<void> {
    const rc = await librados().rados_unwatch2(io.pointer, cookie);
    if (rc < 0 && rc !== -errno.ENOENT) throw new RadosError(-rc, `unwatch ${io.label}`);
  }

  /** Acknowledges notification `notifyId` to watch `cookie` on `oid`. */
  async ack(io: IoContext, oid: string, notifyId: bigint, cookie: bigint): Promise<void> {
    const rc = await librados().rados_notify_ack(
      io.pointer,
      cString(oid),
      notifyId,
      cookie,
      null,
      0,
    );
    if (rc < 0) throw new RadosError(-rc, `acknowledge a notification on ${io.label}/${oid}`);
  }

  /**
   * Notifies every watcher of `oid` and waits until each acknowledged or
   * `timeoutMs` passed: true when all did (also when nobody watches).
   */
  async notify(io: IoContext, oid: string, timeoutMs: number): Promise<boolean> {
    const reply = new BigUint64Array(1), replyLength = new BigUint64Array(1);
    const rc = await librados().rados_notify2(
      io.pointer,
      cString(oid),
      new Uint8Array(1),
      0,
      BigInt(timeoutMs),
      new Uint8Array(reply.buffer),
      new Uint8Array(replyLength.buffer),
    );
    if (reply[0] !== 0n) librados().rados_buffer_free(Deno.UnsafePointer.create(reply[0]));
    if (rc === -errno.ETIMEDOUT) return false;
    if (rc === -errno.ENOENT) return true;
    if (rc < 0) throw new RadosError(-rc, `notify ${io.label}/${oid}`);
    return true;
  }

  /** Fences client `address` for `seconds`: the OSDs refuse everything it sends. */
  async blocklist(address: string, seconds: number): Promise<void> {
    const rc = await librados().rados_blocklist_add(this.#cluster, cString(address), seconds);
    if (rc < 0) throw new RadosError(-rc, `blocklist client ${address}`);
    // The OSDs act on the map with the entry; wait for it before the caller goes on.
    await librados().rados_wait_for_latest_osdmap(this.#cluster);
  }

  /** Disconnects; the connection is unusable afterwards. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const context of this.#contexts.values()) librados().rados_ioctx_destroy(context.pointer);
    this.#contexts.clear();
    await librados().rados_shutdown(this.#cluster);
    for (const callback of this.#callbacks) callback.close();
  }
}
