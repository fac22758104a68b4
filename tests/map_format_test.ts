/**
 * Goal: a data directory whose maps were written whole in their records (the
 * format before maps had pages) serves the same bytes after an upgrade, and
 * the node rewrites those records as a root and pages when it starts, once.
 * Method: a real node writes an image, a clone with its own writes and a
 * snapshot; stopped, its records are put back in the former format with the
 * engine the node uses (LocalEngine on its data directory); started again, it
 * logs the rewrite, every export reads as before over NBD, and the records are
 * small roots.
 */
import assert from "node:assert/strict";
import { LocalEngine } from "../core/local_engine.ts";
import { decodeRecord, recordHasLegacyMap } from "../core/records.ts";
import { encodeEntry } from "../core/block_map.ts";
import type { BlockMap } from "../core/block_map.ts";
import { patternBytes } from "./_files.ts";
import { startNode } from "./_node.ts";
import {
  createSnapshot,
  createVolume,
  MiB,
  nbdSha256,
  qemuIo,
  uploadImage,
  withNode,
} from "./_nbd.ts";

/** The former record: u32 header length, JSON header, then the whole map ("ATMP"). */
function legacyRecord(header: unknown, map: BlockMap): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const mapBytes = new Uint8Array(20 + map.count * 33);
  const view = new DataView(mapBytes.buffer);
  view.setUint32(0, 0x41544d50);
  view.setUint32(4, map.count);
  view.setUint32(8, map.blockSize);
  view.setFloat64(12, map.sizeBytes);
  for (let index = 0; index < map.count; index++) {
    const ref = mapBytes.subarray(20 + map.count + index * 32, 20 + map.count + (index + 1) * 32);
    mapBytes[20 + index] = encodeEntry(map.get(index), ref);
  }
  const bytes = new Uint8Array(4 + json.length + mapBytes.length);
  new DataView(bytes.buffer).setUint32(0, json.length);
  bytes.set(json, 4);
  bytes.set(mapBytes, 4 + json.length);
  return bytes;
}

const keys = ["image/img", "volume/vm", "snapshot/vm@s"];

Deno.test("maps written whole before pages load after the upgrade and are rewritten as pages", async () => {
  await withNode(async (setup) => {
    const image = patternBytes(12 * MiB + 4096, 5);
    await uploadImage(setup.node, "img", image);
    await createVolume(setup.node, "vm", { image: "img" });
    await qemuIo(setup.node.nbdUri("vm"), ["write -P 7 4M 8k", "flush"]);
    await createSnapshot(setup.node, "vm", "s");
    const exports = ["image/img", "vm", "snapshot/vm@s"];
    const before = await Promise.all(exports.map((name) => nbdSha256(setup.node.nbdUri(name))));
    await setup.node.stop();

    const engine = await LocalEngine.open({ dir: setup.node.data });
    try {
      for (const key of keys) {
        const entry = (await engine.getMeta(key))!;
        const { header, map } = await decodeRecord(engine, entry.value);
        await engine.putMeta(key, legacyRecord(header, map), entry.version);
        assert.ok(recordHasLegacyMap((await engine.getMeta(key))!.value));
      }
    } finally {
      await engine.close();
    }

    setup.node = await startNode({ data: setup.node.data });
    assert.ok(
      setup.node.log.some((line) => /rewrote 3 maps as pages/.test(line)),
      setup.node.log.join("\n"),
    );
    const after = await Promise.all(exports.map((name) => nbdSha256(setup.node.nbdUri(name))));
    assert.deepEqual(after, before);
    // Written through the new format, the volume keeps working.
    await qemuIo(setup.node.nbdUri("vm"), ["write -P 9 0 4k", "flush", "read -P 9 0 4k"]);
    await setup.node.stop();
    const reopened = await LocalEngine.open({ dir: setup.node.data });
    try {
      for (const key of keys) {
        const value = (await reopened.getMeta(key))!.value;
        assert.ok(!recordHasLegacyMap(value), key);
        assert.ok(value.length < 1024, `${key}: a root, not a whole map (${value.length} bytes)`);
      }
    } finally {
      await reopened.close();
    }
    setup.node = await startNode({ data: setup.node.data });
  });
});
