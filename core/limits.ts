/**
 * Every limit of the core, named with its unit and `Max` last, kept together so
 * that their relationships can be asserted once, at load time.
 */
import { assert } from "./assert.ts";

/** Default size of a block, an object and a map entry's span. */
export const blockSizeDefault = 4 * 1024 * 1024;
/** Smallest block size a map may use (one NBD sector keeps alignment sane). */
export const blockSizeMin = 4096;
/** Largest block size a map may use: bounds every per-block buffer. */
export const blockSizeMax = 64 * 1024 * 1024;
/** A volume's size is a multiple of this (a disk sector to every hypervisor). */
export const sectorBytes = 512;
/** Largest image or volume: 64 TiB, 16 Mi entries of 4 MiB (a 560 MiB map). */
export const volumeSizeBytesMax = 64 * 1024 ** 4;
/** Largest entry count of one map, whatever its block size. */
export const mapEntriesMax = 16 * 1024 * 1024;
/** Longest name of an image, volume or snapshot, in characters. */
export const nameLengthMax = 128;
/**
 * Largest metadata value a node stores. Records of images, volumes and
 * snapshots are far smaller (`recordBytesMax`); maps written before maps had
 * pages were whole in their record, up to 560 MiB, and still load.
 */
export const metaValueBytesMax = 600 * 1024 * 1024;
/** Largest record of an image, volume or snapshot: a JSON header and a map root. */
export const recordBytesMax = 64 * 1024;
/** Entries of one map page (core/_map_pages.ts), and children of an inner page. */
export const mapPageEntries = 4096;
/** Largest map page: every slot used, at the widest slot (an inner page's, 38 bytes). */
export const mapPageBytesMax = 8 + mapPageEntries * 38;
/** Extents one listing of a volume's changes holds at most (about 40 MiB of JSON). */
export const changeExtentsMax = 1024 * 1024;
/** Files the local engine keeps open at once for reads and writes. */
export const openFilesMax = 1024;
/** Blocks one upload keeps in flight (hashing or being written). */
export const uploadBlocksInFlightMax = 8;
/** Uploads that may run at once on one node. */
export const uploadsMax = 16;

assert(blockSizeMin <= blockSizeDefault && blockSizeDefault <= blockSizeMax);
assert(Number.isSafeInteger(volumeSizeBytesMax) && volumeSizeBytesMax % sectorBytes === 0);
assert(volumeSizeBytesMax / blockSizeDefault <= mapEntriesMax);
assert(recordBytesMax <= metaValueBytesMax);
assert(mapEntriesMax <= mapPageEntries * mapPageEntries, "two levels of pages reach every entry");
assert(uploadBlocksInFlightMax >= 2, "an upload needs one block filling while one is hashed");
