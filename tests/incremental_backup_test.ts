/**
 * Goal: incremental backup with standard tools (issue 13): the NBD context
 * `qemu:dirty-bitmap:SNAP` lists exactly the 4 MiB blocks changed since
 * snapshot SNAP, beside base:allocation on the same connection; a full copy of
 * a snapshot plus the changed extents copied from the live volume equals the
 * volume byte for byte; `GET /v1/volumes/NAME/changes` between two snapshots
 * lists what was written between them (and the CLI prints it); an unknown
 * snapshot is a clean 404 over HTTP and a context simply not selected over NBD.
 * Method: a real node; qemu-io writes, trims and zeroes; nbdinfo, nbdcopy,
 * libnbd (Python), curl and dd do the backups; bytes compared by SHA-256.
 */
import assert from "node:assert/strict";
import { bytesSha256, fileSha256, patternBytes } from "./_files.ts";
import {
  api,
  blockBytes,
  createSnapshot,
  createVolume,
  exec,
  MiB,
  nbdPython,
  qemuIo,
  uploadImage,
  volumeBytes,
  withNode,
} from "./_nbd.ts";
import type { TestNode } from "./_node.ts";
import { encodeMetaData, RawNbdClient } from "./_nbd_raw.ts";
import { Option, Reply } from "../nbd/protocol.ts";

const root = new URL("../", import.meta.url).pathname;

/** A 48 MiB image of data in every block, cloned into the 64 MiB volume "vm". */
async function imageVolume(node: TestNode): Promise<void> {
  await uploadImage(node, "base", patternBytes(48 * MiB, 7));
  await createVolume(node, "vm", { image: "base", size: 64 * MiB });
}

/** The blocks (4 MiB indexes) whose extents an `nbdinfo --map --json` marks with `type`. */
async function blocksOfMap(uri: string, context: string, type: number): Promise<number[]> {
  const out = await exec("nbdinfo", [`--map=${context}`, "--json", uri]);
  assert.equal(out.code, 0, `nbdinfo --map=${context} ${uri}: ${out.stderr}`);
  const blocks: number[] = [];
  for (
    const extent of JSON.parse(out.stdout) as { offset: number; length: number; type: number }[]
  ) {
    assert.equal(extent.offset % blockBytes, 0, "extents start on block boundaries");
    if (extent.type !== type) continue;
    for (let at = extent.offset; at < extent.offset + extent.length; at += blockBytes) {
      blocks.push(at / blockBytes);
    }
  }
  return blocks;
}

/** Byte extents of a sorted list of block indexes, adjacent ones merged. */
function extentsOf(blocks: number[]): { offset: number; length: number }[] {
  const extents: { offset: number; length: number }[] = [];
  for (const block of blocks) {
    const last = extents.at(-1);
    if (last !== undefined && last.offset + last.length === block * blockBytes) {
      last.length += blockBytes;
    } else extents.push({ offset: block * blockBytes, length: blockBytes });
  }
  return extents;
}

/** `GET /v1/volumes/NAME/changes?QUERY`: the status and the JSON body. */
async function changes(node: TestNode, name: string, query: string) {
  const response = await node.fetch(`/v1/volumes/${name}/changes?${query}`);
  return { status: response.status, body: await response.json() };
}

/**
 * Block status of both contexts on one libnbd connection, as flags per 4 MiB
 * block: {contexts negotiated, "base:allocation": [...], "<bitmap>": [...]}.
 */
const bothContextsScript = `
bitmap = sys.argv[2]
c = nbd.NBD()
c.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
c.add_meta_context(bitmap)
c.connect_uri(sys.argv[1])
size = c.get_size()
block = 4 * 1024 * 1024
out = {"negotiated": [c.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION), c.can_meta_context(bitmap)]}
flags = {nbd.CONTEXT_BASE_ALLOCATION: [None] * (size // block), bitmap: [None] * (size // block)}
def seen(context, offset, entries, err):
    at = offset
    for i in range(0, len(entries), 2):
        length, state = entries[i], entries[i + 1]
        assert at % block == 0 and length % block == 0, (context, at, length)
        for b in range(at // block, (at + length) // block):
            flags[context][b] = state
        at += length
    return 0
for offset in range(0, size, 16 * block):
    c.block_status(16 * block, offset, seen)
out.update(flags)
print(json.dumps(out))
`;

Deno.test("qemu:dirty-bitmap:SNAP lists exactly the blocks changed since SNAP", async () => {
  await withNode(async ({ node }) => {
    await imageVolume(node);
    const uri = node.nbdUri("vm");
    // Block 10 becomes the volume's own object before the snapshot: the
    // snapshot freezes it, so a later write to it must count as a change.
    await qemuIo(uri, ["write -P 1 40M 4M", "flush"]);
    await createSnapshot(node, "vm", "s1");
    assert.deepEqual(await blocksOfMap(uri, "qemu:dirty-bitmap:s1", 1), [], "nothing yet");
    await qemuIo(uri, [
      "write -P 2 8M 8M", // blocks 2 and 3, aligned
      "write -P 3 40M 4M", // block 10, frozen by the snapshot
      "write -P 4 52429800 3000", // inside block 12 (past the image): one block for 3000 bytes
      "write -P 5 52430000 100", // the same block again, now in place
      "discard 20M 4M", // block 5 trimmed: it read data, now zeros
      "write -z -u 60M 4M", // block 15 stays zero: no change
      "flush",
    ]);
    await qemuIo(uri, ["write -P 6 4M 512"]); // block 1, not flushed: still a change
    const dirty = [1, 2, 3, 5, 10, 12];
    assert.deepEqual(await blocksOfMap(uri, "qemu:dirty-bitmap:s1", 1), dirty);
    assert.deepEqual(await blocksOfMap(uri, "qemu:dirty-bitmap:s1", 0), [
      0,
      4,
      6,
      7,
      8,
      9,
      11,
      13,
      14,
      15,
    ]);

    // Both contexts on one connection, as backup tools ask for them.
    const both = await nbdPython(bothContextsScript, [uri, "qemu:dirty-bitmap:s1"]) as Record<
      string,
      (number | boolean)[]
    >;
    assert.deepEqual(both.negotiated, [true, true]);
    const marked = (flags: (number | boolean)[], value: number) =>
      flags.flatMap((flag, block) => flag === value ? [block] : []);
    assert.deepEqual(marked(both["qemu:dirty-bitmap:s1"], 1), dirty);
    assert.deepEqual(marked(both["qemu:dirty-bitmap:s1"], 0).length, 16 - dirty.length);
    // Holes (3: hole and zero) where never written or trimmed; data elsewhere.
    assert.deepEqual(marked(both["base:allocation"], 3), [5, 13, 14, 15]);
    assert.deepEqual(marked(both["base:allocation"], 0).length, 12);

    // The HTTP API says the same.
    const live = await changes(node, "vm", "since=s1");
    assert.equal(live.status, 200);
    assert.deepEqual(live.body.extents, extentsOf(dirty));
    assert.equal(live.body.changedBytes, dirty.length * blockBytes);
    assert.equal(live.body.blockSize, blockBytes);
    assert.equal(live.body.until, null);
  });
});

/**
 * Copies the extents a dirty bitmap marks from the export `argv[1]` into the
 * file `argv[3]` at their offsets: what virtnbdbackup does, in a few lines.
 */
const copyDirtyScript = `
bitmap, path = sys.argv[2], sys.argv[3]
c = nbd.NBD()
c.add_meta_context(bitmap)
c.connect_uri(sys.argv[1])
size = c.get_size()
dirty = []
def seen(context, offset, entries, err):
    at = offset
    for i in range(0, len(entries), 2):
        if entries[i + 1] & 1:
            dirty.append((at, entries[i]))
        at += entries[i]
    return 0
offset = 0
while offset < size:
    before = len(dirty)
    got = []
    def step(context, off, entries, err):
        got.append(sum(entries[0::2]))
        return seen(context, off, entries, err)
    c.block_status(min(size - offset, 1 << 30), offset, step)
    offset += got[0]
copied = 0
with open(path, "r+b") as f:
    for at, length in dirty:
        f.seek(at)
        f.write(c.pread(length, at))
        copied += length
print(json.dumps({"extents": len(dirty), "copied": copied}))
`;

Deno.test("a full copy of a snapshot plus the changed extents equals the volume", async () => {
  await withNode(async ({ node, dir }) => {
    await imageVolume(node);
    const uri = node.nbdUri("vm");
    await qemuIo(uri, ["write -P 1 60M 1M", "flush"]);
    await createSnapshot(node, "vm", "full");
    // The full backup: the read-only snapshot export, copied whole.
    const backup = `${dir}/backup.raw`;
    const full = await exec("nbdcopy", [node.nbdUri("snapshot/vm@full"), backup]);
    assert.equal(full.code, 0, `nbdcopy: ${full.stderr}`);
    await qemuIo(uri, [
      "write -P 2 0 4M",
      "write -P 3 13M 5M", // blocks 3 and 4, unaligned ends
      "write -P 4 33554500 7", // a few bytes in block 8
      "discard 24M 4M", // block 6 trimmed
      "write -P 5 61M 512", // block 15, the volume's own since before the snapshot
    ]);
    const copied = await nbdPython(copyDirtyScript, [uri, "qemu:dirty-bitmap:full", backup]);
    assert.deepEqual(copied, { extents: 5, copied: 6 * blockBytes }, "blocks 0, 3-4, 6, 8, 15");
    assert.equal(
      await fileSha256(backup),
      bytesSha256(await volumeBytes(node, "vm")),
      "the restored backup is the volume",
    );
  });
});

Deno.test("changes between two snapshots over HTTP, the CLI, a snapshot's export, curl and dd", async () => {
  await withNode(async ({ node, dir }) => {
    await imageVolume(node);
    const uri = node.nbdUri("vm");
    await qemuIo(uri, ["write -P 1 0 1M"]);
    await createSnapshot(node, "vm", "s1");
    await qemuIo(uri, ["write -P 2 4M 1k", "write -P 3 28M 8M", "discard 44M 4M"]);
    await createSnapshot(node, "vm", "s2");
    await qemuIo(uri, ["write -P 4 0 4k", "write -P 5 56M 1k"]); // after s2: not in s1..s2
    const between = [1, 7, 8, 11];

    const { status, body } = await changes(node, "vm", "since=s1&until=s2");
    assert.equal(status, 200);
    assert.deepEqual(body.extents, extentsOf(between));
    assert.deepEqual(
      { volume: body.volume, since: body.since, until: body.until, size: body.size },
      { volume: "vm", since: "s1", until: "s2", size: 64 * MiB },
    );
    assert.deepEqual((await changes(node, "vm", "since=s2&until=s1")).body.extents, body.extents);
    assert.deepEqual((await changes(node, "vm", "since=s2&until=s2")).body.extents, []);
    assert.deepEqual(
      (await changes(node, "vm", "since=s1")).body.extents,
      extentsOf([0, ...between, 14]),
    );
    // A snapshot's export serves the bitmap of an earlier snapshot: changes between the two.
    assert.deepEqual(
      await blocksOfMap(node.nbdUri("snapshot/vm@s2"), "qemu:dirty-bitmap:s1", 1),
      between,
    );

    const cli = async (...args: string[]) => {
      const out = await exec(Deno.execPath(), [
        "run",
        "--allow-all",
        `${root}main.ts`,
        ...args,
        "--node",
        node.url,
      ]);
      return out;
    };
    const json = await cli("volume", "changes", "vm", "--since", "s1", "--until", "s2", "--json");
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), body);
    const text = await cli("volume", "changes", "vm", "--since", "s1");
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^ +OFFSET +LENGTH\n +0 +8388608\n/);
    assert.match(text.stdout, /24\.0 MiB changed in 4 extent\(s\) from vm@s1 to now/);
    const missing = await cli("volume", "changes", "vm");
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /give --since SNAPSHOT/);

    // The HTTP recipe of docs/operations.md: a full copy of s1, then s1..s2's extents.
    const backup = `${dir}/s1.raw`;
    const data = (snapshot: string) => `${node.url}/v1/volumes/vm/snapshots/${snapshot}/data`;
    const full = await exec("curl", ["-sSf", "-o", backup, data("s1")]);
    assert.equal(full.code, 0, full.stderr);
    for (const { offset, length } of body.extents) {
      const range = `${offset}-${offset + length - 1}`;
      const out = await exec("bash", [
        "-o",
        "pipefail",
        "-c",
        `curl -sSf -r ${range} '${data("s2")}' | ` +
        `dd of='${backup}' bs=4M seek=${offset} oflag=seek_bytes conv=notrunc status=none`,
      ]);
      assert.equal(out.code, 0, out.stderr);
    }
    const s2 = await node.fetch(`/v1/volumes/vm/snapshots/s2/data`);
    assert.equal(await fileSha256(backup), bytesSha256(new Uint8Array(await s2.arrayBuffer())));

    // Grown between two snapshots: the blocks past the old end that hold data are changes.
    await api(node, "/v1/volumes/vm/resize", { size: 96 * MiB }, 200);
    await qemuIo(uri, ["write -P 6 80M 4k"]);
    await createSnapshot(node, "vm", "s3");
    const grown = await changes(node, "vm", "since=s2&until=s3");
    assert.deepEqual(grown.body.extents, extentsOf([0, 14, 20]));
    assert.equal(grown.body.size, 96 * MiB);
  });
});

Deno.test("an unknown snapshot is a clean 404, and over NBD a context not selected", async () => {
  await withNode(async ({ node }) => {
    await createVolume(node, "vm", { size: 16 * MiB });
    await createSnapshot(node, "vm", "s1");
    await createSnapshot(node, "vm", "s2");
    const refused = async (query: string, status: number, message: RegExp) => {
      const answer = await changes(node, "vm", query);
      assert.equal(answer.status, status, query);
      assert.match(answer.body.error, message, query);
    };
    await refused("since=nope", 404, /Cannot find snapshot "vm@nope": no such snapshot/);
    await refused("since=s1&until=nope", 404, /no such snapshot/);
    await refused("since=bad%20name", 400, /snapshot/);
    await refused("", 400, /give since=SNAPSHOT/);
    const other = await node.fetch("/v1/volumes/ghost/changes?since=s1");
    assert.equal(other.status, 404, await other.text());

    // libnbd asks for an unknown bitmap beside base:allocation: the handshake
    // goes on, and only base:allocation is selected.
    const script = `
c = nbd.NBD()
c.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
c.add_meta_context("qemu:dirty-bitmap:nope")
c.connect_uri(sys.argv[1])
seen = []
c.block_status(c.get_size(), 0, lambda ctx, off, entries, err: seen.append(ctx) or 0)
print(json.dumps([c.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION),
                  c.can_meta_context("qemu:dirty-bitmap:nope"), seen]))
`;
    assert.deepEqual(await nbdPython(script, [node.nbdUri("vm")]), [true, false, [
      "base:allocation",
    ]]);

    // The options themselves, byte by byte: wildcards list, never select; too
    // many contexts is ERR_TOO_BIG; a query past 4096 bytes is ERR_INVALID; the
    // handshake carries on after each.
    const client = await RawNbdClient.connect(node.nbdPort);
    try {
      await client.greet();
      await client.enableStructuredReplies();
      const names = async (option: number, queries: string[]) => {
        const replies = await client.option(option, encodeMetaData("vm", queries));
        assert.equal(replies.at(-1)!.type, Reply.ack, `${queries}`);
        return replies.filter((reply) => reply.type === Reply.metaContext)
          .map((reply) => new TextDecoder().decode(reply.data.subarray(4)));
      };
      assert.deepEqual(await names(Option.listMetaContext, []), [
        "base:allocation",
        "qemu:dirty-bitmap:s1",
        "qemu:dirty-bitmap:s2",
      ]);
      assert.deepEqual(await names(Option.listMetaContext, ["qemu:dirty-bitmap:"]), [
        "qemu:dirty-bitmap:s1",
        "qemu:dirty-bitmap:s2",
      ]);
      assert.deepEqual(await names(Option.listMetaContext, ["qemu:dirty-bitmap:nope"]), []);
      assert.deepEqual(await names(Option.setMetaContext, ["qemu:", "qemu:dirty-bitmap:"]), []);
      assert.deepEqual(await names(Option.setMetaContext, ["x-other:thing", "base:"]), []);
      const many = Array.from({ length: 9 }, (_, i) => `qemu:dirty-bitmap:n${i}`);
      const tooBig = await client.option(Option.setMetaContext, encodeMetaData("vm", many));
      assert.equal(tooBig.at(-1)!.type, Reply.errTooBig);
      const long = await client.option(
        Option.setMetaContext,
        encodeMetaData("vm", [`qemu:dirty-bitmap:${"x".repeat(4096)}`]),
      );
      assert.equal(long.at(-1)!.type, Reply.errInvalid);
      assert.deepEqual(
        await names(Option.setMetaContext, ["qemu:dirty-bitmap:s2", "base:allocation"]),
        ["qemu:dirty-bitmap:s2", "base:allocation"],
      );
      await client.go("vm");
    } finally {
      client.close();
    }
  });
});
