/**
 * An image or snapshot seen as a qcow2 file (version 3, 64 KiB clusters, no
 * compression), for downloads: `GET /v1/images/NAME?format=qcow2`. Nothing is
 * written anywhere: the file's layout follows from the map, each range of it
 * is made when read (Range requests work as on raw bytes), and zero entries
 * of the map take no space in it.
 *
 * ```
 * cluster 0             header (104 bytes, no extensions)
 * L1 table              one entry per 512 MiB of disk
 * refcount table        then the refcount blocks (16-bit counts, every used cluster 1)
 * L2 tables             one per 512 MiB of disk that holds data
 * data clusters         the non-zero map entries, in disk order
 * ```
 */
import { assert } from "./assert.ts";
import type { ByteRange } from "./engine.ts";
import type { FrozenView } from "./frozen_view.ts";

const clusterBits = 16;
const clusterBytes = 2 ** clusterBits;
/** Entries of an L2 table (8 bytes each), and the disk bytes one L1 entry spans. */
const l2Entries = clusterBytes / 8;
const l1SpanBytes = l2Entries * clusterBytes;
/** 16-bit refcounts: the clusters one refcount block counts. */
const refcountsPerBlock = clusterBytes / 2;
const headerBytes = 104;
/** Bit 63 of L1 and L2 entries: the cluster's refcount is exactly one. */
const copied = 2n ** 63n;

/** A qcow2 file of a frozen image or snapshot, read by ranges. */
export class Qcow2View {
  readonly sizeBytes: number;
  #view: FrozenView;
  #entriesPerL1: number;
  #clustersPerEntry: number;
  /** Per L1 entry: its L2 table's index among the tables, or -1 when its span is all zeros. */
  #l2Index: Int32Array;
  /** Per L2 table: its L1 entry. */
  #l1OfTable: Int32Array;
  /** Per L1 entry: the data entries (non-zero map entries) stored before its span. */
  #entriesBefore: Float64Array;
  /** First cluster of each region, and the file's cluster count. */
  #at: { l1: number; refcountTable: number; refcountBlocks: number; l2: number; data: number };
  #clusters: number;

  /** The qcow2 file of `view`; RangeError when its block size is not whole 64 KiB clusters. */
  constructor(view: FrozenView) {
    const { map } = view;
    if (map.blockSize % clusterBytes !== 0 || l1SpanBytes % map.blockSize !== 0) {
      throw new RangeError(
        `Cannot export ${view.name} as qcow2: its block size (${map.blockSize}) is not a ` +
          `multiple of ${clusterBytes} bytes that divides ${l1SpanBytes}`,
      );
    }
    this.#view = view;
    this.#entriesPerL1 = l1SpanBytes / map.blockSize;
    this.#clustersPerEntry = map.blockSize / clusterBytes;
    const l1Count = Math.ceil(map.sizeBytes / l1SpanBytes);
    this.#l2Index = new Int32Array(l1Count).fill(-1);
    this.#entriesBefore = new Float64Array(l1Count);
    let tables = 0;
    let dataEntries = 0;
    for (let l1 = 0; l1 < l1Count; l1++) {
      this.#entriesBefore[l1] = dataEntries;
      const end = Math.min(map.count, (l1 + 1) * this.#entriesPerL1);
      for (let index = l1 * this.#entriesPerL1; index < end; index++) {
        if (!map.isZero(index)) dataEntries++;
      }
      if (dataEntries > this.#entriesBefore[l1]) this.#l2Index[l1] = tables++;
    }
    this.#l1OfTable = new Int32Array(tables);
    this.#l2Index.forEach((table, l1) => table >= 0 && (this.#l1OfTable[table] = l1));
    // Every data entry takes its whole clusters but the disk's last entry, which may be short.
    const last = map.count - 1;
    const lastShort = map.isZero(last)
      ? 0
      : this.#clustersPerEntry - Math.ceil(map.spanBytes(last) / clusterBytes);
    const dataClusters = dataEntries * this.#clustersPerEntry - lastShort;
    const l1Clusters = Math.ceil((l1Count * 8) / clusterBytes);
    const fixed = 1 + l1Clusters + tables + dataClusters;
    // The refcount table and blocks count themselves: grow them until they cover all.
    let blocks = 0;
    let tableClusters = 0;
    while (blocks * refcountsPerBlock < fixed + blocks + tableClusters) {
      blocks = Math.ceil((fixed + blocks + tableClusters) / refcountsPerBlock);
      tableClusters = Math.ceil((blocks * 8) / clusterBytes);
    }
    const refcountTable = 1 + l1Clusters;
    const refcountBlocks = refcountTable + tableClusters;
    const l2 = refcountBlocks + blocks;
    this.#at = { l1: 1, refcountTable, refcountBlocks, l2, data: l2 + tables };
    this.#clusters = this.#at.data + dataClusters;
    assert(this.#clusters === fixed + blocks + tableClusters);
    this.sizeBytes = this.#clusters * clusterBytes;
  }

  /** Bytes before the first data cluster: the header and every table. */
  get metadataBytes(): number {
    return this.#at.data * clusterBytes;
  }

  /** Reads `range` of the qcow2 file into `into` (or a new buffer). */
  async readAt(
    range: ByteRange,
    into: Uint8Array = new Uint8Array(range.length),
  ): Promise<Uint8Array> {
    assert(range.offset >= 0 && range.offset + range.length <= this.sizeBytes);
    let done = 0;
    while (done < range.length) {
      const offset = range.offset + done;
      const cluster = Math.floor(offset / clusterBytes);
      const within = offset % clusterBytes;
      // Data runs to the end of its map entry; metadata is made a cluster at a time.
      const isData = cluster >= this.#at.data;
      const runBytes = isData
        ? (this.#clustersPerEntry - (cluster - this.#at.data) % this.#clustersPerEntry) *
            clusterBytes - within
        : clusterBytes - within;
      const length = Math.min(runBytes, range.length - done);
      const part = into.subarray(done, done + length);
      if (isData) {
        // The disk's last cluster may reach past its end: zeros there.
        const guest = this.#guestOffset(cluster) + within;
        const inDisk = Math.max(0, Math.min(length, this.#view.sizeBytes - guest));
        if (inDisk > 0) {
          await this.#view.readAt({ offset: guest, length: inDisk }, part.subarray(0, inDisk));
        }
        part.fill(0, inDisk);
      } else {
        part.set(this.#metadata(cluster).subarray(within, within + length));
      }
      done += length;
    }
    return into;
  }

  /** The guest offset of data cluster `cluster`: the n-th non-zero map entry's. */
  #guestOffset(cluster: number): number {
    const dataCluster = cluster - this.#at.data;
    const rank = Math.floor(dataCluster / this.#clustersPerEntry);
    // The L1 entry whose span holds the rank-th data entry, then that entry within it.
    let low = 0;
    let high = this.#entriesBefore.length - 1;
    while (low < high) {
      const middle = Math.ceil((low + high) / 2);
      if (this.#entriesBefore[middle] <= rank) low = middle;
      else high = middle - 1;
    }
    let seen = this.#entriesBefore[low];
    const map = this.#view.map;
    for (let index = low * this.#entriesPerL1;; index++) {
      assert(index < map.count);
      if (map.isZero(index)) continue;
      if (seen++ === rank) {
        return index * map.blockSize + (dataCluster % this.#clustersPerEntry) * clusterBytes;
      }
    }
  }

  /** The bytes of metadata cluster `cluster` (header, L1, refcounts or an L2 table). */
  #metadata(cluster: number): Uint8Array {
    const bytes = new Uint8Array(clusterBytes);
    const view = new DataView(bytes.buffer);
    const at = this.#at;
    const offsetOf = (c: number) => BigInt(c * clusterBytes);
    if (cluster === 0) {
      view.setUint32(0, 0x514649fb); // "QFI\xfb"
      view.setUint32(4, 3);
      view.setUint32(20, clusterBits);
      view.setBigUint64(24, BigInt(this.#view.sizeBytes));
      view.setUint32(36, this.#l2Index.length);
      view.setBigUint64(40, offsetOf(at.l1));
      view.setBigUint64(48, offsetOf(at.refcountTable));
      view.setUint32(56, at.refcountBlocks - at.refcountTable);
      view.setUint32(96, 4); // refcount_order: 16-bit counts
      view.setUint32(100, headerBytes);
    } else if (cluster < at.refcountTable) {
      const first = (cluster - at.l1) * l2Entries;
      for (let i = 0; i < l2Entries && first + i < this.#l2Index.length; i++) {
        const table = this.#l2Index[first + i];
        if (table >= 0) view.setBigUint64(i * 8, offsetOf(at.l2 + table) | copied);
      }
    } else if (cluster < at.refcountBlocks) {
      const first = (cluster - at.refcountTable) * l2Entries;
      for (let i = 0; i < l2Entries && first + i < at.l2 - at.refcountBlocks; i++) {
        view.setBigUint64(i * 8, offsetOf(at.refcountBlocks + first + i));
      }
    } else if (cluster < at.l2) {
      const first = (cluster - at.refcountBlocks) * refcountsPerBlock;
      for (let i = 0; i < refcountsPerBlock && first + i < this.#clusters; i++) {
        view.setUint16(i * 2, 1);
      }
    } else {
      this.#l2Table(cluster - at.l2, view);
    }
    return bytes;
  }

  /** Fills the `table`-th L2 table: a data cluster for each cluster of a non-zero entry. */
  #l2Table(table: number, view: DataView): void {
    const l1 = this.#l1OfTable[table];
    const map = this.#view.map;
    let dataEntry = this.#entriesBefore[l1];
    const end = Math.min(map.count, (l1 + 1) * this.#entriesPerL1);
    for (let index = l1 * this.#entriesPerL1; index < end; index++) {
      if (map.isZero(index)) continue;
      const firstData = this.#at.data + dataEntry * this.#clustersPerEntry;
      const slot = (index - l1 * this.#entriesPerL1) * this.#clustersPerEntry;
      const clusters = Math.ceil(map.spanBytes(index) / clusterBytes);
      for (let i = 0; i < clusters; i++) {
        view.setBigUint64((slot + i) * 8, BigInt((firstData + i) * clusterBytes) | copied);
      }
      dataEntry++;
    }
  }
}
