/**
 * Disk image containers recognized by their first bytes. Atoll stores raw
 * disks: a qcow2 upload is converted to the raw disk it describes
 * (_upload_source.ts); other containers (VMDK, VHDX) would look like garbage
 * to a VM if stored as they are (QEMU would see a VMDK file where a disk
 * should be, and writes to it fail), so an upload of one is refused with a
 * clear error unless the caller says the bytes are raw (`format: "raw"`, for a
 * raw disk that happens to start so).
 */

import { type ByteSource, isByteSource, prepended, readIntoAt } from "./byte_source.ts";

/** What an upload's bytes are taken for: `auto` detects them from their first bytes. */
export type UploadFormat = "raw" | "qcow2" | "auto";

/** The formats an upload may be stored from. */
export type DiskFormat = "raw" | "qcow2";

const containers: { name: string; magic: number[] }[] = [
  { name: "qcow2", magic: [0x51, 0x46, 0x49, 0xfb] }, // "QFI\xfb"
  { name: "VMDK", magic: [0x4b, 0x44, 0x4d, 0x56] }, // "KDMV"
  { name: "VHDX", magic: [...new TextEncoder().encode("vhdxfile")] },
];
const magicBytesMax = Math.max(...containers.map(({ magic }) => magic.length));

/** The format `text` names (`raw`, `qcow2`, `auto`; absent: auto); TypeError otherwise. */
export function parseUploadFormat(text: string | undefined): UploadFormat {
  if (text === undefined || text === "auto") return "auto";
  if (text === "raw" || text === "qcow2") return text;
  throw new TypeError(
    `Cannot upload: format must be raw, qcow2 or auto, not ${JSON.stringify(text)}`,
  );
}

/**
 * The format of `body` and its chunks, unchanged. With `auto` the first bytes
 * decide: a qcow2 header is qcow2, another known container a TypeError (a 400,
 * thrown before anything is stored), anything else raw. With `qcow2`, a body
 * that does not start as one is a TypeError.
 */
export async function detectFormat(
  body: AsyncIterable<Uint8Array>,
  format: UploadFormat,
  what: string,
): Promise<{ format: DiskFormat; body: AsyncIterable<Uint8Array> }> {
  if (format === "raw") return { format, body };
  const { first, rest, stop } = isByteSource(body) ? await peekInto(body) : await peek(body);
  const found = containerOf(first);
  if (format === "qcow2") {
    if (found === "qcow2") return { format: "qcow2", body: rest };
    await stop();
    throw new TypeError(`${what}: the body is not a qcow2 file (it lacks the QFI\\xfb magic)`);
  }
  if (found === "qcow2" || found === null) return { format: found ?? "raw", body: rest };
  await stop();
  throw new TypeError(
    `${what}: the body is a ${found} file, not a raw disk; convert it first ` +
      `(qemu-img convert -O raw FILE disk.raw, or -O qcow2), or upload with ?format=raw ` +
      `to store it as is`,
  );
}

/** What detectFormat looks at: the first bytes, the whole body again, and how to drop it. */
interface Peeked {
  first: Uint8Array;
  rest: AsyncIterable<Uint8Array>;
  stop: () => Promise<void>;
}

/** The first bytes of a ByteSource, read into a buffer of their own; the rest stays one. */
async function peekInto(body: ByteSource): Promise<Peeked> {
  let held: Uint8Array = new Uint8Array(magicBytesMax);
  let filled = 0;
  while (filled < held.length) {
    const { buffer, bytes } = await readIntoAt(body, held, filled);
    held = buffer;
    if (bytes === 0) break;
    filled += bytes;
  }
  const first = held.subarray(0, filled);
  return { first, rest: prepended(first, body), stop: () => body.cancel() };
}

/** The first chunks of `body`, held to be handed out again before the rest. */
async function peek(body: AsyncIterable<Uint8Array>): Promise<Peeked> {
  const chunks = body[Symbol.asyncIterator]();
  const held: Uint8Array[] = [];
  let heldBytes = 0;
  let ended = false;
  while (heldBytes < magicBytesMax) {
    const next = await chunks.next();
    if (next.done) {
      ended = true;
      break;
    }
    held.push(next.value);
    heldBytes += next.value.length;
  }
  return {
    first: head(held),
    rest: replay(held, ended ? null : chunks),
    stop: async () => void await chunks.return?.(),
  };
}

/** The held chunks again, then the rest of `chunks` (none when it has ended). */
async function* replay(
  held: Uint8Array[],
  chunks: AsyncIterator<Uint8Array> | null,
): AsyncIterable<Uint8Array> {
  try {
    yield* held.splice(0);
    if (chunks === null) return;
    while (true) {
      const next = await chunks.next();
      if (next.done) return;
      yield next.value;
    }
  } finally {
    await chunks?.return?.();
  }
}

function head(held: Uint8Array[]): Uint8Array {
  const bytes = new Uint8Array(magicBytesMax);
  let at = 0;
  for (const chunk of held) {
    if (at >= bytes.length) break;
    const part = chunk.subarray(0, bytes.length - at);
    bytes.set(part, at);
    at += part.length;
  }
  return bytes.subarray(0, at);
}

function containerOf(bytes: Uint8Array): string | null {
  const found = containers.find(({ magic }) =>
    bytes.length >= magic.length && magic.every((byte, i) => bytes[i] === byte)
  );
  return found?.name ?? null;
}
