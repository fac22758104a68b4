/**
 * Goal: an uploaded qcow2 file is stored as the raw disk it describes,
 * byte-identical to `qemu-img convert -O raw` of it, whatever qemu-img made
 * (v3, zlib-compressed clusters, v2 `compat=0.10`), with a plain HTTP PUT and
 * no format named; qcow2 files this node cannot convert (backing file,
 * encryption, external data file, zstd, broken tables) and other containers
 * (VMDK, VHDX) get a 400 that names the reason and store nothing; an image
 * that is not whole 512-byte sectors gets a 400; `?format=raw` stores any
 * container as it is.
 * Method: a real node; files made by qemu-img; uploads over HTTP (fixed length
 * and chunked); the images read back over NBD by qemu-img.
 */
import assert from "node:assert/strict";
import { bytesSha256, fileSha256, patternBytes, run } from "./_files.ts";
import { type TestNode } from "./_node.ts";
import { KiB, MiB, withNode } from "./_nbd.ts";

/**
 * A disk of 13 MiB and 37 sectors (not whole 64 KiB clusters, nor whole 4 MiB
 * blocks): random data, zero runs (one of them a whole block), a compressible
 * run, and a tail of data.
 */
const sourceBytes = 13 * MiB + 37 * 512;
function sourceDisk(): Uint8Array<ArrayBuffer> {
  const disk = new Uint8Array(sourceBytes);
  disk.set(patternBytes(MiB, 1), 0);
  disk.set(patternBytes(512 * KiB, 2), 2 * MiB + 512 * KiB);
  disk.fill(0x61, 3 * MiB, 3 * MiB + 700 * KiB);
  disk.set(patternBytes(3000, 3), 4 * MiB + 12345);
  disk.set(patternBytes(512 * KiB, 4), 12 * MiB + 512 * KiB);
  disk.set(patternBytes(37 * 512 - 100, 5), 13 * MiB + 100);
  return disk;
}

/** PUTs `body` as image `name`; returns the status and the parsed JSON answer. */
async function put(
  node: TestNode,
  name: string,
  body: BodyInit,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await node.fetch(`/v1/images/${name}`, { method: "PUT", body });
  return { status: response.status, json: await response.json() };
}

/** A file's bytes as a stream, so fetch sends it chunked (no Content-Length). */
async function chunked(path: string): Promise<ReadableStream<Uint8Array>> {
  return (await Deno.open(path)).readable;
}

async function assertNotStored(node: TestNode, name: string): Promise<void> {
  const info = await node.fetch(`/v1/images/${name}/info`);
  assert.equal(info.status, 404, `image ${name} was not stored`);
  await info.body?.cancel();
}

/** Runs `atoll image upload FILE NAME` against `node`: exit code and stderr. */
async function cliUpload(node: TestNode, file: string, name: string) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "main.ts", "image", "upload", file, name, "--node", node.url],
    cwd: new URL("../", import.meta.url).pathname,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: output.code, stderr: new TextDecoder().decode(output.stderr).trim() };
}

/** Files left in the node's spool directory (DATA/tmp/). */
async function spooled(node: TestNode): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(`${node.data}/tmp`)) names.push(entry.name);
  return names.filter((name) => name.startsWith("spool."));
}

Deno.test("qcow2 uploads (v3, compressed, compat=0.10) store the raw disk, byte for byte", async () => {
  await withNode(async ({ node, dir }) => {
    const source = `${dir}/source.raw`;
    await Deno.writeFile(source, sourceDisk());
    const expected = await fileSha256(source);
    // [name, qemu-img convert options, qemu-io commands run on the file after]
    const variants: [string, string[], string[]][] = [
      ["plain", [], []],
      ["compressed", ["-c"], []],
      ["v2", ["-o", "compat=0.10"], []],
      ["v2-compressed", ["-c", "-o", "compat=0.10,cluster_size=4096"], []],
      ["small-clusters", ["-o", "cluster_size=512"], []],
      ["big-clusters", ["-c", "-o", "cluster_size=2M"], []],
      // v3 zero clusters (the zero flag) over data, and a rewritten cluster stored out of order.
      ["zero-flag", [], ["write -z 64k 128k", "write -P 0x5a 5M 64k"]],
    ];
    let first = true;
    for (const [name, options, commands] of variants) {
      const file = `${dir}/${name}.qcow2`;
      await run("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", ...options, source, file]);
      for (const command of commands) await run("qemu-io", ["-f", "qcow2", "-c", command, file]);
      // The reference: what qemu-img itself reads out of the file.
      const reference = `${dir}/${name}.ref`;
      await run("qemu-img", ["convert", "-f", "qcow2", "-O", "raw", file, reference]);
      if (commands.length === 0) {
        assert.equal(await fileSha256(reference), expected, `qemu-img reads ${name}`);
      }

      const body = name === "compressed" ? await chunked(file) : await Deno.readFile(file);
      const { status, json } = await put(node, name, body);
      assert.equal(status, 201, JSON.stringify(json));
      assert.equal(json.size, sourceBytes);
      assert.equal(json.zeroBlocks, 1, `${name}: the zero block is not stored`);
      // The same disk in another container stores no new block (dedup after conversion).
      if (!first && commands.length === 0) assert.equal(json.newBlocks, 0, `${name} deduped`);
      first = false;

      const out = `${dir}/${name}.out`;
      await run("qemu-img", [
        "convert",
        "-f",
        "raw",
        "-O",
        "raw",
        node.nbdUri(`image/${name}`),
        out,
      ]);
      assert.equal(await fileSha256(out), await fileSha256(reference), `${name} read over NBD`);
      await Deno.remove(out);
    }
    // The CLI streams the file (chunked); the node converts it the same way.
    const cli = await cliUpload(node, `${dir}/v2-compressed.qcow2`, "from-cli");
    assert.equal(cli.code, 0, cli.stderr);
    const info = await (await node.fetch("/v1/images/from-cli/info")).json();
    assert.equal(info.size, sourceBytes);
    assert.deepEqual(await spooled(node), [], "every spool file is gone");
  });
});

Deno.test("qcow2 files this node cannot convert get a 400 naming the reason, and store nothing", async () => {
  await withNode(async ({ node, dir }) => {
    await Deno.writeFile(`${dir}/base.raw`, sourceDisk());
    const cases: [string, string[], RegExp][] = [
      [
        "backing",
        [
          "create",
          "-q",
          "-f",
          "qcow2",
          "-F",
          "raw",
          "-b",
          `${dir}/base.raw`,
          `${dir}/backing.qcow2`,
        ],
        /has a backing file \(".*base\.raw"\).*flatten it first/,
      ],
      [
        "luks",
        [
          "create",
          "-q",
          "-f",
          "qcow2",
          "--object",
          "secret,id=s0,data=secret",
          "-o",
          "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10",
          `${dir}/luks.qcow2`,
          "1M",
        ],
        /is encrypted \(LUKS\)/,
      ],
      [
        "zstd",
        ["create", "-q", "-f", "qcow2", "-o", "compression_type=zstd", `${dir}/zstd.qcow2`, "1M"],
        /uses zstd compression; only zlib is supported/,
      ],
      [
        "datafile",
        [
          "create",
          "-q",
          "-f",
          "qcow2",
          "-o",
          `data_file=${dir}/datafile.data`,
          `${dir}/datafile.qcow2`,
          "1M",
        ],
        /keeps its data in an external data file/,
      ],
    ];
    for (const [name, args, reason] of cases) {
      await createImage(args);
      const { status, json } = await put(node, name, await Deno.readFile(`${dir}/${name}.qcow2`));
      assert.equal(status, 400, `${name}: ${JSON.stringify(json)}`);
      assert.match(String(json.error), new RegExp(`^Cannot upload image "${name}": `));
      assert.match(String(json.error), reason);
      await assertNotStored(node, name);
    }
    const cli = await cliUpload(node, `${dir}/backing.qcow2`, "backing");
    assert.notEqual(cli.code, 0);
    assert.match(cli.stderr, /^[^\n]*has a backing file[^\n]*$/, "one clear line");
    assert.deepEqual(await spooled(node), [], "every spool file is gone");
  });
});

Deno.test("a qcow2 with broken tables gets a 400 and the node serves on", async () => {
  await withNode(async ({ node, dir }) => {
    const source = `${dir}/source.raw`;
    await Deno.writeFile(source, sourceDisk());
    await run("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", source, `${dir}/good.qcow2`]);
    const good = await Deno.readFile(`${dir}/good.qcow2`);
    const view = new DataView(good.buffer);
    const l1Offset = Number(view.getBigUint64(40));
    const l2Offset = Number(view.getBigUint64(l1Offset) & 0x00fffffffffffe00n);

    const broken: [string, (bytes: DataView) => void, RegExp][] = [
      // The first data cluster's entry points far past the end of the file.
      [
        "far",
        (v) => v.setBigUint64(l2Offset, (1n << 63n) | (1n << 50n)),
        /past the end of the file/,
      ],
      // The L1 table's first entry points at an L2 table that is not cluster-aligned.
      ["unaligned", (v) => v.setBigUint64(l1Offset, (1n << 63n) | 0x10200n), /not aligned/],
      // A compressed cluster whose bytes are not deflate data.
      ["garbage", (v) => v.setBigUint64(l2Offset, (1n << 62n) | 0x200n), /does not inflate/],
      // A virtual size of 2^60 bytes.
      ["huge", (v) => v.setBigUint64(24, 1n << 60n), /larger than the limit/],
      // An L1 table too short for the virtual size.
      ["short-l1", (v) => v.setBigUint64(24, 1n << 40n), /fewer than the virtual size needs/],
      // A cluster size of 2^40 bytes.
      ["cluster", (v) => v.setUint32(20, 40), /cluster size 2\^40 is outside/],
      // An unknown incompatible feature.
      ["feature", (v) => v.setBigUint64(72, 1n << 20n), /incompatible features .* \(0x100000\)/],
      // A virtual size that is not whole sectors.
      ["odd", (v) => v.setBigUint64(24, 5n * 1024n * 1024n + 1n), /not a multiple of 512/],
    ];
    for (const [name, breakIt, reason] of broken) {
      const bytes = good.slice();
      breakIt(new DataView(bytes.buffer));
      const { status, json } = await put(node, name, bytes);
      assert.equal(status, 400, `${name}: ${JSON.stringify(json)}`);
      assert.match(String(json.error), reason, name);
      await assertNotStored(node, name);
    }
    // Every guest cluster points at the first data cluster: 13 MiB out of a 3 MiB file.
    const shared = good.slice();
    const sharedView = new DataView(shared.buffer);
    const first = sharedView.getBigUint64(l2Offset);
    for (let i = 1; i < Math.ceil(sourceBytes / (64 * KiB)); i++) {
      sharedView.setBigUint64(l2Offset + i * 8, first);
    }
    const reused = await put(node, "shared", shared);
    assert.equal(reused.status, 400, JSON.stringify(reused.json));
    assert.match(String(reused.json.error), /describe more data than its \d+ bytes can hold/);
    // The same with one compressed cluster, 8192 times: 512 MiB out of 200 KiB.
    const bomb = `${dir}/bomb.qcow2`;
    await run("qemu-img", ["create", "-q", "-f", "qcow2", bomb, "512M"]);
    await run("qemu-io", ["-f", "qcow2", "-c", "write -c -P 0xff 0 64k", bomb]);
    const bombBytes = await Deno.readFile(bomb);
    const bombView = new DataView(bombBytes.buffer);
    const bombL2 = Number(
      bombView.getBigUint64(Number(bombView.getBigUint64(40))) & 0x00fffffffffffe00n,
    );
    const compressed = bombView.getBigUint64(bombL2);
    assert.equal(compressed >> 62n & 1n, 1n, "qemu-io wrote a compressed cluster");
    for (let i = 1; i < 8192; i++) bombView.setBigUint64(bombL2 + i * 8, compressed);
    const bombed = await put(node, "bomb", bombBytes);
    assert.equal(bombed.status, 400, JSON.stringify(bombed.json));
    assert.match(String(bombed.json.error), /describe more data than its \d+ bytes can hold/);
    await assertNotStored(node, "bomb");
    // A body that ends before its qcow2 header does.
    const { status } = await put(node, "cut", good.slice(0, 40));
    assert.equal(status, 400);
    const { status: after } = await put(node, "good", good);
    assert.equal(after, 201, "the node serves on");
    assert.deepEqual(await spooled(node), [], "every spool file is gone");
  });
});

Deno.test("an image that is not whole 512-byte sectors gets a 400 and stores nothing", async () => {
  await withNode(async ({ node, dir }) => {
    const odd = patternBytes(4 * MiB + 100, 9);
    const fixed = await put(node, "odd", odd);
    assert.equal(fixed.status, 400);
    assert.match(String(fixed.json.error), /its size, 4194404 bytes, is not a multiple of 512/);
    await assertNotStored(node, "odd");
    // Without a Content-Length the size shows only at the end, after a whole block was stored.
    await Deno.writeFile(`${dir}/odd.raw`, odd);
    const streamed = await put(node, "odd", await chunked(`${dir}/odd.raw`));
    assert.equal(streamed.status, 400);
    assert.match(String(streamed.json.error), /is not a multiple of 512/);
    await assertNotStored(node, "odd");
    const raw = await node.fetch("/v1/images/odd?format=raw", { method: "PUT", body: odd });
    assert.equal(raw.status, 400, "also with ?format=raw");
    await raw.body?.cancel();
    // The failed upload gave its first block back: uploaded again, it is new.
    const whole = await put(node, "whole", odd.subarray(0, 4 * MiB));
    assert.equal(whole.status, 201);
    assert.equal(whole.json.newBlocks, 1, "the odd uploads left no block behind");
  });
});

Deno.test("VMDK and VHDX are refused unless format=raw, which stores any container as is", async () => {
  await withNode(async ({ node, dir }) => {
    for (const format of ["vmdk", "vhdx"]) {
      const file = `${dir}/disk.${format}`;
      await run("qemu-img", ["create", "-q", "-f", format, file, "16M"]);
      const { status, json } = await put(node, format, await Deno.readFile(file));
      assert.equal(status, 400);
      assert.match(String(json.error), new RegExp(`is a ${format} file, not a raw disk`, "i"));
      assert.match(String(json.error), /qemu-img convert -O raw/);
      await assertNotStored(node, format);
    }
    await run("qemu-img", ["create", "-q", "-f", "qcow2", `${dir}/empty.qcow2`, "16M"]);
    // qemu-img's empty qcow2 is 196616 bytes: padded to whole sectors, qcow2 ignores the tail.
    const file = await Deno.readFile(`${dir}/empty.qcow2`);
    const bytes = new Uint8Array(Math.ceil(file.length / 512) * 512);
    bytes.set(file);
    const kept = await node.fetch("/v1/images/kept?format=raw", { method: "PUT", body: bytes });
    assert.equal(kept.status, 201, await kept.text());
    const back = await node.fetch("/v1/images/kept");
    assert.equal(bytesSha256(new Uint8Array(await back.arrayBuffer())), bytesSha256(bytes));
    const converted = await put(node, "converted", bytes);
    assert.equal(converted.status, 201);
    assert.equal(converted.json.size, 16 * MiB, "auto converts the same bytes");
    const notQcow2 = await node.fetch("/v1/images/x?format=qcow2", {
      method: "PUT",
      body: patternBytes(4096, 1),
    });
    assert.equal(notQcow2.status, 400);
    assert.match((await notQcow2.json()).error, /not a qcow2 file/);
    const bad = await node.fetch("/v1/images/x?format=vmdk", { method: "PUT", body: bytes });
    assert.equal(bad.status, 400);
    await bad.body?.cancel();
  });
});

/**
 * qemu-img create, tried again when qemu's LUKS key-slot benchmark reads no
 * CPU time at all ("Unable to get accurate CPU usage": its PBKDF2 timing loop
 * divides by the thread's CPU time, which a shared 2-core VM sometimes reports
 * as 0 ms). Any other failure, or that one five times over, fails the test.
 */
async function createImage(args: string[]): Promise<void> {
  for (let attempt = 1;; attempt++) {
    try {
      await run("qemu-img", args);
      return;
    } catch (error) {
      const flaky = String(error).includes("Unable to get accurate CPU usage");
      if (!flaky || attempt === 5) throw error;
    }
  }
}
