/**
 * Goal: what the NBD server acknowledged as durable stays: a write with FUA,
 * and writes, zeroes and trims followed by an acknowledged FLUSH, survive
 * `kill -9` of the node (invariant 1), also when the write copied a shared
 * block up (thin clone of an image, volume after a snapshot); and read-only
 * exports (images, snapshots) refuse every write, from the server's side, and
 * keep their bytes. Method: real node processes; libnbd (Python) and qemu-io
 * write while the test keeps a model of the bytes; the node is killed while the
 * client still holds its connection (so no disconnect can trigger a flush),
 * restarted on the same data directory, and every byte is read back over NBD
 * and over HTTP and compared with the model. Note that kill -9 leaves the page
 * cache alone: these tests show that an acknowledgement is backed by files the
 * restarted node reads (maps, objects), not that fdatasync reached the disk.
 */
import assert from "node:assert/strict";
import { bytesSha256, patternBytes, run } from "./_files.ts";
import { startNode } from "./_node.ts";
import {
  createSnapshot,
  createVolume,
  exec,
  expectedMap,
  holdNbdPython,
  MiB,
  nbdinfoMap,
  nbdPython,
  nbdSha256,
  qemuIo,
  qemuIoArgs,
  type Setup,
  uploadImage,
  volumeBytes,
  withNode,
} from "./_nbd.ts";

/** Writes `bytes` to `${dir}/${name}.bin` for a Python client; returns them. */
async function payload(dir: string, name: string, bytes: Uint8Array): Promise<Uint8Array> {
  await Deno.writeFile(`${dir}/${name}.bin`, bytes);
  return bytes;
}

/** Python that loads a payload written by {@linkcode payload}. */
const loadPayload = `
def data(name):
    with open(f"{sys.argv[2]}/{name}.bin", "rb") as f:
        return f.read()
M = 1024 * 1024
`;

/** SIGKILLs the node, restarts it on the same data and lets `client` go. */
async function killAndRestart(setup: Setup, client: { release(): Promise<void> }) {
  await setup.node.kill9();
  await client.release();
  setup.node = await startNode({ data: setup.node.data });
}

Deno.test("FUA writes and flushed writes, zeroes and trims survive kill -9", async () => {
  await withNode(async (setup) => {
    const { dir } = setup;
    const size = 64 * MiB;
    await createVolume(setup.node, "dur", { size });
    const model = new Uint8Array(size);
    const put = (offset: number, bytes: Uint8Array) => model.set(bytes, offset);

    await qemuIo(setup.node.nbdUri("dur"), ["write -f -P 0x71 1M 64k"]);
    model.fill(0x71, MiB, MiB + 64 * 1024);
    put(5 * MiB - 1000, await payload(dir, "fua", patternBytes(40_000, 1)));
    put(12 * MiB + 4096, await payload(dir, "small", patternBytes(8192, 2)));
    put(20 * MiB, await payload(dir, "whole", patternBytes(4 * MiB, 3)));
    await payload(dir, "zeroed", patternBytes(4 * MiB, 4));
    await payload(dir, "trimmed", patternBytes(4 * MiB, 5));
    put(size - 777, await payload(dir, "tail", patternBytes(777, 6)));

    const client = await holdNbdPython(
      loadPayload + `
h = nbd.NBD()
h.connect_uri(sys.argv[1])
# Plain writes, then one flush.
h.pwrite(data("small"), 12 * M + 4096)
h.pwrite(data("whole"), 20 * M)
h.flush()
# A flushed block trimmed, then flushed: a hole again.
h.pwrite(data("trimmed"), 32 * M)
h.flush()
h.trim(4 * M, 32 * M)
h.flush()
# From here on FUA alone, never followed by a flush: a flushed block zeroed,
# a write across a block boundary, and the export's last bytes.
h.pwrite(data("zeroed"), 28 * M)
h.flush()
h.zero(4 * M, 28 * M, nbd.CMD_FLAG_FUA)
h.pwrite(data("fua"), 5 * M - 1000, nbd.CMD_FLAG_FUA)
h.pwrite(data("tail"), 64 * M - 777, nbd.CMD_FLAG_FUA)
print(json.dumps("written"), flush=True)
sys.stdin.read()
`,
      [setup.node.nbdUri("dur"), dir],
    );
    assert.equal(client.result, "written");
    await killAndRestart(setup, client);

    const uri = setup.node.nbdUri("dur");
    assert.equal(await nbdSha256(uri), bytesSha256(model));
    assert.equal(bytesSha256(await volumeBytes(setup.node, "dur")), bytesSha256(model));
    assert.deepEqual(await nbdinfoMap(uri), expectedMap(size, new Set([0, 1, 3, 5, 15])));
  });
});

Deno.test("copy-on-write of image blocks and snapshotted blocks survives kill -9", async () => {
  await withNode(async (setup) => {
    const { dir, node } = setup;
    const image = patternBytes(8 * MiB, 7);
    await uploadImage(node, "base", image);
    await createVolume(node, "cow", { image: "base" });
    const before = await payload(dir, "before", patternBytes(16 * MiB, 8));
    await createVolume(node, "sv", { size: 16 * MiB });
    await nbdPython(
      loadPayload + `
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.pwrite(data("before"), 0)
h.flush()
print(json.dumps("ok"))
`,
      [node.nbdUri("sv"), dir],
    );
    await createSnapshot(node, "sv", "s1");

    const cow = image.slice();
    cow.set(await payload(dir, "p1", patternBytes(3000, 9)), 4 * MiB + 1000);
    cow.set(await payload(dir, "p2", patternBytes(4000, 10)), 4 * MiB - 2000);
    const sv = before.slice();
    sv.set(await payload(dir, "p3", patternBytes(5000, 11)), 6 * MiB + 123);

    const client = await holdNbdPython(
      loadPayload + `
cow = nbd.NBD()
cow.connect_uri(sys.argv[1])
cow.pwrite(data("p1"), 4 * M + 1000)
cow.pwrite(data("p2"), 4 * M - 2000)
cow.flush()
sv = nbd.NBD()
sv.connect_uri(sys.argv[3])
sv.pwrite(data("p3"), 6 * M + 123)
sv.flush()
print(json.dumps("written"), flush=True)
sys.stdin.read()
`,
      [node.nbdUri("cow"), dir, node.nbdUri("sv")],
    );
    assert.equal(client.result, "written");
    await killAndRestart(setup, client);

    const after = setup.node;
    assert.equal(await nbdSha256(after.nbdUri("cow")), bytesSha256(cow));
    assert.equal(bytesSha256(await volumeBytes(after, "cow")), bytesSha256(cow));
    assert.equal(await nbdSha256(after.nbdUri("sv")), bytesSha256(sv));
    assert.equal(await nbdSha256(after.nbdUri("snapshot/sv@s1")), bytesSha256(before));
    assert.equal(await nbdSha256(after.nbdUri("image/base")), bytesSha256(image));
  });
});

/** The errno names libnbd reports for pwrite, zero and trim on `uri`. */
async function writeErrors(uri: string, strict: boolean): Promise<Record<string, string>> {
  return await nbdPython(
    `
h = nbd.NBD()
if sys.argv[2] == "lax":
    # Let the client send what the export's flags forbid: the server must refuse.
    h.set_strict_mode(0)
h.connect_uri(sys.argv[1])
errors = {"readOnly": str(h.is_read_only())}
for name, call in [
    ("pwrite", lambda: h.pwrite(b"x" * 4096, 0)),
    ("pwriteFua", lambda: h.pwrite(b"x" * 512, 4 * 1024 * 1024 - 256, nbd.CMD_FLAG_FUA)),
    ("zero", lambda: h.zero(4 * 1024 * 1024, 0)),
    ("trim", lambda: h.trim(4 * 1024 * 1024, 0)),
]:
    try:
        call()
        errors[name] = "accepted"
    except nbd.Error as error:
        errors[name] = str(error.errno)
h.flush()
print(json.dumps(errors))
`,
    [uri, strict ? "strict" : "lax"],
  ) as Record<string, string>;
}

Deno.test("images and snapshots refuse writes over NBD and keep their bytes", async () => {
  await withNode(async ({ node, dir }) => {
    const image = patternBytes(8 * MiB, 12);
    await Deno.writeFile(`${dir}/image.raw`, image);
    await uploadImage(node, "ro", image);
    const volume = patternBytes(8 * MiB, 13);
    await Deno.writeFile(`${dir}/volume.raw`, volume);
    await createVolume(node, "rv", { size: volume.length });
    await run("nbdcopy", ["--flush", `${dir}/volume.raw`, node.nbdUri("rv")]);
    await createSnapshot(node, "rv", "s");

    for (const [name, file] of [["image/ro", "image.raw"], ["snapshot/rv@s", "volume.raw"]]) {
      const uri = node.nbdUri(name);
      const qemu = await exec("qemu-io", qemuIoArgs(uri, ["write -P 0x66 0 4k"]));
      assert.notEqual(qemu.code, 0, `qemu-io wrote to ${name}:\n${qemu.stdout}`);
      assert.match(qemu.stderr, /Permission denied|read-only/i, name);

      // libnbd refuses on its own (the export says read-only) ...
      const refused = { readOnly: "True", pwrite: "EPERM", pwriteFua: "EPERM" };
      const strict = await writeErrors(uri, true);
      assert.deepEqual({ ...strict, zero: undefined, trim: undefined }, {
        ...refused,
        zero: undefined,
        trim: undefined,
      });
      assert.notEqual(strict.zero, "accepted");
      assert.notEqual(strict.trim, "accepted");
      // ... and when it sends them anyway, the server answers EPERM to each.
      assert.deepEqual(await writeErrors(uri, false), { ...refused, zero: "EPERM", trim: "EPERM" });

      assert.equal(await nbdSha256(uri), bytesSha256(await Deno.readFile(`${dir}/${file}`)));
      await run("nbdcopy", [uri, `${dir}/copy.raw`]);
      await run("cmp", [`${dir}/${file}`, `${dir}/copy.raw`]);
    }
    // Writing the volume after its snapshot leaves the snapshot as it was.
    await qemuIo(node.nbdUri("rv"), ["write -P 0x66 0 4k"]);
    assert.equal(await nbdSha256(node.nbdUri("snapshot/rv@s")), bytesSha256(volume));
  });
});
