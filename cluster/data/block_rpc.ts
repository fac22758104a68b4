/**
 * The block service's side on the node that stores: the methods other members
 * call (`block.*`), each checking what it is given (a block's bytes against its
 * name, counts of names), and the helpers both sides share.
 */
import { createHash } from "node:crypto";
import type { NodeDisk } from "../../core/mod.ts";
import { blockSizeMax, BufferPool, CorruptionError, isBlockName } from "../../core/mod.ts";
import type { RpcMethod } from "../transport/mod.ts";
import { BatchCounts, checkBatchName } from "./_batch_counts.ts";

/** Healing never fills a disk: a node takes copies only while this much stays free. */
export const healDiskReserveBytes = 1024 ** 3;

/** SHA-256 hex of bytes (native: 4 MiB in ~3 ms). */
export function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/**
 * The methods of blockMethods() that keep no reference to a call's data once
 * they settled (`block.put` writes the bytes to a file before it answers): the
 * link server may read their data into reused buffers instead of a fresh 4 MiB
 * each, which a replica pays in page faults and zeroing for every block it takes.
 */
export const blockMethodsPooled: ReadonlySet<string> = new Set(["block.put"]);

/**
 * Whole blocks read for `block.get` go out of reused buffers, at most this many
 * bytes of them kept: a fresh 4 MiB buffer per block sent cost about 10 ms of
 * page faults here (decisions.md, "Fetched pages through reused buffers").
 */
const getPoolBytesMax = 16 * 1024 * 1024;

/** The methods a node serves for the block service, over its local engine. */
export function blockMethods(engine: NodeDisk): Record<string, RpcMethod> {
  const gets = new BufferPool(getPoolBytesMax, blockSizeMax);
  const batches = new BatchCounts();
  return {
    "block.has": async (request) => {
      const hashes = request.header.hashes;
      if (!Array.isArray(hashes) || hashes.length > 4096) throw new TypeError("bad hashes");
      const have = await Promise.all(hashes.map((hash) => engine.hasBlock(String(hash))));
      return { header: { have } };
    },
    "block.put": async (request) => {
      const hash = String(request.header.hash);
      const data = request.data ?? new Uint8Array();
      // In a batch: durable at the batch's settle (block.settle), not before answering.
      const batch = request.header.batch === undefined
        ? null
        : checkBatchName(request.header.batch);
      if (sha256Hex(data) !== hash) {
        throw new CorruptionError(`Cannot store block ${hash}: its bytes do not match its name`);
      }
      if (
        request.header.heal === true && engine.freeBytes() - data.length < healDiskReserveBytes
      ) {
        throw new RangeError(
          `Cannot take block ${hash} for healing: less than ${healDiskReserveBytes} bytes free`,
        );
      }
      // A repair replaces a copy found bad (the new bytes were just verified).
      if (request.header.repair === true) await engine.deleteBlock(hash);
      const stored = await engine.putBlock(hash, data);
      if (batch === null) await engine.flush();
      else batches.took(batch);
      return { header: { stored } };
    },
    "block.settle": async (request) => {
      const batch = checkBatchName(request.header.batch);
      // Counted before the flush: every block counted was put before it, so it covers them.
      const taken = batches.settled(batch);
      await engine.flush();
      return { header: { taken } };
    },
    "block.get": async (request) => {
      const hash = String(request.header.hash);
      if (!isBlockName(hash) || !(await engine.hasBlock(hash))) {
        return { header: { found: false } };
      }
      try {
        const data = await readWhole(engine, hash, gets);
        return { header: { found: true }, data, sent: () => gets.release(data) };
      } catch (error) {
        // Handed off or collected since hasBlock(): absent, which the caller handles.
        if (!(await engine.hasBlock(hash))) return { header: { found: false } };
        throw error;
      }
    },
    "block.list": async () => {
      const hashes: string[] = [];
      for await (const hash of engine.listBlocks()) hashes.push(hash);
      return { header: { hashes } };
    },
    "block.delete": async (request) => {
      const hashes = request.header.hashes;
      if (!Array.isArray(hashes) || hashes.length > 4096) throw new TypeError("bad hashes");
      for (const hash of hashes) {
        if (isBlockName(String(hash))) await engine.deleteBlock(String(hash));
      }
      return { header: {} };
    },
  };
}

/**
 * The whole of a stored block (its length is its file's), in a buffer of
 * `buffers` when given (the caller gives it back).
 */
export async function readWhole(
  engine: NodeDisk,
  hash: string,
  buffers?: BufferPool,
): Promise<Uint8Array> {
  const size = await engine.blockSize(hash);
  if (size > blockSizeMax) throw new RangeError(`block ${hash} is larger than ${blockSizeMax}`);
  const data = buffers?.acquire(size) ?? new Uint8Array(size);
  try {
    await engine.readBlock(hash, { offset: 0, length: size }, data);
  } catch (error) {
    buffers?.release(data);
    throw error;
  }
  return data;
}
