/**
 * The raw disk a qcow2 file describes, read in guest order from a spooled
 * copy (QEMU's docs/interop/qcow2.txt, "Cluster mapping"): the active L1
 * table names L2 tables, whose entries say for each guest cluster whether it
 * is unallocated or zero (zeros), standard (a host cluster, read as is) or
 * compressed (zlib's raw deflate, inflated to one cluster).
 *
 * Bounded by construction: the walk visits each guest cluster once (the
 * header bounds the virtual size), every read is at most one L1 batch, one
 * L2 table, a run of at most {@linkcode runBytesMax} or a compressed
 * cluster's two clusters, and every table or cluster must start inside the
 * file (bytes past its end read as zeros, as QEMU reads them).
 */
import { constants, inflateRaw } from "node:zlib";
import { promisify } from "node:util";
import type { Qcow2Header } from "./_qcow2_header.ts";
import type { Spool } from "./_spool.ts";

const inflate = promisify(inflateRaw);

/** Longest read of consecutive standard clusters, and the largest zero chunk yielded. */
const runBytesMax = 1024 * 1024;
/** L1 entries read at once. */
const l1BatchEntries = 8192;
/** Bits 9-55 of an L1 or standard L2 entry: a host offset (the high word's share). */
const offsetHighMask = 0x00ffffff;
const offsetLowMask = 0xfffffe00;
const zeros = new Uint8Array(runBytesMax);

/**
 * The raw disk of the qcow2 file in `spool`, whose checked header is `header`,
 * as chunks (each valid until the next is asked for). Throws TypeError naming
 * the first malformed table or cluster.
 */
export async function* qcow2Disk(spool: Spool, header: Qcow2Header): AsyncIterable<Uint8Array> {
  const { clusterBytes, l2Entries, sizeBytes, l1 } = header;
  const l2SpanBytes = clusterBytes * l2Entries;
  const l1Batch = new Uint8Array(Math.min(l1BatchEntries, l1.entries) * 8);
  const l2Table = new Uint8Array(clusterBytes);
  const l2View = new DataView(l2Table.buffer);
  const run = new Uint8Array(Math.max(runBytesMax, clusterBytes));
  const where = new Where(spool.sizeBytes);

  for (let l1Index = 0; l1Index < l1.entries; l1Index++) {
    const batchIndex = l1Index % l1BatchEntries;
    if (batchIndex === 0) {
      const entries = Math.min(l1BatchEntries, l1.entries - l1Index);
      await spool.readInto(l1Batch, { offset: l1.offset + l1Index * 8, length: entries * 8 });
    }
    const guestStart = l1Index * l2SpanBytes;
    const spanBytes = Math.min(l2SpanBytes, sizeBytes - guestStart);
    const l1View = new DataView(l1Batch.buffer);
    const l2Offset = hostOffset(l1View, batchIndex * 8);
    if (l2Offset === 0) {
      yield* zeroChunks(spanBytes);
      continue;
    }
    where.check(l2Offset, clusterBytes, `the L2 table of L1 entry ${l1Index}`);
    await spool.readInto(l2Table, { offset: l2Offset, length: clusterBytes });

    const clusters = Math.ceil(spanBytes / clusterBytes);
    let index = 0;
    while (index < clusters) {
      const at = index * 8;
      const high = l2View.getUint32(at);
      const guest = guestStart + index * clusterBytes;
      if (high & 0x40000000) {
        yield await inflateCluster(spool, header, l2View.getBigUint64(at), guest, where);
        index++;
        continue;
      }
      const offset = hostOffset(l2View, at);
      if (offset === 0 || (l2View.getUint32(at + 4) & 1) === 1) {
        // Unallocated (no backing file: zeros) or a zero cluster; take the whole run of them.
        let end = index + 1;
        while (end < clusters && isZeroEntry(l2View, end * 8)) end++;
        yield* zeroChunks(Math.min(end * clusterBytes, spanBytes) - index * clusterBytes);
        index = end;
        continue;
      }
      where.check(offset, clusterBytes, `guest cluster at ${guest}`);
      // Standard clusters stored one after another are read in one go.
      let end = index + 1;
      while (
        end < clusters && (end - index + 1) * clusterBytes <= run.length &&
        (l2View.getUint32(end * 8) & 0x40000000) === 0 && !isZeroEntry(l2View, end * 8) &&
        hostOffset(l2View, end * 8) === offset + (end - index) * clusterBytes &&
        offset + (end - index) * clusterBytes < spool.sizeBytes
      ) end++;
      const length = Math.min(end * clusterBytes, spanBytes) - index * clusterBytes;
      await spool.readInto(run, { offset, length });
      yield run.subarray(0, length);
      index = end;
    }
  }
}

/** The host offset (bits 9-55) of the L1 or standard L2 entry at `at`; 0: none. */
function hostOffset(view: DataView, at: number): number {
  return (view.getUint32(at) & offsetHighMask) * 2 ** 32 + ((view.getUint32(at + 4) & offsetLowMask) >>> 0);
}

/** True when the L2 entry at `at` reads as zeros: not compressed, and unallocated or flagged zero. */
function isZeroEntry(view: DataView, at: number): boolean {
  if (view.getUint32(at) & 0x40000000) return false;
  return hostOffset(view, at) === 0 || (view.getUint32(at + 4) & 1) === 1;
}

/** `bytes` of zeros, in chunks of at most {@linkcode runBytesMax}. */
function* zeroChunks(bytes: number): Iterable<Uint8Array> {
  for (let left = bytes; left > 0; left -= zeros.length) {
    yield zeros.subarray(0, Math.min(left, zeros.length));
  }
}

/**
 * The guest cluster at `guest`, stored compressed: the descriptor's offset
 * (bits 0 to x-1, x = 62 - (cluster_bits - 8)) and sector count (bits x-61,
 * one less than the 512-byte sectors it spans from that offset's sector).
 */
async function inflateCluster(
  spool: Spool,
  header: Qcow2Header,
  entry: bigint,
  guest: number,
  where: Where,
): Promise<Uint8Array> {
  const { clusterBits, clusterBytes, sizeBytes } = header;
  const x = BigInt(62 - (clusterBits - 8));
  const offset = Number(entry & ((1n << x) - 1n));
  const sectors = Number((entry >> x) & ((1n << BigInt(clusterBits - 8)) - 1n)) + 1;
  const length = sectors * 512 - (offset % 512);
  where.check(offset, 1, `compressed guest cluster at ${guest}`);
  const compressed = new Uint8Array(length);
  await spool.readInto(compressed, { offset, length });
  let cluster: Uint8Array;
  try {
    cluster = await inflate(compressed, {
      finishFlush: constants.Z_SYNC_FLUSH,
      maxOutputLength: clusterBytes,
    });
  } catch (cause) {
    throw new TypeError(
      `the qcow2 file is malformed: compressed guest cluster at ${guest} does not inflate to one cluster`,
      { cause },
    );
  }
  if (cluster.length !== clusterBytes) {
    throw new TypeError(
      `the qcow2 file is malformed: compressed guest cluster at ${guest} inflates to ` +
        `${cluster.length} bytes, not ${clusterBytes}`,
    );
  }
  return cluster.subarray(0, Math.min(clusterBytes, sizeBytes - guest));
}

/** Checks that a table or cluster starts inside the file and is aligned where it must be. */
class Where {
  constructor(readonly fileBytes: number) {}

  check(offset: number, alignment: number, what: string): void {
    if (offset % alignment !== 0) {
      throw new TypeError(`the qcow2 file is malformed: ${what} is at ${offset}, not aligned`);
    }
    if (offset >= this.fileBytes) {
      throw new TypeError(
        `the qcow2 file is malformed: ${what} is at ${offset}, past the end of the file (${this.fileBytes} bytes)`,
      );
    }
  }
}
