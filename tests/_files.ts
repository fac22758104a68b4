/** Test helpers for generated images and comparing bytes by SHA-256 (native, streaming). */
import { createHash } from "node:crypto";

/** Deterministic pseudo-random bytes (xorshift32), different for each seed. */
export function patternBytes(length: number, seed: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(length);
  const words = new Uint32Array(out.buffer, 0, length >>> 2);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
  for (let i = words.length * 4; i < length; i++) out[i] = (x >>> (i & 3) * 8) & 0xff;
  return out;
}

/** SHA-256 hex of everything a stream yields. */
export async function streamSha256(stream: ReadableStream<Uint8Array>): Promise<string> {
  const hash = createHash("sha256");
  let bytes = 0;
  for await (const chunk of stream) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return `${bytes}:${hash.digest("hex")}`;
}

/** SHA-256 hex of a file. */
export async function fileSha256(path: string): Promise<string> {
  return await streamSha256((await Deno.open(path)).readable);
}

/** SHA-256 hex of a byte array. */
export function bytesSha256(bytes: Uint8Array): string {
  return `${bytes.length}:${createHash("sha256").update(bytes).digest("hex")}`;
}

/** Runs a command; returns stdout as text, throws with stderr on failure. */
export async function run(command: string, args: string[]): Promise<string> {
  const output = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder();
  if (!output.success) {
    throw new Error(`${command} ${args.join(" ")} failed: ${text.decode(output.stderr)}`);
  }
  return text.decode(output.stdout);
}

/**
 * Asserts two byte arrays are equal, naming the first differing offset (a
 * deepEqual diff of megabytes would take gigabytes to print).
 */
export function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  if (actual.length !== expected.length) {
    throw new Error(`${what}: ${actual.length} bytes, expected ${expected.length}`);
  }
  for (let i = 0; i < actual.length; i++) {
    if (actual[i] !== expected[i]) {
      throw new Error(`${what}: byte ${i} is ${actual[i]}, expected ${expected[i]}`);
    }
  }
}
