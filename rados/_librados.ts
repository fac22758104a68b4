/**
 * librados' C API through `Deno.dlopen`, loaded on first use only, so that a
 * node that does not use the RADOS engine (and the single bundle) runs on a
 * host without librados.
 *
 * Every call that talks to the cluster is `nonblocking`: Deno runs it on a
 * worker thread and returns a Promise, so the event loop never waits for an
 * OSD. Calls that only build an operation in memory (the `*_op_*` builders,
 * iterators) run inline. Buffers handed to a nonblocking call must stay alive
 * and untouched until its Promise settles (the callers keep them in scope).
 */

/** Comparisons of `rados_write_op_cmpxattr` and `rados_write_op_omap_cmp` (librados.h). */
export const cmp = { eq: 1, ne: 2, gt: 3, gte: 4, lt: 5, lte: 6 } as const;
/** `rados_write_op_create`'s modes. */
export const create = { idempotent: 0, exclusive: 1 } as const;

const symbols = {
  rados_create2: { parameters: ["buffer", "buffer", "buffer", "u64"], result: "i32" },
  rados_conf_read_file: { parameters: ["pointer", "buffer"], result: "i32" },
  rados_conf_set: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  rados_connect: { parameters: ["pointer"], result: "i32", nonblocking: true },
  rados_shutdown: { parameters: ["pointer"], result: "void", nonblocking: true },
  rados_getaddrs: { parameters: ["pointer", "buffer"], result: "i32" },
  rados_blocklist_add: {
    parameters: ["pointer", "buffer", "u32"],
    result: "i32",
    nonblocking: true,
  },
  rados_wait_for_latest_osdmap: { parameters: ["pointer"], result: "i32", nonblocking: true },
  rados_ioctx_create: {
    parameters: ["pointer", "buffer", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  rados_ioctx_destroy: { parameters: ["pointer"], result: "void" },
  rados_ioctx_set_namespace: { parameters: ["pointer", "buffer"], result: "void" },
  rados_buffer_free: { parameters: ["pointer"], result: "void" },

  rados_create_write_op: { parameters: [], result: "pointer" },
  rados_release_write_op: { parameters: ["pointer"], result: "void" },
  rados_write_op_create: { parameters: ["pointer", "i32", "pointer"], result: "void" },
  rados_write_op_cmpxattr: {
    parameters: ["pointer", "buffer", "u8", "buffer", "usize"],
    result: "void",
  },
  rados_write_op_setxattr: { parameters: ["pointer", "buffer", "buffer", "usize"], result: "void" },
  rados_write_op_write: { parameters: ["pointer", "buffer", "usize", "u64"], result: "void" },
  rados_write_op_write_full: { parameters: ["pointer", "buffer", "usize"], result: "void" },
  rados_write_op_truncate: { parameters: ["pointer", "u64"], result: "void" },
  rados_write_op_remove: { parameters: ["pointer"], result: "void" },
  rados_write_op_omap_cmp: {
    parameters: ["pointer", "buffer", "u8", "buffer", "usize", "buffer"],
    result: "void",
  },
  rados_write_op_omap_set: {
    parameters: ["pointer", "buffer", "buffer", "buffer", "usize"],
    result: "void",
  },
  rados_write_op_omap_rm_keys: { parameters: ["pointer", "buffer", "usize"], result: "void" },
  rados_write_op_operate: {
    parameters: ["pointer", "pointer", "buffer", "pointer", "i32"],
    result: "i32",
    nonblocking: true,
  },

  rados_create_read_op: { parameters: [], result: "pointer" },
  rados_release_read_op: { parameters: ["pointer"], result: "void" },
  rados_read_op_read: {
    parameters: ["pointer", "u64", "usize", "buffer", "buffer", "buffer"],
    result: "void",
  },
  rados_read_op_stat: { parameters: ["pointer", "buffer", "pointer", "buffer"], result: "void" },
  rados_read_op_omap_get_vals_by_keys: {
    parameters: ["pointer", "buffer", "usize", "buffer", "buffer"],
    result: "void",
  },
  rados_read_op_omap_get_vals2: {
    parameters: ["pointer", "buffer", "buffer", "u64", "buffer", "buffer", "buffer"],
    result: "void",
  },
  rados_read_op_operate: {
    parameters: ["pointer", "pointer", "buffer", "i32"],
    result: "i32",
    nonblocking: true,
  },
  rados_omap_get_next2: {
    parameters: ["pointer", "buffer", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  rados_omap_get_end: { parameters: ["pointer"], result: "void" },

  rados_read: {
    parameters: ["pointer", "buffer", "buffer", "usize", "u64"],
    result: "i32",
    nonblocking: true,
  },
  rados_stat: {
    parameters: ["pointer", "buffer", "buffer", "pointer"],
    result: "i32",
    nonblocking: true,
  },
  rados_remove: { parameters: ["pointer", "buffer"], result: "i32", nonblocking: true },

  rados_nobjects_list_open: { parameters: ["pointer", "buffer"], result: "i32" },
  rados_nobjects_list_next: {
    parameters: ["pointer", "buffer", "pointer", "pointer"],
    result: "i32",
    nonblocking: true,
  },
  rados_nobjects_list_close: { parameters: ["pointer"], result: "void" },

  rados_watch2: {
    parameters: ["pointer", "buffer", "buffer", "function", "function", "pointer"],
    result: "i32",
    nonblocking: true,
  },
  rados_unwatch2: { parameters: ["pointer", "u64"], result: "i32", nonblocking: true },
  rados_notify2: {
    parameters: ["pointer", "buffer", "buffer", "i32", "u64", "buffer", "buffer"],
    result: "i32",
    nonblocking: true,
  },
  rados_notify_ack: {
    parameters: ["pointer", "buffer", "u64", "u64", "buffer", "i32"],
    result: "i32",
    nonblocking: true,
  },
} as const satisfies Deno.ForeignLibraryInterface;

/** The loaded library's functions. */
export type Librados = Deno.DynamicLibrary<typeof symbols>["symbols"];

/**
 * Where to look for the library: `ATOLL_LIBRADOS` alone when set (another
 * distribution's path), else the loader's own search, then where Debian's
 * `librados2` puts it.
 */
function libraryPaths(): string[] {
  const chosen = Deno.env.get("ATOLL_LIBRADOS");
  if (chosen !== undefined && chosen !== "") return [chosen];
  return ["librados.so.2", "/usr/lib/x86_64-linux-gnu/librados.so.2"];
}

let loaded: Librados | null = null;

/** librados' functions, loaded on the first call; throws one clear line when it is missing. */
export function librados(): Librados {
  if (loaded !== null) return loaded;
  const errors: string[] = [];
  for (const path of libraryPaths()) {
    try {
      loaded = Deno.dlopen(path, symbols).symbols;
      return loaded;
    } catch (error) {
      errors.push((error as Error).message);
    }
  }
  const missing = errors.every((message) => /No such file|cannot open shared object/.test(message));
  throw new Error(
    missing
      ? "Cannot use the RADOS engine: librados is not installed (apt-get install librados2)"
      : `Cannot use the RADOS engine: librados.so.2 lacks what Atoll needs (${
        errors[0].split("\n")[0]
      }); Ceph 16 (Pacific) or newer is required`,
  );
}

const encoder = new TextEncoder();

/** A NUL-terminated C string. */
export function cString(text: string): Uint8Array<ArrayBuffer> {
  const encoded = encoder.encode(text);
  const bytes = new Uint8Array(encoded.length + 1);
  bytes.set(encoded);
  return bytes;
}
