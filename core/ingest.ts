/**
 * Image upload: cuts a byte stream into blocks, hashes them in the worker pool,
 * stores only the blocks the engine lacks and never a zero block. Full blocks go
 * to the pool as many at a time as it hashes together (`HashPool.batchBlocks`),
 * or fewer at the end or when none came for {@linkcode readyHoldMs}. A group
 * does not go out short because every buffer is busy: it waits for a store to
 * hand one back (four blocks cost a worker what one and a half do alone; in a
 * cluster, where a block's store waits on its replicas, most groups went out
 * short and the hashing took twice the CPU).
 *
 * Where the engine stores blocks in batches (Engine.blockBatch: a cluster's
 * replicas), the upload's blocks are one batch, made durable together at its
 * end rather than each before the next buffer is free.
 *
 * Memory stays bounded whatever the image size: at most
 * `uploadBlocksInFlightMax` block buffers exist per upload, recycled, and the
 * stream is not read while all of them are busy (backpressure reaches the client
 * through the socket).
 *
 * A converter that knows a span is zeros (a qcow2's unallocated clusters) says
 * so with a {@linkcode ZeroRun} instead of bytes: whole blocks in it are zero
 * entries at once, never filled nor hashed.
 */
import { type HashPool, toHex } from "../wasm/mod.ts";
import { assert } from "./assert.ts";
import { BlockMap } from "./block_map.ts";
import { BufferRing, pageAligned } from "./buffer_pool.ts";
import { isByteSource, readIntoAt } from "./byte_source.ts";
import type { BlockBatch, Engine } from "./engine.ts";
import { TruncatedError } from "./errors.ts";
import { uploadBlocksInFlightMax, volumeSizeBytesMax } from "./limits.ts";

/** Longest a full block waits for others to be hashed with (a slow or stalled client). */
const readyHoldMs = 50;

/** A span of zeros in a body, by length only. */
export interface ZeroRun {
  zeroBytes: number;
}

/** Counters of one upload, updated as it runs (the progress an operator sees). */
export interface IngestProgress {
  receivedBytes: number;
  /** Bytes the client announced (Content-Length), when known. */
  expectedBytes: number | null;
  /** Blocks hashed and stored so far (zero ones included). */
  blocks: number;
  zeroBlocks: number;
  newBlocks: number;
  newBytes: number;
}

/** Options of {@linkcode ingest}. */
export interface IngestOptions {
  engine: Engine;
  pool: HashPool;
  blockSize: number;
  /** The announced length; a stream that ends early or runs over throws. */
  expectedBytes?: number | null;
  /** Hashes of blocks this upload relies on, so garbage collection keeps them. */
  pins: Set<string>;
  /** Filled with the hashes of blocks this upload stored first (a failed upload frees them). */
  stored?: Set<string>;
  /** Updated in place as the upload runs. */
  progress?: IngestProgress;
}

/** Creates zeroed progress counters. */
export function newProgress(expectedBytes: number | null): IngestProgress {
  return { receivedBytes: 0, expectedBytes, blocks: 0, zeroBlocks: 0, newBlocks: 0, newBytes: 0 };
}

/**
 * Reads `body` to its end and returns the map of its blocks, every block stored
 * and durable. Throws TruncatedError when the stream ends before
 * `expectedBytes`, RangeError when it runs past it or past the size limit.
 */
export async function ingest(
  body: AsyncIterable<Uint8Array | ZeroRun>,
  options: IngestOptions,
): Promise<{ map: BlockMap; progress: IngestProgress }> {
  // Blocks durable together at the end, where the engine can (Engine.blockBatch).
  const batch = options.engine.blockBatch?.() ?? null;
  try {
    return await ingestInto(body, options, batch);
  } catch (error) {
    // What the batch's members took becomes blocks like any other (in place, collected once
    // old enough), not temporary files waiting for their next flush.
    batch?.settle().catch(() => {});
    throw error;
  }
}

async function ingestInto(
  body: AsyncIterable<Uint8Array | ZeroRun>,
  options: IngestOptions,
  batch: BlockBatch | null,
): Promise<{ map: BlockMap; progress: IngestProgress }> {
  const { engine, pool, blockSize, pins } = options;
  const expected = options.expectedBytes ?? null;
  const limit = Math.min(expected ?? volumeSizeBytesMax, volumeSizeBytesMax);
  const progress = options.progress ?? newProgress(expected);
  // Page-aligned: a new block is written to disk from its buffer as it is (_direct_writes.ts).
  const buffers = new BufferRing(blockSize, uploadBlocksInFlightMax, pageAligned);
  const putBlock = (hash: string, data: Uint8Array) =>
    batch === null ? engine.putBlock(hash, data) : batch.put(hash, data);
  const hashes: (string | null)[] = [];
  const pending = new Set<Promise<void>>();
  let failure: unknown = null;

  const store = async (index: number, block: Uint8Array) => {
    let returned: Uint8Array | null = null;
    try {
      const { data, digest } = await pool.hashBlock(block, { detectZero: true });
      returned = data;
      if (digest === null) {
        hashes[index] = null;
        progress.zeroBlocks++;
        progress.blocks++;
        return;
      }
      const hash = toHex(digest);
      hashes[index] = hash;
      pins.add(hash);
      if (await putBlock(hash, data)) {
        options.stored?.add(hash);
        progress.newBlocks++;
        progress.newBytes += data.length;
      }
      progress.blocks++;
    } catch (error) {
      failure ??= error;
    } finally {
      // A failed hash job may have kept the transferred buffer: replace it.
      buffers.release(
        returned === null
          ? pageAligned(blockSize)
          : new Uint8Array(returned.buffer, returned.byteOffset, blockSize),
      );
    }
  };
  let submitted = 0;
  /** Filled blocks not handed to the pool yet, with their indexes. */
  const ready: [number, Uint8Array][] = [];
  /** Hands the group over even when it is not full: a slow client's blocks do not wait. */
  let holdTimer: ReturnType<typeof setTimeout> | null = null;
  const stopHold = () => {
    if (holdTimer !== null) clearTimeout(holdTimer);
    holdTimer = null;
  };
  const release = () => {
    stopHold();
    for (const [index, block] of ready.splice(0)) {
      const task = store(index, block);
      pending.add(task);
      task.finally(() => pending.delete(task));
    }
  };
  const submit = (block: Uint8Array) => {
    ready.push([submitted++, block]);
    if (ready.length >= pool.batchBlocks) release();
    else holdTimer ??= setTimeout(release, readyHoldMs);
  };

  let current = await buffers.take();
  let filled = 0;
  /** Counts `length` more bytes of the body; past the limit, a RangeError. */
  const received = (length: number) => {
    if (progress.receivedBytes + length > limit) {
      throw new RangeError(
        `Cannot store image: the body runs past ${limit} bytes` +
          (expected === null ? " (the size limit)" : " (its announced length)"),
      );
    }
    progress.receivedBytes += length;
  };
  /** The block is full: it goes to be hashed, the next one is filled. */
  const nextBlock = async () => {
    submit(current);
    current = await buffers.take();
    filled = 0;
  };
  try {
    if (isByteSource(body)) {
      // Read into the block buffers themselves (byte_source.ts).
      while (failure === null) {
        const { buffer, bytes } = await readIntoAt(body, current, filled);
        current = buffer;
        if (bytes === 0) break;
        received(bytes);
        filled += bytes;
        if (filled === blockSize) await nextBlock();
      }
      if (failure !== null) await body.cancel();
    } else {
      for await (const chunk of body) {
        if (failure !== null) break;
        const length = chunk instanceof Uint8Array ? chunk.length : chunk.zeroBytes;
        received(length);
        if (!(chunk instanceof Uint8Array)) {
          // Zeros end the block being filled; whole blocks of them are zero entries at once.
          let left = length;
          if (filled > 0) {
            const take = Math.min(blockSize - filled, left);
            current.fill(0, filled, filled + take);
            filled += take;
            left -= take;
            if (filled < blockSize) continue;
            await nextBlock();
          }
          for (; left >= blockSize; left -= blockSize) {
            hashes[submitted++] = null;
            progress.zeroBlocks++;
            progress.blocks++;
          }
          current.fill(0, 0, left);
          filled = left;
          continue;
        }
        let used = 0;
        while (used < chunk.length) {
          const take = Math.min(blockSize - filled, chunk.length - used);
          current.set(chunk.subarray(used, used + take), filled);
          filled += take;
          used += take;
          if (filled === blockSize) await nextBlock();
        }
      }
    }
  } catch (error) {
    stopHold(); // the blocks not handed out are dropped
    if (isByteSource(body)) await body.cancel();
    // Let blocks already handed out finish, so nothing writes after we return.
    await Promise.allSettled(pending);
    throw error;
  }
  if (filled > 0 && failure === null) submit(current.subarray(0, filled));
  if (failure === null) release();
  stopHold();
  await Promise.all(pending);
  if (failure !== null) throw failure;
  if (progress.receivedBytes === 0) throw new TypeError("Cannot store image: the body is empty");
  if (expected !== null && progress.receivedBytes !== expected) {
    throw new TruncatedError(
      `Cannot store image: the body ended after ${progress.receivedBytes} of ${expected} bytes`,
    );
  }
  await batch?.settle();
  await engine.flush();
  const map = new BlockMap({ sizeBytes: progress.receivedBytes, blockSize });
  assert(hashes.length === map.count && progress.blocks === map.count);
  hashes.forEach((hash, index) => {
    if (hash !== null) map.set(index, { kind: "block", hash });
  });
  return { map, progress };
}
