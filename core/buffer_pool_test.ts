import assert from "node:assert/strict";
import { addressOf, BufferPool, classOf } from "./buffer_pool.ts";

const MiB = 1024 * 1024;

Deno.test("classes: powers of two up to 1 MiB, then eighths of the next power", () => {
  assert.equal(classOf(1), 4096);
  assert.equal(classOf(4097), 8192);
  assert.equal(classOf(MiB), MiB);
  assert.equal(classOf(MiB + 1), MiB + 128 * 1024);
  assert.equal(classOf(4 * MiB), 4 * MiB);
  // A frame carrying a 4 MiB block: its method and header are a few dozen bytes more.
  assert.equal(classOf(4 * MiB + 90), 4.5 * MiB);
  assert.equal(classOf(32 * MiB), 32 * MiB);
  for (let length = 1; length < 40 * MiB; length = Math.ceil(length * 1.37) + 7) {
    const size = classOf(length);
    assert.ok(size >= length, `class of ${length}`);
    assert.ok(size <= Math.max(4096, 2 * length), `class of ${length} wastes at most half`);
    assert.equal(classOf(size), size, `a class is its own class (${size})`);
  }
});

Deno.test("a released buffer is handed out again for any length of its class", () => {
  const pool = new BufferPool(16 * MiB, 8 * MiB);
  const first = pool.acquire(4 * MiB + 90);
  assert.equal(first.length, 4 * MiB + 90);
  assert.equal(first.buffer.byteLength, 4.5 * MiB);
  first[0] = 7;
  pool.release(first);
  const again = pool.acquire(4 * MiB + 200);
  assert.equal(again.buffer, first.buffer);
  assert.equal(again.length, 4 * MiB + 200);
});

Deno.test("the pool keeps at most its bytes, and no buffer over its largest", () => {
  const pool = new BufferPool(10 * MiB, 4.5 * MiB);
  const held = [1, 2, 3].map(() => pool.acquire(4 * MiB + 90));
  for (const buffer of held) pool.release(buffer);
  // Two of 4.5 MiB fit in 10 MiB; the third was let go.
  const back = [1, 2, 3].map(() => pool.acquire(4 * MiB + 90));
  assert.equal(back.filter((b) => held.some((h) => h.buffer === b.buffer)).length, 2);
  const huge = pool.acquire(6 * MiB);
  pool.release(huge);
  assert.notEqual(pool.acquire(6 * MiB).buffer, huge.buffer);
});

Deno.test("addressOf answers where a view starts, from its buffer's address once known", () => {
  const ffi = (view: Uint8Array) =>
    Deno.UnsafePointer.value(Deno.UnsafePointer.of(view as Uint8Array<ArrayBuffer>));
  const buffer = new Uint8Array(64 * 1024);
  for (const offset of [4096, 0, 1, 12345, 65535, 4096]) {
    const view = buffer.subarray(offset, offset + 1);
    assert.equal(addressOf(view), ffi(view), `offset ${offset}`);
  }
  // A WebAssembly memory that grows hands out a new buffer (the old one detached): its views
  // are answered for the new memory, not from what was known of the old.
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 4096 });
  const before = new Uint8Array(memory.buffer, 100, 8);
  assert.equal(addressOf(before), ffi(before));
  memory.grow(2048);
  const after = new Uint8Array(memory.buffer, 100, 8);
  assert.equal(addressOf(after), ffi(after));
});
