/**
 * The raw disk a qcow2 file describes, read in guest order from a spooled
 * copy (QEMU's docs/interop/qcow2.txt, "Cluster mapping"): the active L1
 * table names L2 tables, whose entries say for each guest cluster whether it
 * is unallocated or zero (zeros), standard (a host cluster, read as is) or
 * compressed (zlib's raw deflate, inflated to one cluster).
 *
 * A walk of the tables plans the pieces of the disk (runs of zeros, runs of
 * consecutive standard clusters, compressed clusters). A first walk checks
 * every table and place and what the pieces add up to, before any byte goes
 * out; the second yields them, up to {@linkcode readAheadMax} read or
 * inflated at once, in order. Runs of zeros go out by length only (ingest's
 * ZeroRun).
 *
 * Bounded by construction: the walk visits each guest cluster once (the
 * header bounds the virtual size and the L1 table), every read is at most one
 * L1 batch, one L2 table, a run of at most {@linkcode runBytesMax} or a
 * compressed cluster's two clusters, and every table or cluster must start
 * inside the file (bytes past its end read as zeros, as QEMU reads them).
 * And the data cannot claim more of the file than it has: standard clusters
 * are distinct clusters of the file, and a compressed cluster's deflate
 * stream takes at least 1/{@linkcode deflateRatioMax} of its size, so a
 * file whose tables point many guest clusters at the same place (to make the
 * node store far more than was sent) is refused.
 */
import { constants, inflateRaw } from "node:zlib";
import { promisify } from "node:util";
import type { ZeroRun } from "./ingest.ts";
import type { Qcow2Header } from "./_qcow2_header.ts";
import type { Spool } from "./_spool.ts";

const inflate = promisify(inflateRaw);

/** Longest read of consecutive standard clusters (or one cluster, when larger). */
const runBytesMax = 1024 * 1024;
/** Pieces read or inflated at once. */
const readAheadMax = 4;
/** L1 entries read at once. */
const l1BatchEntries = 8192;
/** Deflate's largest ratio of output to input (258-byte matches in 2 bits, and more). */
const deflateRatioMax = 1032;
/** Bit 62 of an L2 entry: the cluster is compressed. */
const compressedBit = 0x40000000;

/** One piece of the disk, in guest order. */
type Piece =
  | ZeroRun
  | { offset: number; length: number; guest: number; compressed: boolean };

/**
 * The raw disk of the qcow2 file in `spool`, whose checked header is `header`:
 * its bytes, with runs of zeros by length. Throws TypeError naming the first
 * malformed table or cluster.
 */
export async function* qcow2Disk(
  spool: Spool,
  header: Qcow2Header,
): AsyncIterable<Uint8Array | ZeroRun> {
  let fileBytesClaimed = 0;
  for await (const piece of pieces(spool, header)) {
    if ("zeroBytes" in piece) continue;
    fileBytesClaimed += piece.compressed
      ? header.clusterBytes / deflateRatioMax
      : Math.ceil(piece.length / header.clusterBytes) * header.clusterBytes;
  }
  // A last cluster may end past the file's end (its bytes there read as zeros): one cluster more.
  if (fileBytesClaimed > spool.sizeBytes + header.clusterBytes) {
    throw new TypeError(
      `the qcow2 file is malformed: its tables describe more data than its ${spool.sizeBytes} ` +
        `bytes can hold (clusters used more than once)`,
    );
  }
  const window: Promise<Uint8Array | ZeroRun>[] = [];
  try {
    for await (const piece of pieces(spool, header)) {
      const read = "zeroBytes" in piece ? Promise.resolve(piece) : readPiece(spool, header, piece);
      read.catch(() => {}); // awaited below, in order; never an unhandled rejection
      window.push(read);
      if (window.length >= readAheadMax) yield await window.shift()!;
    }
    while (window.length > 0) yield await window.shift()!;
  } finally {
    await Promise.allSettled(window);
  }
}

/** The pieces of the disk, from its L1 and L2 tables; zero runs merged across tables. */
async function* pieces(spool: Spool, header: Qcow2Header): AsyncIterable<Piece> {
  const { clusterBytes, l2Entries, sizeBytes, l1 } = header;
  const l2SpanBytes = clusterBytes * l2Entries;
  const l1Batch = new Uint8Array(Math.min(l1BatchEntries, l1.entries) * 8);
  const l1View = new DataView(l1Batch.buffer);
  const l2Table = new Uint8Array(clusterBytes);
  const l2View = new DataView(l2Table.buffer);
  const runClusters = Math.max(1, runBytesMax / clusterBytes);
  let zeroBytes = 0;

  for (let l1Index = 0; l1Index < l1.entries; l1Index++) {
    const batchIndex = l1Index % l1BatchEntries;
    if (batchIndex === 0) {
      const entries = Math.min(l1BatchEntries, l1.entries - l1Index);
      await spool.readInto(l1Batch, { offset: l1.offset + l1Index * 8, length: entries * 8 });
    }
    const guestStart = l1Index * l2SpanBytes;
    const spanBytes = Math.min(l2SpanBytes, sizeBytes - guestStart);
    const l2Offset = hostOffset(l1View, batchIndex * 8);
    if (l2Offset === 0) {
      zeroBytes += spanBytes;
      continue;
    }
    checkPlace(l2Offset, clusterBytes, spool.sizeBytes, `the L2 table of L1 entry ${l1Index}`);
    await spool.readInto(l2Table, { offset: l2Offset, length: clusterBytes });

    const clusters = Math.ceil(spanBytes / clusterBytes);
    const bytesFrom = (index: number) => Math.min(index * clusterBytes, spanBytes);
    for (let index = 0; index < clusters;) {
      const at = index * 8;
      const guest = guestStart + index * clusterBytes;
      if (isZero(l2View, at)) {
        let end = index + 1;
        while (end < clusters && isZero(l2View, end * 8)) end++;
        zeroBytes += bytesFrom(end) - bytesFrom(index);
        index = end;
        continue;
      }
      if (zeroBytes > 0) yield { zeroBytes };
      zeroBytes = 0;
      if (l2View.getUint32(at) & compressedBit) {
        const place = compressedPlace(l2View.getBigUint64(at), header);
        checkPlace(place.offset, 1, spool.sizeBytes, `compressed guest cluster at ${guest}`);
        yield { ...place, guest, compressed: true };
        index++;
        continue;
      }
      const offset = hostOffset(l2View, at);
      checkPlace(offset, clusterBytes, spool.sizeBytes, `guest cluster at ${guest}`);
      // Standard clusters stored one after another are read in one go.
      let end = index + 1;
      while (
        end < clusters && end - index < runClusters && !isZero(l2View, end * 8) &&
        (l2View.getUint32(end * 8) & compressedBit) === 0 &&
        hostOffset(l2View, end * 8) === offset + (end - index) * clusterBytes &&
        offset + (end - index) * clusterBytes < spool.sizeBytes
      ) end++;
      yield { offset, length: bytesFrom(end) - bytesFrom(index), guest, compressed: false };
      index = end;
    }
  }
  if (zeroBytes > 0) yield { zeroBytes };
}

/** The host offset (bits 9-55) of the L1 or standard L2 entry at `at`; 0: none. */
function hostOffset(view: DataView, at: number): number {
  const high = view.getUint32(at) & 0x00ffffff;
  return high * 2 ** 32 + ((view.getUint32(at + 4) & 0xfffffe00) >>> 0);
}

/** True when the L2 entry at `at` reads as zeros: not compressed, and unallocated or flagged zero. */
function isZero(view: DataView, at: number): boolean {
  if (view.getUint32(at) & compressedBit) return false;
  return (view.getUint32(at + 4) & 1) === 1 || hostOffset(view, at) === 0;
}

/**
 * Where a compressed cluster lies: its descriptor's offset (bits 0 to x-1,
 * x = 62 - (cluster_bits - 8)) and sector count (bits x-61, one less than the
 * 512-byte sectors it spans from that offset's sector).
 */
function compressedPlace(entry: bigint, header: Qcow2Header): { offset: number; length: number } {
  const x = BigInt(62 - (header.clusterBits - 8));
  const offset = Number(entry & ((1n << x) - 1n));
  const sectors = Number((entry >> x) & ((1n << BigInt(header.clusterBits - 8)) - 1n)) + 1;
  return { offset, length: sectors * 512 - (offset % 512) };
}

/** Reads a run of standard clusters, or reads and inflates a compressed one. */
async function readPiece(
  spool: Spool,
  header: Qcow2Header,
  piece: { offset: number; length: number; guest: number; compressed: boolean },
): Promise<Uint8Array> {
  const { clusterBytes, sizeBytes } = header;
  const { offset, length, guest } = piece;
  if (!piece.compressed) {
    const bytes = new Uint8Array(length);
    await spool.readInto(bytes, { offset, length });
    return bytes;
  }
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

/** Checks that a table or cluster is aligned and starts inside the file. */
function checkPlace(offset: number, alignment: number, fileBytes: number, what: string): void {
  if (offset % alignment !== 0) {
    throw new TypeError(`the qcow2 file is malformed: ${what} is at ${offset}, not aligned`);
  }
  if (offset >= fileBytes) {
    throw new TypeError(
      `the qcow2 file is malformed: ${what} is at ${offset}, past the end of the file (${fileBytes} bytes)`,
    );
  }
}
