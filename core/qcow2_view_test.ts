/**
 * Goal: the qcow2 file a Qcow2View lays out is one QEMU accepts as consistent
 * (tables, refcounts, no leaks) at sizes where its tables span several
 * clusters, and reads back as the disk.
 * Method: real maps on a real store; `qemu-img check` of the file's metadata
 * written into a sparse file (data clusters left as holes: check never reads
 * them), `qemu-img compare` of a whole small file against its raw disk.
 */
import assert from "node:assert/strict";
import { BlockMap } from "./block_map.ts";
import { FrozenView } from "./frozen_view.ts";
import { Qcow2View } from "./qcow2_view.ts";
import { chunked, destroyTestStore, openTestStore, patternBytes } from "./_test_store.ts";

const MiB = 1024 * 1024;
const TiB = 1024 * 1024 * MiB;

async function qemuImg(args: string[]): Promise<void> {
  const output = await new Deno.Command("qemu-img", { args, stderr: "piped", stdout: "piped" })
    .output();
  const text = new TextDecoder();
  assert.ok(
    output.success,
    `qemu-img ${args.join(" ")}: ${text.decode(output.stdout)}${text.decode(output.stderr)}`,
  );
}

Deno.test("Qcow2View of a 6 TiB map: a two-cluster L1 table and several refcount blocks, checked clean", async () => {
  const store = await openTestStore();
  try {
    const map = new BlockMap({ sizeBytes: 6 * TiB + 512, blockSize: 4 * MiB });
    // 700 data entries of 64 clusters (44800 clusters: two refcount blocks), the last one short.
    for (let i = 0; i < 700; i++) {
      map.set(i * 2000, {
        kind: "block",
        hash: (i % 256).toString(16).padStart(2, "0").repeat(32),
      });
    }
    map.set(map.count - 1, { kind: "block", hash: "ff".repeat(32) });
    const qcow2 = new Qcow2View(new FrozenView(store.engine, `image "big"`, map));
    const path = `${store.dir}/big.qcow2`;
    const file = await Deno.open(path, { write: true, create: true });
    await file.write(await qcow2.readAt({ offset: 0, length: qcow2.metadataBytes }));
    await file.truncate(qcow2.sizeBytes);
    file.close();
    assert.equal(qcow2.sizeBytes, qcow2.metadataBytes + (700 * 64 + 1) * 64 * 1024);
    await qemuImg(["check", "-q", "-f", "qcow2", path]);
  } finally {
    await destroyTestStore(store);
  }
});

Deno.test("Qcow2View reads back as the disk, with block and cluster the same size", async () => {
  const store = await openTestStore();
  try {
    const disk = new Uint8Array(3 * MiB + 37 * 512);
    disk.set(patternBytes(100_000, 1), 0);
    disk.set(patternBytes(512, 2), disk.length - 512);
    await store.uploadImage("small", chunked(disk));
    const qcow2 = new Qcow2View(await store.openImage("small"));
    await Deno.writeFile(`${store.dir}/small.raw`, disk);
    await Deno.writeFile(
      `${store.dir}/small.qcow2`,
      await qcow2.readAt({ offset: 0, length: qcow2.sizeBytes }),
    );
    await qemuImg(["check", "-q", "-f", "qcow2", `${store.dir}/small.qcow2`]);
    await qemuImg([
      "compare",
      "-q",
      "-f",
      "raw",
      "-F",
      "qcow2",
      `${store.dir}/small.raw`,
      `${store.dir}/small.qcow2`,
    ]);
  } finally {
    await destroyTestStore(store);
  }
});
