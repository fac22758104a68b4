/**
 * The header of a qcow2 file (QEMU's docs/interop/qcow2.txt, "Header"), read
 * and checked before any table is: every field that sizes a read or a loop is
 * bounded here, and every feature this reader does not implement is refused
 * with its name (a backing file, encryption, an external data file, zstd
 * compression, extended L2 entries).
 */
import {
  qcow2ClusterBitsMax,
  qcow2L1EntriesMax,
  sectorBytes,
  volumeSizeBytesMax,
} from "./limits.ts";

/** Bytes of the header this reader looks at (v3 fields through compression_type). */
export const qcow2HeaderBytes = 112;
/** Longest backing file name the format allows, in bytes. */
const backingNameBytesMax = 1023;

/** What the reader needs of a checked qcow2 header. */
export interface Qcow2Header {
  version: 2 | 3;
  clusterBits: number;
  clusterBytes: number;
  /** The virtual disk's size in bytes: the raw disk's. */
  sizeBytes: number;
  /** Offset of the active L1 table, and the entries the virtual size needs of it. */
  l1: { offset: number; entries: number };
  /** Entries of one L2 table (a cluster of 8-byte entries). */
  l2Entries: number;
}

/** Incompatible feature bits (header bytes 72-79) and what they mean. */
const incompatible = {
  dirty: 1n << 0n,
  corrupt: 1n << 1n,
  externalData: 1n << 2n,
  compressionType: 1n << 3n,
  extendedL2: 1n << 4n,
};

/**
 * Parses `bytes` (the file's first {@linkcode qcow2HeaderBytes} or all of a
 * shorter file) as a qcow2 header of a file of `fileBytes`. Throws TypeError
 * naming the reason for a header this reader cannot or will not use.
 * `backingName` reads the backing file's name, for the message that refuses it.
 */
export async function parseQcow2Header(
  bytes: Uint8Array,
  fileBytes: number,
  backingName: (range: { offset: number; length: number }) => Promise<Uint8Array>,
): Promise<Qcow2Header> {
  if (bytes.length < 72) throw new TypeError(`the file is too short for a qcow2 header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0) !== 0x514649fb) throw new TypeError(`the file lacks the qcow2 magic`);
  const version = view.getUint32(4);
  if (version !== 2 && version !== 3) {
    throw new TypeError(`qcow version ${version} is not supported (only 2 and 3)`);
  }
  const backingOffset = view.getBigUint64(8);
  if (backingOffset !== 0n) {
    const length = Math.min(view.getUint32(16), backingNameBytesMax);
    const name = backingOffset < BigInt(fileBytes)
      ? new TextDecoder().decode(await backingName({ offset: Number(backingOffset), length }))
      : "";
    throw new TypeError(
      `the qcow2 file has a backing file (${JSON.stringify(printable(name))}), which an image ` +
        `cannot depend on; flatten it first (qemu-img convert -O qcow2 FILE flat.qcow2)`,
    );
  }
  const clusterBits = view.getUint32(20);
  if (clusterBits < 9 || clusterBits > qcow2ClusterBitsMax) {
    throw new TypeError(
      `the qcow2 cluster size 2^${clusterBits} is outside 512 bytes to ${
        2 ** qcow2ClusterBitsMax / 1024 ** 2
      } MiB`,
    );
  }
  const size = view.getBigUint64(24);
  if (size === 0n) throw new TypeError(`the qcow2 disk is empty (virtual size 0)`);
  if (size > BigInt(volumeSizeBytesMax)) {
    throw new RangeError(
      `the qcow2 disk's virtual size, ${size} bytes, is larger than the limit (${volumeSizeBytesMax})`,
    );
  }
  const sizeBytes = Number(size);
  if (sizeBytes % sectorBytes !== 0) {
    throw new TypeError(
      `the qcow2 disk's virtual size, ${sizeBytes} bytes, is not a multiple of ${sectorBytes}`,
    );
  }
  const cryptMethod = view.getUint32(32);
  if (cryptMethod !== 0) {
    throw new TypeError(
      `the qcow2 file is encrypted (${
        cryptMethod === 1 ? "AES" : cryptMethod === 2 ? "LUKS" : `method ${cryptMethod}`
      }); ` +
        `decrypt it first (qemu-img convert --object secret,... -O qcow2)`,
    );
  }
  if (version === 3) checkFeatures(view);
  const clusterBytes = 2 ** clusterBits;
  const l2Entries = clusterBytes / 8;
  const l1Entries = Math.ceil(sizeBytes / (clusterBytes * l2Entries));
  if (view.getUint32(36) < l1Entries) {
    throw new TypeError(
      `the qcow2 L1 table has ${
        view.getUint32(36)
      } entries, fewer than the virtual size needs (${l1Entries})`,
    );
  }
  if (l1Entries > qcow2L1EntriesMax) {
    throw new RangeError(
      `the qcow2 L1 table would need ${l1Entries} entries, more than ${qcow2L1EntriesMax}; ` +
        `convert it with a larger cluster size (qemu-img convert -O qcow2 -o cluster_size=64k)`,
    );
  }
  const l1Offset = view.getBigUint64(40);
  if (
    l1Offset % BigInt(clusterBytes) !== 0n || l1Offset + BigInt(l1Entries * 8) > BigInt(fileBytes)
  ) {
    throw new TypeError(
      `the qcow2 L1 table at ${l1Offset} is not a whole aligned table within the file (${fileBytes} bytes)`,
    );
  }
  return {
    version,
    clusterBits,
    clusterBytes,
    sizeBytes,
    l1: { offset: Number(l1Offset), entries: l1Entries },
    l2Entries,
  };
}

/** Refuses the version 3 features this reader does not implement, each by name. */
function checkFeatures(view: DataView): void {
  if (view.byteLength < 104) throw new TypeError(`the qcow2 v3 header is cut short`);
  const headerLength = view.getUint32(100);
  if (headerLength < 104) {
    throw new TypeError(`the qcow2 v3 header claims ${headerLength} bytes, fewer than 104`);
  }
  const features = view.getBigUint64(72);
  const refuse = (reason: string) => {
    throw new TypeError(`the qcow2 file ${reason}`);
  };
  if (features & incompatible.corrupt) {
    refuse("is marked corrupt; repair it first (qemu-img check -r all)");
  }
  if (features & incompatible.externalData) {
    refuse("keeps its data in an external data file; convert it to a plain qcow2 or raw first");
  }
  if (features & incompatible.extendedL2) {
    refuse(
      "uses extended L2 entries (subclusters), which this reader does not implement; convert it without extended_l2",
    );
  }
  if (features & incompatible.compressionType) {
    const type = headerLength > 104 && view.byteLength > 104 ? view.getUint8(104) : 0;
    if (type !== 0) {
      refuse(
        `uses ${type === 1 ? "zstd" : `compression type ${type}`} compression; only zlib is ` +
          `supported (qemu-img convert -c -o compression_type=zlib)`,
      );
    }
  }
  const known = incompatible.dirty | incompatible.compressionType;
  const unknown = features & ~known;
  if (unknown !== 0n) {
    refuse(`uses incompatible features this reader does not know (0x${unknown.toString(16)})`);
  }
}

/** `text` with control characters shown as `?`, for a message. */
function printable(text: string): string {
  return [...text].map((c) => (c.charCodeAt(0) < 0x20 || c === "\x7f" ? "?" : c)).join("");
}
