/**
 * An upload's body read straight into the caller's buffers. A request body's
 * default reader hands out a new chunk of its own for every read (about 64 KiB
 * here), which the upload then copies into a block buffer: an allocation, a
 * copy and three async iterators per chunk, most of the CPU an upload's
 * receiving thread spent outside hashing and storing. A BYOB reader fills the
 * block buffer itself (`ReadableStreamBYOBReader`): 0.57 CPU-seconds a GiB
 * instead of 0.85–1.02 to read a body here (decisions.md, "Upload bodies read
 * into block buffers").
 *
 * A {@linkcode ByteSource} is also an AsyncIterable of chunks, for the code
 * that takes those (format detection, a qcow2 spool).
 *
 * @module
 */

/** Bytes of the chunks a ByteSource hands out when iterated. */
const chunkBytes = 64 * 1024;

/** A body that reads into buffers of the caller's (see the module doc). */
export interface ByteSource extends AsyncIterable<Uint8Array> {
  /**
   * Reads at most `into.length` bytes into `into` and returns them: a view of
   * the same memory, whose ArrayBuffer may be a new one (a BYOB read transfers
   * the buffer it fills, and `into`'s is detached then; the caller takes its
   * buffer back from the view, also at the end). No bytes: the body ended.
   */
  readInto(into: Uint8Array): Promise<Uint8Array>;
  /** Drops the rest of the body (its client's connection learns nothing more is read). */
  cancel(): Promise<void>;
}

/**
 * Reads from `source` into `buffer` from byte `at` on: the buffer again (its
 * memory in the ArrayBuffer the read handed back) and the bytes read (none:
 * the end of the body).
 */
export async function readIntoAt(
  source: ByteSource,
  buffer: Uint8Array,
  at: number,
): Promise<{ buffer: Uint8Array; bytes: number }> {
  const length = buffer.length; // read before the read detaches `buffer`
  const read = await source.readInto(buffer.subarray(at));
  return { buffer: new Uint8Array(read.buffer, read.byteOffset - at, length), bytes: read.length };
}

/** True when `body` can read into buffers of the caller's. */
export function isByteSource(body: unknown): body is ByteSource {
  return typeof (body as Partial<ByteSource>)?.readInto === "function";
}

/**
 * A ByteSource over a byte stream's BYOB reader. `failed` turns a read that
 * throws into the error to throw (a client gone away: the caller's to name).
 */
export function streamSource(
  stream: ReadableStream<Uint8Array>,
  failed: (cause: unknown) => Error,
): ByteSource {
  const reader = stream.getReader({ mode: "byob" });
  let ended = false;
  return withChunks({
    readInto: async (into) => {
      if (ended || into.length === 0) return into.subarray(0, 0);
      const length = into.length;
      while (true) {
        let result: ReadableStreamReadResult<Uint8Array>;
        try {
          result = await reader.read(into);
        } catch (cause) {
          ended = true;
          throw failed(cause);
        }
        // At the end the stream hands the buffer back empty; only a cancelled one keeps it.
        if (result.value === undefined) throw new Error("Cannot read body: it was cancelled");
        if (result.done) ended = true;
        // No bytes means the end to the caller: a read that is not the end reads again.
        if (result.done || result.value.length > 0) return result.value;
        into = new Uint8Array(result.value.buffer, result.value.byteOffset, length);
      }
    },
    cancel: async () => {
      if (ended) return;
      ended = true;
      await reader.cancel().catch(() => {});
    },
  });
}

/** `held` (bytes already read from `source`), then the rest of `source`. */
export function prepended(held: Uint8Array, source: ByteSource): ByteSource {
  let at = 0;
  return withChunks({
    readInto: (into) => {
      if (at === held.length) return source.readInto(into);
      const part = held.subarray(at, at + into.length);
      into.set(part);
      at += part.length;
      return Promise.resolve(into.subarray(0, part.length));
    },
    cancel: () => source.cancel(),
  });
}

/** `reading` with the AsyncIterable of its chunks (new buffers; the rest cancelled on an early stop). */
function withChunks(reading: Omit<ByteSource, typeof Symbol.asyncIterator>): ByteSource {
  return {
    ...reading,
    async *[Symbol.asyncIterator]() {
      let ended = false;
      try {
        while (true) {
          const chunk = await reading.readInto(new Uint8Array(chunkBytes));
          if (chunk.length === 0) break;
          yield chunk;
        }
        ended = true;
      } finally {
        if (!ended) await reading.cancel();
      }
    },
  };
}
