/**
 * Goal: a write answered before its bytes are written (NodeDisk.startObjectWrite,
 * a replica's large change from a peer) is seen by every access of its object
 * asked after it, is covered by the object's next sync and by a flush, and,
 * when it fails, makes the object's reads and syncs fail until it is written
 * whole again or deleted: nothing reads or claims bytes that never landed.
 * Method: a LocalEngine in a temporary directory (direct writes taken), and
 * one on a 3 MiB tmpfs mounted by the test (as root) where a 4 MiB write
 * runs out of room; reads through the engine and a fresh engine on the files.
 */
import assert from "node:assert/strict";
import { bytesSha256, patternBytes } from "../tests/_files.ts";
import { LocalEngine } from "./local_engine.ts";
import { directWrites, lostWrites } from "../metrics/mod.ts";
import { withSmallDisk } from "../tests/_small_disk.ts";

const MiB = 1024 * 1024;
const uid = "cd".repeat(16);

async function objectWritesDirect(): Promise<number> {
  const { values } = await directWrites.get();
  return values.find((v) => v.labels.kind === "object" && v.labels.result === "direct")?.value ??
    0;
}

async function read(engine: LocalEngine, name: string, offset: number, length: number) {
  const into = new Uint8Array(length);
  await engine.readObject(name, { offset, length }, into);
  return into;
}

Deno.test("a started write is seen by every later access of its object, and synced with it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-started-writes-" });
  try {
    const engine = await LocalEngine.open({ dir });
    const before = await objectWritesDirect();
    const names = Array.from({ length: 4 }, (_, i) => `${uid}.1.${i}`);
    const expected = names.map(() => new Uint8Array(4 * MiB));
    const writes: Promise<void>[] = [];
    // Four 1 MiB writes into each of four objects, asked one after another without waiting
    // for the bytes; a read asked after each answer sees it, whatever is still under way.
    for (const [i, name] of names.entries()) {
      for (let k = 0; k < 4; k++) {
        const data = patternBytes(MiB, i * 4 + k);
        const { written } = await engine.startObjectWrite(name, k * MiB, data, {
          truncate: k === 0,
        });
        writes.push(written);
        expected[i].set(data, k * MiB);
        assert.deepEqual(await read(engine, name, k * MiB, 4096), data.subarray(0, 4096));
      }
    }
    await engine.syncObjects(names.slice(0, 2));
    for (const [i, name] of names.entries()) {
      assert.equal(
        bytesSha256(await read(engine, name, 0, 4 * MiB)),
        bytesSha256(expected[i]),
        `object ${i} whole`,
      );
    }
    await engine.flush();
    await Promise.all(writes); // none failed
    assert.equal(await objectWritesDirect() - before, 16, "every write went around the cache");
    // Short writes take no detour: written on the spot, as writeObject.
    const { written } = await engine.startObjectWrite(names[0], 0, patternBytes(4096, 99));
    await written;
    expected[0].set(patternBytes(4096, 99));
    await engine.close();
    const again = await LocalEngine.open({ dir });
    for (const [i, name] of names.entries()) {
      assert.equal(
        bytesSha256(await read(again, name, 0, 4 * MiB)),
        bytesSha256(expected[i]),
        `object ${i} reopened`,
      );
    }
    await again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a started write that fails fails the object's reads and syncs until it is written whole", () =>
  withSmallDisk("3m", async (dir) => {
    const engine = await LocalEngine.open({ dir, startRoomBytes: -64 * MiB });
    try {
      const name = `${uid}.1.0`;
      const other = `${uid}.1.1`;
      const first = patternBytes(MiB, 1);
      await (await engine.startObjectWrite(name, 0, first, { truncate: true })).written;
      await engine.writeObject(other, 0, patternBytes(4096, 4));
      await engine.syncObjects([name, other]);
      // 4 MiB into 3 MiB of room: answered at once, then refused by the disk.
      const lostBefore = (await lostWrites.get()).values[0].value;
      const { written } = await engine.startObjectWrite(name, 0, patternBytes(4 * MiB, 2));
      await assert.rejects(written, /lost a write|ENOSPC|no space/i);
      assert.equal((await lostWrites.get()).values[0].value, lostBefore + 1, "counted");
      await assert.rejects(read(engine, name, 0, 4096), /lost a write/);
      await assert.rejects(engine.syncObjects([name]), /lost a write/);
      await assert.rejects(engine.flush(), /lost a write/);
      // A change on top of what is not there is refused too; other objects are not concerned.
      await assert.rejects(engine.writeObject(name, 0, patternBytes(4096, 3)), /lost a write/);
      assert.deepEqual(await read(engine, other, 0, 4096), patternBytes(4096, 4));
      // Written whole again (a replacement), the object reads and syncs as ever.
      const whole = patternBytes(512 * 1024, 5);
      await (await engine.startObjectWrite(name, 0, whole, { truncate: true })).written;
      assert.equal(
        bytesSha256(await read(engine, name, 0, whole.length)),
        bytesSha256(whole),
        "written whole again",
      );
      await engine.syncObjects([name]);
      // Lost again, then deleted: gone, and nothing to refuse any more.
      await assert.rejects(
        (await engine.startObjectWrite(name, 0, patternBytes(4 * MiB, 6))).written,
      );
      await engine.deleteObject(name);
      assert.deepEqual(await read(engine, name, 0, 4096), new Uint8Array(4096));
      await engine.flush();
    } finally {
      await engine.close().catch(() => {}); // a copy still lost fails its flush
    }
  }));
