/**
 * Goal: a volume rolls back to one of its snapshots, and a clone flattens so
 * that it no longer depends on its origin (issue 13). A rollback brings back
 * the snapshot's bytes and size, is refused while an NBD connection has the
 * volume open unless forced (the open connection then reads the snapshot's
 * bytes), and leaves the objects written since the snapshot to the garbage
 * collector. A flattened clone stays whole once its image, its origin
 * snapshot and the origin volume are deleted and garbage is collected, and
 * the origin's objects it named are then freed. In a cluster, a rollback
 * through a node that does not hold the lease is refused while the holder
 * lives, and forced it moves the lease; every member then reads the snapshot,
 * and a flattened clone of it outlives the snapshot and its volume.
 * Method: real node processes; HTTP API and the real CLI; qemu-io writes and
 * checks patterns; a Python libnbd client holds a connection and reads
 * through it; POST /v1/gc collects and says what it freed.
 */
import assert from "node:assert/strict";
import { bytesSha256, patternBytes } from "./_files.ts";
import { startCluster } from "./_cluster.ts";
import { scrape } from "./_metrics.ts";
import type { TestNode } from "./_node.ts";
import {
  api,
  createSnapshot,
  createVolume,
  MiB,
  qemuIo,
  systemPython,
  uploadImage,
  volumeBytes,
  withNode,
} from "./_nbd.ts";

/** Runs the real CLI against `node`; returns its stdout, or throws with its stderr. */
async function atoll(node: TestNode, args: string[]): Promise<string> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "main.ts", ...args, "--node", node.url],
    cwd: new URL("../", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  if (!output.success) throw new Error(`atoll ${args.join(" ")}: ${text.decode(output.stderr)}`);
  return text.decode(output.stdout);
}

/**
 * A libnbd client holding one connection, driven line by line: `read OFFSET
 * LENGTH` answers the SHA-256 of those bytes (as bytesSha256), `size` the
 * export's size as the connection knows it.
 */
class HeldConnection {
  #child: Deno.ChildProcess;
  #lines: ReadableStreamDefaultReader<string>;
  #buffer = "";
  #writer: WritableStreamDefaultWriter<Uint8Array>;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    this.#writer = child.stdin.getWriter();
  }

  static async open(uri: string): Promise<HeldConnection> {
    const script = `
import hashlib, json, sys, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
print("ready", flush=True)
for line in sys.stdin:
    words = line.split()
    if words[0] == "read":
        data = h.pread(int(words[2]), int(words[1]))
        print(f"{len(data)}:{hashlib.sha256(data).hexdigest()}", flush=True)
    elif words[0] == "size":
        print(h.get_size(), flush=True)
h.shutdown()
`;
    const child = new Deno.Command(systemPython, {
      args: ["-c", script, uri],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const held = new HeldConnection(child);
    assert.equal(await held.#line(), "ready");
    return held;
  }

  async ask(command: string): Promise<string> {
    await this.#writer.write(new TextEncoder().encode(command + "\n"));
    return await this.#line();
  }

  async close(): Promise<void> {
    await this.#writer.close();
    await this.#lines.cancel();
    assert.equal((await this.#child.status).code, 0);
  }

  async #line(): Promise<string> {
    while (!this.#buffer.includes("\n")) {
      const { value, done } = await this.#lines.read();
      if (done) throw new Error(`the libnbd client ended early: ${this.#buffer}`);
      this.#buffer += value;
    }
    const end = this.#buffer.indexOf("\n");
    const line = this.#buffer.slice(0, end);
    this.#buffer = this.#buffer.slice(end + 1);
    return line;
  }
}

function gc(node: TestNode) {
  return api(node, "/v1/gc", {}, 200);
}

Deno.test("rollback brings back a snapshot's bytes and size, and refuses an open volume unless forced", async () => {
  await withNode(async ({ node }) => {
    await createVolume(node, "vm", { size: 64 * MiB });
    await qemuIo(node.nbdUri("vm"), ["write -P 1 0 8M", "write -P 1 20M 1M", "flush"]);
    await createSnapshot(node, "vm", "before");
    // Written since: over the snapshot's data, new data, and past its end once grown.
    await qemuIo(node.nbdUri("vm"), ["write -P 2 0 4M", "write -P 2 40M 4M", "flush"]);
    await api(node, "/v1/volumes/vm/resize", { size: 128 * MiB }, 200);
    await qemuIo(node.nbdUri("vm"), ["write -P 3 100M 1M", "flush"]);

    await api(node, "/v1/volumes/vm/rollback", {}, 400);
    await api(node, "/v1/volumes/vm/rollback", { snapshot: "nope" }, 404);
    await api(node, "/v1/volumes/vm/rollback", { snapshot: "before", force: "yes" }, 400);

    const held = await HeldConnection.open(node.nbdUri("vm"));
    const sha2 = bytesSha256(new Uint8Array(4 * MiB).fill(2));
    assert.equal(await held.ask(`read 0 ${4 * MiB}`), sha2);
    const refused = await api(node, "/v1/volumes/vm/rollback", { snapshot: "before" }, 409);
    assert.match(String(refused.error), /open for writing/);
    await qemuIo(node.nbdUri("vm"), ["read -P 2 0 4M", "read -P 3 100M 1M"]); // unchanged

    // Forced through the CLI: the connection still open reads the snapshot's bytes.
    const printed = await atoll(node, ["volume", "rollback", "vm", "before", "--force"]);
    assert.match(printed, /size:\s+64.0 MiB \(67108864 bytes\)/);
    assert.equal(await held.ask(`read 0 ${4 * MiB}`), bytesSha256(new Uint8Array(4 * MiB).fill(1)));
    await held.close();

    const info = await (await node.fetch("/v1/volumes/vm")).json();
    assert.equal(info.size, 64 * MiB);
    await qemuIo(node.nbdUri("vm"), [
      "read -P 1 0 8M",
      "read -P 1 20M 1M",
      "read -P 0 40M 4M",
      "write -P 4 0 64k", // copied up, leaving the snapshot as it was
      "flush",
    ]);
    const snapshot = await node.fetch("/v1/volumes/vm/snapshots/before/data", {
      headers: { range: `bytes=0-${8 * MiB - 1}` },
    });
    assert.equal(
      bytesSha256(new Uint8Array(await snapshot.arrayBuffer())),
      bytesSha256(new Uint8Array(8 * MiB).fill(1)),
    );

    // The three objects written after the snapshot are garbage now; the snapshot's stay.
    const collected = await gc(node);
    assert.equal(collected.deletedObjects, 3, JSON.stringify(collected));
    await qemuIo(node.nbdUri("vm"), ["read -P 4 0 64k", "read -P 1 64k 8128k", "read -P 1 20M 1M"]);
    // With nobody connected, no force is needed.
    await api(node, "/v1/volumes/vm/rollback", { snapshot: "before" }, 200);
    await qemuIo(node.nbdUri("vm"), ["read -P 1 0 8M"]);
  });
});

Deno.test("a flattened clone stays whole once its image, snapshot and origin volume are gone", async () => {
  await withNode(async ({ node }) => {
    const image = patternBytes(16 * MiB, 11);
    await uploadImage(node, "base", image);
    await createVolume(node, "a", { image: "base" });
    await qemuIo(node.nbdUri("a"), ["write -P 5 0 4M", "write -P 6 8M 1M", "flush"]);
    await createSnapshot(node, "a", "s");
    await api(node, "/v1/volumes", { name: "b", snapshot: "a@s", size: 32 * MiB });
    await qemuIo(node.nbdUri("b"), ["write -P 7 12M 64k", "write -P 8 30M 64k", "flush"]);
    const expected = bytesSha256(await volumeBytes(node, "b"));

    // Entries 0 and 2 name objects of "a" (the snapshot's); they become blocks.
    const printed = await atoll(node, ["volume", "flatten", "b"]);
    assert.match(printed, /origin:\s+none \(flattened from snapshot a@s\)/);
    const again = await api(node, "/v1/volumes/b/flatten", {}, 200);
    assert.equal(again.flattenedBlocks, 0);
    assert.deepEqual(again.origin, {
      kind: "flattened",
      from: { kind: "snapshot", volume: "a", snapshot: "s" },
    });
    assert.equal(bytesSha256(await volumeBytes(node, "b")), expected);

    // Deletions schedule a collection a second later, which on a slow machine runs
    // before the one asked for here: what both freed is counted in /metrics.
    const freed = async () => {
      const metrics = await scrape(node);
      return {
        objects: metrics.value("atoll_gc_deleted_objects_total"),
        blocks: metrics.value("atoll_gc_deleted_blocks_total"),
      };
    };
    const before = await freed();
    for (const path of ["/v1/volumes/a/snapshots/s", "/v1/volumes/a", "/v1/images/base"]) {
      const response = await node.fetch(path, { method: "DELETE" });
      assert.equal(response.status, 204, `DELETE ${path}: ${await response.text()}`);
    }
    const collected = await gc(node);
    const after = await freed();
    // The two objects of "a" that "b" named before the flatten are freed with "a".
    assert.equal(after.objects - before.objects, 2, JSON.stringify({ before, after, collected }));
    assert.ok(after.blocks > before.blocks, JSON.stringify({ before, after, collected }));
    assert.equal(bytesSha256(await volumeBytes(node, "b")), expected);
    const head = new Uint8Array(image);
    head.fill(5, 0, 4 * MiB);
    head.fill(6, 8 * MiB, 9 * MiB);
    head.fill(7, 12 * MiB, 12 * MiB + 64 * 1024);
    const got = await volumeBytes(node, "b");
    assert.equal(bytesSha256(got.subarray(0, 16 * MiB)), bytesSha256(head));
    await qemuIo(node.nbdUri("b"), ["read -P 5 0 4M", "read -P 8 30M 64k", "read -P 0 16M 14M"]);
    // Still a volume like any other: it writes, snapshots and rolls back.
    await qemuIo(node.nbdUri("b"), ["write -P 9 0 4M", "flush"]);
    await createSnapshot(node, "b", "t");
    await api(node, "/v1/volumes/b/rollback", { snapshot: "t" }, 200);
    await qemuIo(node.nbdUri("b"), ["read -P 9 0 4M", "read -P 6 8M 1M"]);
  });
});

Deno.test("in a cluster, a rollback through another member is refused while the holder lives, and forced moves the lease; a flattened clone outlives its origin", async () => {
  const cluster = await startCluster(3);
  try {
    const [one, two, three] = cluster.nodes;
    await createVolume(one, "vm", { size: 16 * MiB });
    await qemuIo(one.nbdUri("vm"), ["write -P 1 0 4M", "write -P 1 8M 1M", "flush"]);
    await createSnapshot(one, "vm", "s");
    await qemuIo(one.nbdUri("vm"), ["write -P 2 0 4M", "write -P 2 12M 1M", "flush"]);

    const refused = await api(two, "/v1/volumes/vm/rollback", { snapshot: "s" }, 409);
    assert.match(String(refused.error), /holds its write lease/);
    for (const node of [one, two, three]) {
      await qemuIo(node.nbdUri("vm"), ["read -P 2 0 4M", "read -P 2 12M 1M"]);
    }
    const rolled = await api(two, "/v1/volumes/vm/rollback", { snapshot: "s", force: true }, 200);
    assert.equal(rolled.heldHere, true);
    for (const node of [one, two, three]) {
      await qemuIo(node.nbdUri("vm"), ["read -P 1 0 4M", "read -P 1 8M 1M", "read -P 0 12M 1M"]);
    }
    // The volume goes on from the snapshot wherever it is written next.
    await qemuIo(three.nbdUri("vm"), ["write -P 3 12M 64k", "flush"]);
    for (const node of [one, two, three]) {
      await qemuIo(node.nbdUri("vm"), ["read -P 1 0 4M", "read -P 3 12M 64k"]);
    }

    // A clone of the snapshot, flattened, outlives the snapshot and its volume.
    await createVolume(one, "clone", { snapshot: "vm@s" });
    const flattened = await api(one, "/v1/volumes/clone/flatten", {}, 200);
    assert.equal(flattened.flattenedBlocks, 2, JSON.stringify(flattened));
    const gone = await three.fetch("/v1/volumes/vm?cascade=true", { method: "DELETE" });
    assert.equal(gone.status, 204, await gone.text());
    await gc(one);
    for (const node of [one, two, three]) {
      await qemuIo(node.nbdUri("clone"), ["read -P 1 0 4M", "read -P 1 8M 1M", "read -P 0 4M 4M"]);
    }
  } finally {
    await cluster.stop();
  }
});
