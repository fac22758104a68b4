/**
 * Goal: the NBD server works with the real clients a cloud runs against it
 * (nbdinfo, qemu-io, qemu-img, nbdcopy, fio, libnbd through Python), over TCP
 * and a unix socket, and what they read is what they wrote. Method: each test
 * starts a real node process, sets exports up over HTTP, drives the client as a
 * subprocess, and checks its exit code and output, then the bytes through an
 * independent path (the HTTP data endpoint, or a second client) against a model
 * kept in the test; holes are checked through base:allocation and structured
 * reads. Nothing is mocked; a missing tool fails the test.
 */
import assert from "node:assert/strict";
import { bytesSha256, patternBytes, run } from "./_files.ts";
import {
  blockBytes,
  createSnapshot,
  createVolume,
  exec,
  expectedMap,
  fill,
  GiB,
  KiB,
  MiB,
  nbdinfoMap,
  nbdPython,
  qemuIo,
  qemuIoArgs,
  systemPython,
  uploadImage,
  volumeBytes,
  withNode,
} from "./_nbd.ts";

/** The exports of `nbdinfo --json`, keyed by name. */
async function nbdinfoJson(args: string[]): Promise<Map<string, Record<string, unknown>>> {
  const info = JSON.parse(await run("nbdinfo", ["--json", ...args]));
  assert.equal(info.protocol, "newstyle-fixed");
  assert.equal(info.structured, true, "structured replies are negotiated");
  const exports = info.exports as Record<string, unknown>[];
  return new Map(exports.map((entry) => [entry["export-name"] as string, entry]));
}

Deno.test("nbdinfo lists every export and reports sizes, flags, read-only and the map", async () => {
  await withNode(async ({ node }) => {
    await uploadImage(node, "base", patternBytes(8 * MiB, 1));
    await createVolume(node, "vm1", { size: 64 * MiB });
    await createVolume(node, "thin", { image: "base" });
    await createSnapshot(node, "vm1", "s1");

    const listed = await nbdinfoJson(["--list", node.nbdUri("")]);
    assert.deepEqual(
      [...listed.keys()].sort(),
      ["image/base", "snapshot/vm1@s1", "thin", "vm1"],
    );

    const volume = (await nbdinfoJson([node.nbdUri("vm1")])).get("vm1")!;
    assert.equal(volume["export-size"], 64 * MiB);
    assert.equal(volume.is_read_only, false);
    for (const can of ["flush", "fua", "trim", "zero", "fast_zero", "multi_conn", "df", "cache"]) {
      assert.equal(volume[`can_${can}`], true, `vm1 can_${can}`);
    }
    // A volume with a snapshot also offers the blocks changed since it (incremental backup).
    assert.deepEqual(volume.contexts, ["base:allocation", "qemu:dirty-bitmap:s1"]);
    assert.deepEqual(
      [volume.block_size_minimum, volume.block_size_preferred, volume.block_size_maximum],
      [1, 4 * KiB, 32 * MiB],
    );

    const readOnly = [["image/base", 8 * MiB], ["snapshot/vm1@s1", 64 * MiB]] as const;
    for (const [name, size] of readOnly) {
      const entry = (await nbdinfoJson([node.nbdUri(name)])).get(name)!;
      assert.equal(entry["export-size"], size, name);
      assert.equal(entry.is_read_only, true, `${name} is read-only`);
      for (const can of ["trim", "zero", "fast_zero"]) {
        assert.equal(entry[`can_${can}`], false, `${name} cannot ${can}`);
      }
    }
    assert.deepEqual(listed.get("thin")!["export-size"], 8 * MiB);

    assert.deepEqual(await nbdinfoMap(node.nbdUri("vm1")), expectedMap(64 * MiB, new Set()));
    await qemuIo(node.nbdUri("vm1"), ["write -P 0x5a 0 4M"]);
    assert.deepEqual(await nbdinfoMap(node.nbdUri("vm1")), [
      { offset: 0, length: 4 * MiB, type: 0, description: "data" },
      { offset: 4 * MiB, length: 60 * MiB, type: 3, description: "hole,zero" },
    ]);
    assert.deepEqual(await nbdinfoMap(node.nbdUri("thin")), expectedMap(8 * MiB, new Set([0, 1])));
    assert.deepEqual(
      await nbdinfoMap(node.nbdUri("snapshot/vm1@s1")),
      expectedMap(64 * MiB, new Set()),
      "the snapshot was taken before the write",
    );
  });
});

/** One qemu-io command and what it does to the test's model of the export. */
type Step = [command: string, apply: (model: Uint8Array) => void];

const nothing = () => {};

/** `read -P` commands that check every byte of `model`, one per run of equal bytes. */
function verifyingReads(model: Uint8Array): string[] {
  const reads: string[] = [];
  let start = 0;
  for (let i = 1; i <= model.length; i++) {
    if (i === model.length || model[i] !== model[start]) {
      reads.push(`read -P 0x${model[start].toString(16)} ${start} ${i - start}`);
      start = i;
    }
  }
  return reads;
}

Deno.test("qemu-io writes, zeroes, discards and flushes; reads and HTTP see the same bytes", async () => {
  await withNode(async ({ node }) => {
    const size = 64 * MiB;
    await createVolume(node, "vm2", { size });
    const uri = node.nbdUri("vm2");
    const model = new Uint8Array(size);
    const M = MiB;
    // Block n is [4n MiB, 4n+4 MiB). Each line says what becomes of the blocks it touches.
    const steps: Step[] = [
      // Block 0: written whole, then zeroed with unmap: a hole again.
      ["write -P 0xa1 0 4M", (m) => fill(m, 0, 4 * M, 0xa1)],
      ["write -z -u 0 4M", (m) => fill(m, 0, 4 * M, 0)],
      // Blocks 1 and 2: a write straddling the boundary at 8 MiB, then a partial
      // zero (no unmap) over part of it.
      ["write -P 0xb2 8384512 8192", (m) => fill(m, 8 * M - 4096, 8192, 0xb2)],
      ["write -z 8390656 4096", (m) => fill(m, 8 * M + 2048, 4096, 0)],
      // Blocks 3 and 4: an unaligned write across the boundary at 16 MiB.
      ["write -P 0xc3 16777204 5000", (m) => fill(m, 16 * M - 12, 5000, 0xc3)],
      // Block 5: a FUA write of 64 KiB at an odd sector.
      ["write -f -P 0xd4 20972032 64k", (m) => fill(m, 20 * M + 512, 64 * KiB, 0xd4)],
      // Blocks 6 and 7: written, then fast-zeroed whole (-n: FAST_ZERO), unmap allowed.
      ["write -P 0xe5 24M 8M", (m) => fill(m, 24 * M, 8 * M, 0xe5)],
      ["write -z -u -n 24M 8M", (m) => fill(m, 24 * M, 8 * M, 0)],
      // Block 8: written, then discarded whole.
      ["write -P 0xf6 32M 4M", (m) => fill(m, 32 * M, 4 * M, 0xf6)],
      ["discard 32M 4M", (m) => fill(m, 32 * M, 4 * M, 0)],
      // Block 9: written, then 1 MiB in its middle zeroed with unmap allowed.
      ["write -P 0x17 36M 4M", (m) => fill(m, 36 * M, 4 * M, 0x17)],
      ["write -z -u 37M 1M", (m) => fill(m, 37 * M, M, 0)],
      // Blocks 10 and 11: zeroing never-written space (whole, and fast + partial).
      ["write -z -u 40M 4M", nothing],
      ["write -z -u -n 46137444 1000", nothing],
      // Block 15: the export's last 512 bytes.
      ["write -P 0x39 67108352 512", (m) => fill(m, size - 512, 512, 0x39)],
      ["flush", nothing],
    ];
    await qemuIo(uri, steps.map(([command]) => command));
    for (const [, apply] of steps) apply(model);

    // A fast zero of part of a data block cannot be faster than a write of it, so
    // the protocol asks for a quick ENOTSUP that leaves the bytes as they were;
    // Atoll currently zeroes it the slow way instead. Either way the bytes must
    // then be what the client was told.
    await qemuIo(uri, ["write -P 0x28 48M 4M"]);
    fill(model, 48 * M, 4 * M, 0x28);
    const fastPartial = await exec("qemu-io", qemuIoArgs(uri, ["write -z -u -n 50335744 4096"]));
    if (fastPartial.code === 0) {
      assert.doesNotMatch(fastPartial.stdout + fastPartial.stderr, /error|failed/i);
      fill(model, 48 * M + 4096, 4096, 0);
    } else {
      assert.match(fastPartial.stderr + fastPartial.stdout, /Operation not supported/);
    }

    await qemuIo(uri, verifyingReads(model));
    assert.equal(bytesSha256(await volumeBytes(node, "vm2")), bytesSha256(model));
    assert.deepEqual(
      await nbdinfoMap(uri),
      expectedMap(size, new Set([1, 2, 3, 4, 5, 9, 12, 15])),
    );
    // qemu-io's map (allocation in the raw layer) must account for every byte.
    const mapped = (await qemuIo(uri, ["map"])).matchAll(/\((0x[0-9a-f]+)\) bytes/g);
    assert.equal([...mapped].reduce((sum, match) => sum + Number(match[1]), 0), size);
  });
});

Deno.test("qemu-io partial-block writes into a thin clone keep the image's bytes around them", async () => {
  await withNode(async ({ node }) => {
    const image = patternBytes(8 * MiB, 2);
    await uploadImage(node, "base", image);
    await createVolume(node, "thin", { image: "base" });
    const model = image.slice();
    const steps: Step[] = [
      ["write -P 0x61 1000 3000", (m) => fill(m, 1000, 3000, 0x61)],
      ["write -P 0x62 4193804 1000", (m) => fill(m, 4 * MiB - 500, 1000, 0x62)],
      ["write -z 6M 4096", (m) => fill(m, 6 * MiB, 4096, 0)],
      ["write -f -P 0x63 8388508 100", (m) => fill(m, 8 * MiB - 100, 100, 0x63)],
      ["read -P 0x61 1000 3000", nothing],
      ["read -P 0x62 4193804 1000", nothing],
      ["read -P 0 6M 4096", nothing],
      ["read -P 0x63 8388508 100", nothing],
    ];
    await qemuIo(node.nbdUri("thin"), steps.map(([command]) => command));
    for (const [, apply] of steps) apply(model);

    assert.equal(bytesSha256(await volumeBytes(node, "thin")), bytesSha256(model));
    const imageBytes = new Uint8Array(await (await node.fetch("/v1/images/base")).arrayBuffer());
    assert.equal(bytesSha256(imageBytes), bytesSha256(image), "the image is untouched");
  });
});

/** Writes a raw file of `regions` ([length, "random" | "zero"]); returns its bytes. */
async function writeRegions(path: string, regions: [number, "random" | "zero"][]) {
  const size = regions.reduce((sum, [length]) => sum + length, 0);
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const [index, [length, kind]] of regions.entries()) {
    if (kind === "random") bytes.set(patternBytes(length, 100 + index), at);
    at += length;
  }
  await Deno.writeFile(path, bytes);
  return bytes;
}

/** `qemu-img map --output=json` of a raw export. */
async function qemuImgMap(uri: string) {
  const out = await run("qemu-img", ["map", "--output=json", "-f", "raw", uri]);
  return JSON.parse(out) as { start: number; length: number; zero: boolean; data: boolean }[];
}

/** True when every byte of `bytes[offset, offset+length)` is zero. */
function allZero(bytes: Uint8Array, offset: number, length: number): boolean {
  return bytes.subarray(offset, offset + length).every((byte) => byte === 0);
}

Deno.test("qemu-img converts a raw file into a volume, compares it back and maps its zeros", async () => {
  await withNode(async ({ node, dir }) => {
    const path = `${dir}/disk.raw`;
    const bytes = await writeRegions(path, [
      [5 * MiB + 333, "random"],
      [11 * MiB - 333, "zero"], // blocks 2 and 3 are all zero
      [3 * MiB + 123, "random"],
      [17 * MiB - 123, "zero"], // blocks 5 to 8
      [1 * MiB, "random"],
      [1 * MiB, "zero"],
      [2 * MiB, "random"],
      // A short last block. qemu-img (7.2) rounds sizes up to 512 bytes and
      // writes past the end of any NBD export whose size is not a multiple of
      // 512 (nbdkit's too), so the size stays a multiple of 512.
      [12_800, "random"],
    ]);
    const size = bytes.length;
    // "fresh" was never written; "reused" holds junk everywhere, so that
    // convert -n must really write the zeros.
    await createVolume(node, "fresh", { size });
    await createVolume(node, "reused", { size });
    await qemuIo(node.nbdUri("reused"), [`write -P 0x55 0 ${size}`]);

    for (const name of ["fresh", "reused"]) {
      const uri = node.nbdUri(name);
      await run("qemu-img", ["convert", "-n", "-f", "raw", "-O", "raw", path, uri]);
      const compared = await run("qemu-img", ["compare", "-f", "raw", "-F", "raw", path, uri]);
      assert.match(compared, /Images are identical/, name);
      assert.equal(bytesSha256(await volumeBytes(node, name)), bytesSha256(bytes), name);
    }

    // In the fresh volume every all-zero 4 MiB block stayed a hole, and the map
    // says so; every other block is data.
    const fresh = await qemuImgMap(node.nbdUri("fresh"));
    assert.equal(fresh.reduce((sum, entry) => sum + entry.length, 0), size);
    for (let offset = 0; offset < size; offset += blockBytes) {
      const zero = allZero(bytes, offset, Math.min(blockBytes, size - offset));
      const entry = fresh.find((e) => e.start <= offset && offset < e.start + e.length)!;
      assert.deepEqual({ zero: entry.zero, data: entry.data }, { zero, data: !zero }, `${offset}`);
    }
    // In the reused one, qemu-img zeroed in 2 MiB requests, none of which covers
    // a whole block, so blocks stay allocated: whatever the map calls zero must
    // read as zeros, and the map covers the export.
    const reused = await qemuImgMap(node.nbdUri("reused"));
    assert.equal(reused.reduce((sum, entry) => sum + entry.length, 0), size);
    for (const entry of reused.filter((e) => e.zero)) {
      assert.ok(allZero(bytes, entry.start, entry.length), `zero at ${entry.start}`);
    }

    const uri = node.nbdUri("fresh");
    const info = JSON.parse(await run("qemu-img", ["info", "--output=json", uri]));
    assert.deepEqual([info.format, info["virtual-size"]], ["raw", size]);
    await uploadImage(node, "disk", bytes);
    const imageInfo = JSON.parse(
      await run("qemu-img", ["info", "--output=json", node.nbdUri("image/disk")]),
    );
    assert.deepEqual([imageInfo.format, imageInfo["virtual-size"]], ["raw", size]);
  });
});

Deno.test("nbdcopy copies a file into a volume and volumes and images out, byte for byte", async () => {
  await withNode(async ({ node, dir }) => {
    const source = `${dir}/source.raw`;
    const bytes = await writeRegions(source, [
      // Regions end off block boundaries; a volume's size is whole 512-byte sectors.
      [9 * MiB + 512, "random"],
      [8 * MiB, "zero"],
      [7 * MiB + 1536, "random"],
    ]);
    await createVolume(node, "copy", { size: bytes.length });
    await run("nbdcopy", ["--flush", source, node.nbdUri("copy")]);
    assert.equal(bytesSha256(await volumeBytes(node, "copy")), bytesSha256(bytes));
    await run("nbdcopy", [node.nbdUri("copy"), `${dir}/volume.out`]);
    await run("cmp", [source, `${dir}/volume.out`]);

    const image = patternBytes(12 * MiB + 4097, 3);
    await Deno.writeFile(`${dir}/image.raw`, image);
    await uploadImage(node, "img", image);
    await run("nbdcopy", [node.nbdUri("image/img"), `${dir}/image.out`]);
    await run("cmp", [`${dir}/image.raw`, `${dir}/image.out`]);

    await createSnapshot(node, "copy", "s1");
    await run("nbdcopy", [node.nbdUri("snapshot/copy@s1"), `${dir}/snapshot.out`]);
    await run("cmp", [source, `${dir}/snapshot.out`]);
  });
});

Deno.test("a 10 GiB volume with 8 MiB written maps, reads and copies as holes", async () => {
  await withNode(async ({ node, dir }) => {
    const size = 10 * GiB;
    const written = patternBytes(8 * MiB, 4);
    await Deno.writeFile(`${dir}/small.raw`, written);
    await uploadImage(node, "small", written);
    // A clone has its image's size, so the large volume is empty and the
    // image's bytes are copied into its start.
    await createVolume(node, "huge", { size });
    const uri = node.nbdUri("huge");
    await run("nbdcopy", ["--flush", node.nbdUri("image/small"), uri]);

    assert.deepEqual(await nbdinfoMap(uri), expectedMap(size, new Set([0, 1])));

    // The server answers reads of holes with hole chunks, not with zeros.
    const chunks = await nbdPython(
      `
h = nbd.NBD()
h.connect_uri(sys.argv[1])
chunks = []
def chunk(subbuf, offset, status, error):
    chunks.append([offset, len(subbuf), status])
    return 0
buf = h.pread_structured(32 * 1024 * 1024, 4 * 1024 * 1024, chunk)
assert buf[4 * 1024 * 1024:] == bytes(28 * 1024 * 1024)
print(json.dumps(sorted(chunks)))
`,
      [uri],
    ) as [number, number, number][];
    const readData = 1, readHole = 2; // libnbd's READ_DATA, READ_HOLE
    const bytesOf = (status: number) =>
      chunks.filter((chunk) => chunk[2] === status).reduce((sum, chunk) => sum + chunk[1], 0);
    assert.equal(bytesOf(readHole), 28 * MiB);
    assert.equal(bytesOf(readData), 4 * MiB);

    const out = `${dir}/huge.out`;
    await run("nbdcopy", [uri, out]);
    const stat = await Deno.stat(out);
    assert.equal(stat.size, size);
    // nbdcopy skipped the holes, so the file is sparse: 8 MiB of data, not 10 GiB.
    assert.ok(stat.blocks! * 512 < 64 * MiB, `${stat.blocks! * 512} bytes allocated`);

    // Every byte of the copy is right: the file's data extents (found with
    // SEEK_DATA/SEEK_HOLE) hold the 8 MiB and zeros, and its holes read as zeros
    // by definition. (Hashing all 10 GiB takes 35 to 70 s on a test machine.)
    const extents = await dataExtents(out);
    assert.ok(
      extents.length > 0 && extents[0][0] === 0 && extents[0][1] >= written.length,
      `the written 8 MiB are data: extents ${JSON.stringify(extents)}`,
    );
    const file = await Deno.open(out);
    try {
      for (const [offset, length] of extents) {
        const bytes = new Uint8Array(length);
        await file.seek(offset, Deno.SeekMode.Start);
        for (let got = 0; got < length;) got += (await file.read(bytes.subarray(got)))!;
        const expected = new Uint8Array(length);
        if (offset < written.length) {
          expected.set(written.subarray(offset, Math.min(offset + length, written.length)));
        }
        assert.equal(bytesSha256(bytes), bytesSha256(expected), `extent at ${offset}`);
      }
    } finally {
      file.close();
    }
  });
});

/** The data extents `[offset, length]` of a file, by SEEK_DATA and SEEK_HOLE. */
async function dataExtents(path: string): Promise<[number, number][]> {
  const script = `
import json, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
extents, at = [], 0
while at < size:
    try:
        start = os.lseek(fd, at, os.SEEK_DATA)
    except OSError:
        break
    end = os.lseek(fd, start, os.SEEK_HOLE)
    extents.append([start, end - start])
    at = end
print(json.dumps(extents))
`;
  return JSON.parse(await run(systemPython, ["-c", script, path]));
}

/**
 * Runs a 4-connection fio job file against `uri` for `seconds`: two jobs of 4 KiB
 * blocks and two of 4 to 128 KiB blocks (crossing 4 MiB block boundaries),
 * random reads and writes, each job in its own 256 MiB region so that it can
 * verify what it wrote (crc32c, fatal). With time_based, fio verifies only
 * after a full pass over a region, which 4 KiB jobs never finish in time; so
 * verify_backlog verifies every 64 writes as it goes. fio's debug log of
 * verification (one "verify io_u" line per verified block, with the job's pid)
 * shows that every job did verify.
 */
async function fioVerified(dir: string, uri: string, seconds: number): Promise<void> {
  const jobFile = `${dir}/verify.fio`;
  await Deno.writeTextFile(
    jobFile,
    [
      "[global]",
      "ioengine=nbd",
      `uri=${uri}`,
      "rw=randrw",
      "iodepth=8",
      "size=256M",
      "offset_increment=256M",
      "time_based",
      `runtime=${seconds}`,
      "verify=crc32c",
      "verify_fatal=1",
      "do_verify=1",
      "verify_backlog=64",
      "verify_state_save=0",
      "[small]",
      "bs=4k",
      "numjobs=2",
      "[mixed]",
      "bsrange=4k-128k",
      "numjobs=2",
      "offset=512M",
    ].join("\n") + "\n",
  );
  const fio = new Deno.Command("fio", {
    args: ["--output-format=json", "--debug=verify", jobFile],
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(fio.stderr).text();
  const verifiedByPid = new Map<string, number>();
  const other: string[] = [];
  let partial = "";
  for await (const text of fio.stdout.pipeThrough(new TextDecoderStream())) {
    const lines = (partial + text).split("\n");
    partial = lines.pop()!;
    for (const line of lines) {
      const debug = line.match(/^verify\s+(\d+)\s+(.*)$/);
      if (debug === null) other.push(line);
      else if (debug[2].includes("verify io_u")) {
        verifiedByPid.set(debug[1], (verifiedByPid.get(debug[1]) ?? 0) + 1);
      }
    }
  }
  other.push(partial);
  const status = await fio.status;
  const jsonStart = other.indexOf("{");
  const messages = [...other.slice(0, Math.max(jsonStart, 0)), ...(await stderr).split("\n")];
  assert.equal(status.code, 0, `fio exited ${status.code}:\n${messages.join("\n")}`);
  // Anything but fio's two usual notices (a verify failure, an I/O error) fails.
  const benign = /^fio: (set debug option verify|connected to NBD server)$|^\s*$/;
  assert.deepEqual(messages.filter((line) => !benign.test(line)), []);
  const report = JSON.parse(other.slice(jsonStart).join("\n"));
  const jobs = report.jobs as { jobname: string; error: number; write: { total_ios: number } }[];
  assert.equal(jobs.length, 4, "four jobs, four connections");
  for (const job of jobs) {
    assert.equal(job.error, 0, `fio job ${job.jobname}`);
    assert.ok(job.write.total_ios > 0, `${job.jobname} wrote`);
  }
  assert.equal(verifiedByPid.size, 4, `jobs that verified: ${JSON.stringify([...verifiedByPid])}`);
}

Deno.test("fio's verify catches a corrupted block (the control for the fio tests)", async () => {
  await withNode(async ({ node }) => {
    await createVolume(node, "control", { size: 64 * MiB });
    const uri = node.nbdUri("control");
    const job = [
      "--name=control",
      "--ioengine=nbd",
      `--uri=${uri}`,
      "--rw=write",
      "--bs=64k",
      "--size=4M",
      "--verify=crc32c",
      "--verify_fatal=1",
      "--verify_state_save=0",
    ];
    const wrote = await exec("fio", [...job, "--do_verify=0"]);
    assert.equal(wrote.code, 0, wrote.stdout + wrote.stderr);
    const clean = await exec("fio", [...job, "--verify_only"]);
    assert.equal(clean.code, 0, clean.stdout + clean.stderr);
    await qemuIo(uri, ["write -P 0 1M 4k"]);
    const caught = await exec("fio", [...job, "--verify_only"]);
    assert.notEqual(caught.code, 0, "fio must fail verification of the corrupted block");
    assert.match(caught.stdout + caught.stderr, /verify: bad magic header/);
  });
});

Deno.test("fio randrw with crc32c verify over 4 TCP connections for 30 s", async () => {
  await withNode(async ({ node, dir }) => {
    await createVolume(node, "fio", { size: 1 * GiB });
    await fioVerified(dir, node.nbdUri("fio"), 30);
  });
});

Deno.test("fio randrw with crc32c verify over 4 unix-socket connections for 10 s", async () => {
  await withNode(async ({ node, dir }) => {
    assert.match(node.nbd, /^unix:/);
    await createVolume(node, "fio", { size: 1 * GiB });
    await fioVerified(dir, node.nbdUri("fio"), 10);
  }, (dir) => ({ nbd: `unix:${dir}/nbd.sock` }));
});

Deno.test("three connections to one volume see each other's writes once one flushes", async () => {
  await withNode(async ({ node }) => {
    await createVolume(node, "shared", { size: 32 * MiB });
    const result = await nbdPython(
      `
M = 1024 * 1024
handles = []
for _ in range(3):
    h = nbd.NBD()
    h.connect_uri(sys.argv[1])
    handles.append(h)
one, two, three = handles
checks = {"multiConn": [h.can_multi_conn() for h in handles]}

# Written on one (no flush), flushed on two, read on three: 3 MiB across 4 MiB.
data = bytes((i * 7 + 3) & 0xff for i in range(256)) * (3 * M // 256)
one.pwrite(data, 3 * M)
two.flush()
checks["write"] = three.pread(len(data), 3 * M) == data

# Zeroed and trimmed on three, flushed on one, read on two.
three.zero(4 * M, 4 * M)
three.trim(M, 3 * M)
one.flush()
checks["zero"] = two.pread(6 * M, 2 * M) == bytes(6 * M)

# 60 pipelined writes spread over the three connections, flushed once, read back.
model = bytearray(three.pread(16 * M, 8 * M))
cookies = []
for i in range(60):
    h = handles[i % 3]
    length = 256 * 1024 - 4000
    offset = i * 256 * 1024 + (i % 5) * 700
    chunk = bytes([(i * 37 + 1) & 0xff]) * length
    model[offset:offset + length] = chunk
    buf = nbd.Buffer.from_bytearray(bytearray(chunk))
    cookies.append((h, h.aio_pwrite(buf, 8 * M + offset)))
while any(h.aio_in_flight() > 0 for h in handles):
    for h in handles:
        if h.aio_in_flight() > 0:
            h.poll(-1)
checks["completed"] = all(h.aio_command_completed(c) for h, c in cookies)
three.flush()
checks["pipelined"] = one.pread(16 * M, 8 * M) == bytes(model)
for h in handles:
    h.shutdown()
print(json.dumps(checks))
`,
      [node.nbdUri("shared")],
    );
    assert.deepEqual(result, {
      multiConn: [true, true, true],
      write: true,
      zero: true,
      completed: true,
      pipelined: true,
    });
  });
});
