/**
 * Goal: a collection keeps every object a record may still name when other
 * nodes change the catalogue while it runs: a volume created meanwhile, a
 * snapshot neither mark lists, a volume open here whose instance copied up
 * what its record still names.
 * Method: collectGarbage over a local engine, records and objects written by
 * hand, the catalogue changed from the pause between the two marks (`settle`),
 * as another node would.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { BlockMap, objectName } from "./block_map.ts";
import { collectGarbage } from "./gc.ts";
import { LocalEngine } from "./local_engine.ts";
import { encodeRecord, recordKey, type VolumeHeader } from "./records.ts";
import { Volume } from "./volume.ts";

const blockSize = 64 * 1024;

async function withEngine(test: (engine: LocalEngine) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "atoll-gc-" });
  const engine = await LocalEngine.open({ dir });
  try {
    await test(engine);
  } finally {
    await engine.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function header(name: string, uid: string, generation: number): VolumeHeader {
  return { name, uid, generation, createdAt: "", origin: { kind: "empty" } };
}

/** A map of one entry naming `object` (none: zeros). */
function mapOf(object?: string): BlockMap {
  const map = new BlockMap({ sizeBytes: blockSize, blockSize });
  if (object !== undefined) map.set(0, { kind: "object", name: object });
  return map;
}

async function exists(engine: LocalEngine, name: string): Promise<boolean> {
  for await (const stored of engine.listObjects()) if (stored === name) return true;
  return false;
}

const uidA = "a".repeat(32), uidB = "b".repeat(32);

Deno.test("collectGarbage() spares the objects of a volume created after its marks", async () => {
  await withEngine(async (engine) => {
    const garbage = new Uint8Array(512).fill(3);
    await engine.putBlock(createHash("sha256").update(garbage).digest("hex"), garbage);
    await engine.flush();
    const created = objectName(uidB, 1, 0);
    await collectGarbage({
      engine,
      openVolumes: [],
      pinned: () => false,
      // Another node creates a volume and writes it once the marks are done (here,
      // while the blocks are swept): no mark saw its record, and its object must
      // not be taken for garbage.
      deleteBlock: async (hash) => {
        await engine.writeObject(created, 0, new Uint8Array(512));
        await engine.putMeta(
          recordKey.volume("b"),
          await encodeRecord(engine, header("b", uidB, 1), mapOf(created)),
          0,
        );
        await engine.deleteBlock(hash);
        return true;
      },
    });
    assert.ok(await exists(engine, created));
  });
});

Deno.test("collectGarbage() keeps the generation a snapshot taken between its marks froze", async () => {
  await withEngine(async (engine) => {
    const frozen = objectName(uidA, 1, 0), copied = objectName(uidA, 2, 0);
    const version = await engine.putMeta(
      recordKey.volume("a"),
      await encodeRecord(engine, header("a", uidA, 1), mapOf()),
      0,
    );
    await collectGarbage({
      engine,
      openVolumes: [],
      pinned: () => false,
      // Between the marks the volume writes an object of generation 1, a snapshot
      // freezes it (the snapshot's record is not listed yet) and a write copies
      // the entry up into generation 2: no mark sees a map naming the frozen one.
      settle: async () => {
        await engine.writeObject(frozen, 0, new Uint8Array(512));
        await engine.writeObject(copied, 0, new Uint8Array(512));
        await engine.putMeta(
          recordKey.volume("a"),
          await encodeRecord(engine, header("a", uidA, 2), mapOf(copied)),
          version,
        );
      },
    });
    assert.ok(await exists(engine, frozen), "the frozen object is kept");
    assert.ok(await exists(engine, copied));
  });
});

Deno.test("collectGarbage() marks a volume open here from its record as well as its instance", async () => {
  await withEngine(async (engine) => {
    // The record names an object of another volume (a clone's source); the open
    // instance copied the entry up into its own object and has not flushed.
    const source = objectName(uidB, 1, 0);
    await engine.writeObject(source, 0, new Uint8Array(blockSize).fill(7));
    const record = header("a", uidA, 1);
    const version = await engine.putMeta(
      recordKey.volume("a"),
      await encodeRecord(engine, record, mapOf(source)),
      0,
    );
    const volume = new Volume(engine, record, mapOf(source), version);
    await volume.writeAt(0, new Uint8Array(512).fill(9));
    await collectGarbage({ engine, openVolumes: [volume], pinned: () => false });
    assert.ok(await exists(engine, source), "the object the record names is kept");
  });
});
