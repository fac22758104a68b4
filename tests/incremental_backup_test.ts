/**
 * Goal: incremental backup with standard tools (issue 13): the NBD context
 * `qemu:dirty-bitmap:SNAP` lists exactly the 4 MiB blocks changed since
 * snapshot SNAP, beside base:allocation on the same connection; a full copy of
 * a snapshot plus the changed extents copied from the live volume equals the
 * volume byte for byte; `GET /v1/volumes/NAME/changes` between two snapshots
 * lists what was written between them (and the CLI prints it); an unknown
 * snapshot is a clean 404 over HTTP and a context simply not selected over NBD.
 * Method: a real node; qemu-io writes, trims and zeroes; nbdinfo and libnbd
 * (Python) read the contexts; the backups run the steps of docs/operations.md
 * as they stand (atoll, nbdcopy, curl, jq, dd, libnbd); bytes compared by SHA-256.
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
  systemPython,
  uploadImage,
  volumeBytes,
  withNode,
} from "./_nbd.ts";
import type { TestNode } from "./_node.ts";
import { encodeMetaData, RawNbdClient } from "./_nbd_raw.ts";
import { Option, Reply } from "../nbd/protocol.ts";

const root = new URL("../", import.meta.url).pathname;

/** A 48 MiB image of data in every block, cloned into the 64 MiB volume "vm1". */
async function imageVolume(node: TestNode): Promise<void> {
  await uploadImage(node, "base", patternBytes(48 * MiB, 7));
  await createVolume(node, "vm1", { image: "base", size: 64 * MiB });
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
    const uri = node.nbdUri("vm1");
    // Block 10 becomes the volume's own object before the snapshot: the
    // snapshot freezes it, so a later write to it must count as a change.
    await qemuIo(uri, ["write -P 1 40M 4M", "flush"]);
    await createSnapshot(node, "vm1", "s1");
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
    await qemuIo(uri, ["write -P 6 4M 512"]); // block 1, from another connection
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
    const live = await changes(node, "vm1", "since=s1");
    assert.equal(live.status, 200);
    assert.deepEqual(live.body.extents, extentsOf(dirty));
    assert.equal(live.body.changedBytes, dirty.length * blockBytes);
    assert.equal(live.body.blockSize, blockBytes);
    assert.equal(live.body.until, null);
  });
});

/** The code blocks of docs/operations.md's "Incremental backup", in order. */
async function documentedSteps(): Promise<string[]> {
  const text = await Deno.readTextFile(`${root}docs/operations.md`);
  const section = text.slice(text.indexOf("## Incremental backup"));
  const end = section.indexOf("\n## ", 1);
  const blocks = [
    ...(end < 0 ? section : section.slice(0, end)).matchAll(/```(sh|python)\n([\s\S]*?)```/g),
  ];
  assert.equal(blocks.length, 3, "a full backup, an increment over HTTP, one over NBD");
  return blocks.map((block) => block[2]);
}

/** A documented step, aimed at `node` (its HTTP and NBD addresses) and run in `dir`. */
async function runStep(node: TestNode, dir: string, step: string, language: "sh" | "python") {
  const aimed = step.replaceAll("http://127.0.0.1:8080", node.url)
    .replaceAll("nbd://127.0.0.1:10809", node.nbd);
  const atoll = `atoll() { "${Deno.execPath()}" run --allow-all "${root}main.ts" "$@"; }\n`;
  const output = await new Deno.Command(language === "sh" ? "bash" : systemPython, {
    args: language === "sh" ? ["-euo", "pipefail", "-c", atoll + aimed] : ["-c", aimed],
    cwd: dir,
    env: { ATOLL_NODE: node.url },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  assert.equal(
    output.code,
    0,
    `step failed:\n${aimed}\n${text.decode(output.stdout)}${text.decode(output.stderr)}`,
  );
}

Deno.test("a full copy of a snapshot plus the changed extents equals the volume", async () => {
  // The documented full backup, then the documented NBD increment aimed at the
  // live volume instead of a second snapshot.
  const [full, , overNbd] = await documentedSteps();
  await withNode(async ({ node, dir }) => {
    await imageVolume(node);
    const uri = node.nbdUri("vm1");
    await qemuIo(uri, ["write -P 1 60M 1M", "flush"]);
    await runStep(node, dir, full, "sh");
    await qemuIo(uri, [
      "write -P 2 0 4M",
      "write -P 3 13M 5M", // blocks 3 and 4, unaligned ends
      "write -P 4 33554500 7", // a few bytes in block 8
      "discard 24M 4M", // block 6 trimmed
      "write -P 5 61M 512", // block 15, the volume's own since before the snapshot
    ]);
    const live = await changes(node, "vm1", "since=b1");
    assert.deepEqual(live.body.extents, extentsOf([0, 3, 4, 6, 8, 15]));
    await runStep(node, dir, overNbd.replace("snapshot/vm1@b2", "vm1"), "python");
    assert.equal(
      await fileSha256(`${dir}/vm1.raw`),
      bytesSha256(await volumeBytes(node, "vm1")),
      "the restored backup is the volume",
    );
  });
});

Deno.test("changes between snapshots: HTTP, the CLI, a snapshot's export, the documented steps", async () => {
  const [full, overHttp] = await documentedSteps();
  await withNode(async ({ node, dir }) => {
    await imageVolume(node);
    const uri = node.nbdUri("vm1");
    await qemuIo(uri, ["write -P 1 0 1M"]);
    await runStep(node, dir, full, "sh");
    await qemuIo(uri, ["write -P 2 4M 1k", "write -P 3 28M 8M", "discard 44M 4M"]);
    // The documented increment: snapshot b2, patch b1..b2 into the copy, drop b1.
    await runStep(node, dir, overHttp, "sh");
    const listed = JSON.parse(await Deno.readTextFile(`${dir}/changes.json`));
    assert.deepEqual(listed.extents, extentsOf([1, 7, 8, 11]));
    assert.deepEqual(
      { volume: listed.volume, since: listed.since, until: listed.until, size: listed.size },
      { volume: "vm1", since: "b1", until: "b2", size: 64 * MiB },
    );
    const b2 = await node.fetch(`/v1/volumes/vm1/snapshots/b2/data`);
    assert.equal(
      await fileSha256(`${dir}/vm1.raw`),
      bytesSha256(new Uint8Array(await b2.arrayBuffer())),
      "the full copy plus the increment is b2",
    );
    assert.equal((await changes(node, "vm1", "since=b1")).status, 404, "b1 was removed");

    await qemuIo(uri, ["write -P 4 0 4k", "write -P 5 56M 1k"]);
    await createSnapshot(node, "vm1", "s3");
    await qemuIo(uri, ["write -P 6 36M 1"]); // after s3: not in b2..s3
    const between = [0, 14];
    const { status, body } = await changes(node, "vm1", "since=b2&until=s3");
    assert.equal(status, 200);
    assert.deepEqual(body.extents, extentsOf(between));
    assert.deepEqual((await changes(node, "vm1", "since=s3&until=b2")).body.extents, body.extents);
    assert.deepEqual((await changes(node, "vm1", "since=s3&until=s3")).body.extents, []);
    assert.deepEqual(
      (await changes(node, "vm1", "since=b2")).body.extents,
      extentsOf([0, 9, 14]),
    );
    // A snapshot's export serves the bitmap of an earlier snapshot: changes between the two.
    assert.deepEqual(
      await blocksOfMap(node.nbdUri("snapshot/vm1@s3"), "qemu:dirty-bitmap:b2", 1),
      between,
    );

    const cli = (...args: string[]) =>
      exec(Deno.execPath(), ["run", "--allow-all", `${root}main.ts`, ...args, "--node", node.url]);
    const json = await cli("volume", "changes", "vm1", "--since", "b2", "--until", "s3", "--json");
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), body);
    const text = await cli("volume", "changes", "vm1", "--since", "b2");
    assert.equal(text.code, 0, text.stderr);
    assert.equal(
      text.stdout,
      "  OFFSET   LENGTH\n" +
        "       0  4194304\n" +
        "37748736  4194304\n" +
        "58720256  4194304\n" +
        "12.0 MiB changed in 3 extent(s) from vm1@b2 to now (in blocks of 4.0 MiB)\n",
    );
    const missing = await cli("volume", "changes", "vm1");
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /give --since SNAPSHOT/);

    // Grown between two snapshots: the blocks past the old end that hold data are changes.
    await api(node, "/v1/volumes/vm1/resize", { size: 96 * MiB }, 200);
    await qemuIo(uri, ["write -P 7 80M 4k"]);
    await createSnapshot(node, "vm1", "s4");
    const grown = await changes(node, "vm1", "since=s3&until=s4");
    assert.deepEqual(grown.body.extents, extentsOf([9, 20]));
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
