/**
 * A replica's write-ahead journal of object changes (docs/decisions.md,
 * "Replica journal"). Every change a replica applies is appended here, data
 * included, before the change is acknowledged; a flush then costs one sync of
 * the journal, shared by every flush waiting at that moment (group commit),
 * instead of a sync of each object file changed and a rewrite of the stamps
 * record of each volume. Object files and `ov/UID` records catch up at a
 * checkpoint (object_service.ts), after which the journals before it go.
 *
 * Journals are numbered (generations): a checkpoint starts a new one and
 * removes the older ones once the object files and stamps they describe are
 * durable. After a crash every journal left is replayed in order: replaying a
 * change already on disk writes the same bytes again.
 *
 * A record is framed as u32 length, u32 CRC-32 of the body, then the body: u8
 * kind, u8 flags, u8 name length, the name, f64 epoch, f64 version, f64
 * offset, the data. A record torn by a crash fails its checksum and ends the
 * replay: its sync never completed, so no change in it was acknowledged as
 * durable. Large changes go to the object file alone, and their record (no
 * bytes) follows once that file is synced (`placed`).
 *
 * @module
 */
import zlib from "node:zlib";
import type { Stamp } from "./object_link.ts";

/** Where journals are kept: files beside the data, or the simulation's memory. */
export interface JournalStore {
  /** The generations present, oldest first. */
  journals(): Promise<number[]>;
  /** Everything journal `gen` holds (a torn tail included). */
  readJournal(gen: number): Promise<Uint8Array>;
  /** Appends `parts` to journal `gen` (created when missing); durable once syncJournal resolves. */
  appendJournal(gen: number, parts: Uint8Array[]): void;
  /** Makes everything appended to journal `gen` so far durable. */
  syncJournal(gen: number): Promise<void>;
  /** Removes journal `gen` durably. */
  removeJournal(gen: number): Promise<void>;
  /** Lets go of open files (nothing appended is lost: it stays as the page cache has it). */
  closeJournals(): void;
}

/** What a journal record does to an object. */
export type JournalRecord =
  | {
    kind: "write";
    name: string;
    stamp: Stamp;
    offset: number;
    data: Uint8Array;
    truncate: boolean;
  }
  | { kind: "remove"; name: string; stamp: Stamp }
  | { kind: "drop"; name: string }
  /**
   * A change written in place, whose bytes are in the object file: its record
   * is appended only after that file was synced, so the file holds this change
   * and every one before it (replay skips those).
   */
  | { kind: "placed"; name: string; stamp: Stamp };

const kinds = { write: 1, remove: 2, drop: 3, placed: 4 } as const;
const frameBytes = 8;
/** Body bytes before the name: kind, flags, name length. */
const leadBytes = 3;
/** Body bytes between the name and the data: epoch, version, offset. */
const fieldsBytes = 24;
const truncateFlag = 1;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The frame and body head of `record`, and its data as its own part (not copied). */
export function encodeRecord(record: JournalRecord): Uint8Array[] {
  const name = encoder.encode(record.name);
  const data = record.kind === "write" ? record.data : new Uint8Array();
  const head = new Uint8Array(frameBytes + leadBytes + name.length + fieldsBytes);
  const view = new DataView(head.buffer);
  head[frameBytes] = kinds[record.kind];
  head[frameBytes + 1] = record.kind === "write" && record.truncate ? truncateFlag : 0;
  head[frameBytes + 2] = name.length;
  head.set(name, frameBytes + leadBytes);
  const at = frameBytes + leadBytes + name.length;
  const stamp = record.kind === "drop" ? [0, 0] : record.stamp;
  view.setFloat64(at, stamp[0]);
  view.setFloat64(at + 8, stamp[1]);
  view.setFloat64(at + 16, record.kind === "write" ? record.offset : 0);
  const bodyHead = head.subarray(frameBytes);
  view.setUint32(0, bodyHead.length + data.length);
  view.setUint32(4, zlib.crc32(data, zlib.crc32(bodyHead)));
  return data.length === 0 ? [head] : [head, data];
}

/** The whole records of a journal, in order, up to the first torn or damaged one. */
export function* decodeRecords(bytes: Uint8Array): Generator<JournalRecord> {
  for (let at = 0; at + frameBytes <= bytes.length;) {
    const view = new DataView(bytes.buffer, bytes.byteOffset + at);
    const length = view.getUint32(0);
    const body = bytes.subarray(at + frameBytes, at + frameBytes + length);
    if (body.length !== length || length < leadBytes) return;
    if (zlib.crc32(body) !== view.getUint32(4)) return;
    const nameBytes = body[2];
    const fieldsAt = leadBytes + nameBytes;
    if (length < fieldsAt + fieldsBytes) return;
    const name = decoder.decode(body.subarray(leadBytes, fieldsAt));
    const fields = new DataView(body.buffer, body.byteOffset + fieldsAt, fieldsBytes);
    const stamp: Stamp = [fields.getFloat64(0), fields.getFloat64(8)];
    const kind = body[0];
    if (kind === kinds.write) {
      const data = body.subarray(fieldsAt + fieldsBytes);
      const truncate = (body[1] & truncateFlag) !== 0;
      yield { kind: "write", name, stamp, offset: fields.getFloat64(16), data, truncate };
    } else if (kind === kinds.remove) {
      yield { kind: "remove", name, stamp };
    } else if (kind === kinds.drop) {
      yield { kind: "drop", name };
    } else if (kind === kinds.placed) {
      yield { kind: "placed", name, stamp };
    } else {
      return;
    }
    at += frameBytes + length;
  }
}

/** Bytes of a record for `dataBytes` of data (what a journal grows by). */
export function recordBytes(name: string, dataBytes: number): number {
  return frameBytes + leadBytes + name.length + fieldsBytes + dataBytes;
}
