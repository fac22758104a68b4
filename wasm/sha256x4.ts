/**
 * SHA-256 of two to four messages of one length at once, in the four-lane
 * WebAssembly core (`_sha256x4_wat.ts`): what a hash worker runs when an
 * upload has several blocks waiting (hash_worker.ts). One message alone is
 * hashed faster by hash-wasm, which the worker uses then.
 *
 * The messages are copied into the module's memory, one lane each, and padded
 * there (FIPS 180-4, 5.1.1); lanes left empty are hashed over whatever they
 * hold and their results dropped (the four lanes cost the same as one).
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { sha256x4Base64 } from "./_sha256x4_module.ts";

/** Lanes of the core: the messages one call hashes at most. */
export const sha256Lanes = 4;

/** FIPS 180-4, 5.3.3: the initial hash value. */
const initialState = [
  0x6a09e667,
  0xbb67ae85,
  0x3c6ef372,
  0xa54ff53a,
  0x510e527f,
  0x9b05688c,
  0x1f83d9ab,
  0x5be0cd19,
];
/** Bytes of the state (eight words, four lanes each) at the start of memory. */
const stateBytes = 8 * 16;
const pageBytes = 64 * 1024;

interface Compress {
  (p0: number, p1: number, p2: number, p3: number, chunks: number, state: number): void;
}

/** See the module doc; one instance per thread. */
export class Sha256x4 {
  readonly #memory: WebAssembly.Memory;
  readonly #compress: Compress;
  /** Bytes each lane holds now (grown to the longest padded message seen). */
  #laneBytes = 0;

  private constructor(instance: WebAssembly.Instance) {
    this.#memory = instance.exports.memory as WebAssembly.Memory;
    this.#compress = instance.exports.compress as Compress;
  }

  /** Compiles and instantiates the core. */
  static async create(): Promise<Sha256x4> {
    const bytes = Buffer.from(sha256x4Base64, "base64");
    const { instance } = await WebAssembly.instantiate(bytes);
    return new Sha256x4(instance);
  }

  /** The SHA-256 of each of `messages` (one to four, all of one length), 32 bytes each. */
  hash(messages: readonly Uint8Array[]): Uint8Array[] {
    if (messages.length < 1 || messages.length > sha256Lanes) {
      throw new RangeError(`Cannot hash ${messages.length} messages at once (1 to 4)`);
    }
    const length = messages[0].length;
    if (messages.some((message) => message.length !== length)) {
      throw new RangeError("Cannot hash messages of different lengths at once");
    }
    // The message, 0x80, zeros, then its length in bits as a big-endian u64.
    const padded = Math.ceil((length + 9) / 64) * 64;
    this.#reserve(padded);
    const bytes = new Uint8Array(this.#memory.buffer);
    const view = new DataView(this.#memory.buffer);
    const lanes = [0, 1, 2, 3].map((lane) => stateBytes + lane * this.#laneBytes);
    for (const [lane, message] of messages.entries()) {
      const at = lanes[lane];
      bytes.set(message, at);
      bytes.fill(0, at + length, at + padded);
      bytes[at + length] = 0x80;
      view.setUint32(at + padded - 8, Math.floor(length / 0x20000000), false);
      view.setUint32(at + padded - 4, (length * 8) >>> 0, false);
    }
    for (const [word, value] of initialState.entries()) {
      for (let lane = 0; lane < sha256Lanes; lane++) {
        view.setUint32(word * 16 + lane * 4, value, true);
      }
    }
    this.#compress(lanes[0], lanes[1], lanes[2], lanes[3], padded / 64, 0);
    return messages.map((_, lane) => {
      const digest = new Uint8Array(32);
      const out = new DataView(digest.buffer);
      for (let word = 0; word < 8; word++) {
        out.setUint32(word * 4, view.getUint32(word * 16 + lane * 4, true), false);
      }
      return digest;
    });
  }

  /** Grows the memory so that each lane holds `padded` bytes. */
  #reserve(padded: number): void {
    if (padded <= this.#laneBytes) return;
    const needed = stateBytes + sha256Lanes * padded;
    const have = this.#memory.buffer.byteLength;
    if (needed > have) this.#memory.grow(Math.ceil((needed - have) / pageBytes));
    this.#laneBytes = padded;
  }
}
