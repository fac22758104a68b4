/**
 * Disk image containers recognized by their first bytes. Atoll stores raw
 * disks: a container stored as one would look like garbage to a VM (QEMU
 * would see a qcow2 file where a disk should be, and writes to it fail), so
 * an upload of one is refused with a clear error unless the caller says the
 * bytes are raw (`format: "raw"`, for a raw disk that happens to start so).
 */

/** What an upload's bytes are taken for: `auto` refuses known containers. */
export type UploadFormat = "raw" | "auto";

const containers: { name: string; magic: number[] }[] = [
  { name: "qcow2", magic: [0x51, 0x46, 0x49, 0xfb] }, // "QFI\xfb"
  { name: "VMDK", magic: [0x4b, 0x44, 0x4d, 0x56] }, // "KDMV"
  { name: "VHDX", magic: [...new TextEncoder().encode("vhdxfile")] },
];
const magicBytesMax = Math.max(...containers.map(({ magic }) => magic.length));

/** The format `text` names (`raw`, `auto`; absent: auto); TypeError otherwise. */
export function parseUploadFormat(text: string | undefined): UploadFormat {
  if (text === undefined || text === "auto") return "auto";
  if (text === "raw") return "raw";
  throw new TypeError(`Cannot upload: format must be raw or auto, not ${JSON.stringify(text)}`);
}

/**
 * The chunks of `body`, unchanged; with `auto`, throws TypeError (a 400)
 * before the first chunk when the body starts as a known container does.
 */
export async function* rawOnly(
  body: AsyncIterable<Uint8Array>,
  format: UploadFormat,
  what: string,
): AsyncIterable<Uint8Array> {
  if (format === "raw") return yield* body;
  const held: Uint8Array[] = [];
  let heldBytes = 0;
  let checked = false;
  for await (const chunk of body) {
    if (checked) {
      yield chunk;
      continue;
    }
    held.push(chunk);
    heldBytes += chunk.length;
    if (heldBytes < magicBytesMax) continue;
    check(held, what);
    checked = true;
    yield* held.splice(0);
  }
  if (!checked) {
    check(held, what);
    yield* held;
  }
}

function check(held: Uint8Array[], what: string): void {
  const head = new Uint8Array(magicBytesMax);
  let at = 0;
  for (const chunk of held) {
    if (at >= head.length) break;
    const part = chunk.subarray(0, head.length - at);
    head.set(part, at);
    at += part.length;
  }
  const found = containers.find(({ magic }) =>
    at >= magic.length && magic.every((byte, i) => head[i] === byte)
  );
  if (found !== undefined) {
    throw new TypeError(
      `${what}: the body is a ${found.name} file, not a raw disk; convert it first ` +
        `(qemu-img convert -O raw FILE disk.raw), or upload with ?format=raw to store it as is`,
    );
  }
}
