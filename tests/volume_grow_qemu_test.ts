/**
 * Goal: a cloud image becomes a larger root disk, and a VM's disk grows while
 * QEMU has it attached (issue 13 acceptance). A 2 GiB image cloned into a
 * 20 GiB volume reads as the image for its first 2 GiB and as zeros after.
 * QEMU (7.2) refuses `block_resize` of an NBD node past the size it learnt at
 * its connection ("Cannot grow NBD nodes"); the operator path of
 * docs/operations.md ("Growing a volume") opens a second NBD node (a new
 * connection, which learns the new size), moves the disk's format node onto
 * it with `blockdev-reopen`, then `block_resize` succeeds and the device sees
 * the new size; QEMU's writes past the old end land in the volume.
 * Method: a real node; a sparse 2 GiB raw file with a few MiB of data at known
 * places, uploaded with the real CLI; `qemu-img compare` of the file against
 * the NBD export (it checks that the larger side reads as zeros past the
 * smaller one's end); a real qemu-system-x86_64 (TCG, stopped with -S, a
 * virtio-blk device on the volume) driven over QMP on a unix socket.
 */
import assert from "node:assert/strict";
import type { TestNode } from "./_node.ts";
import { api, exec, GiB, MiB, qemuIo, withNode } from "./_nbd.ts";

const root = new URL("../", import.meta.url).pathname;

async function atoll(node: TestNode, args: string[]): Promise<string> {
  const out = await exec(Deno.execPath(), [
    "run",
    "--allow-all",
    `${root}main.ts`,
    ...args,
    "--node",
    node.url,
  ]);
  assert.equal(out.code, 0, `atoll ${args.join(" ")}: ${out.stderr}`);
  return out.stdout;
}

/** Where the sparse image holds data: offsets and lengths (the rest is holes). */
const dataExtents = [
  { offset: 0, length: 1 * MiB },
  { offset: 700 * MiB + 4096, length: 3 * MiB },
  { offset: 2 * GiB - 2 * MiB, length: 2 * MiB },
];

async function writeSparseImage(path: string): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  await file.truncate(2 * GiB);
  for (const [i, { offset, length }] of dataExtents.entries()) {
    const bytes = new Uint8Array(length);
    for (let at = 0; at < length; at++) bytes[at] = (at * 7 + i * 31 + 1) % 251 + 1;
    await file.seek(offset, Deno.SeekMode.Start);
    let written = 0;
    while (written < length) written += await file.write(bytes.subarray(written));
  }
}

Deno.test("a 2 GiB image cloned into a 20 GiB volume reads as the image, then zeros", async () => {
  await withNode(async ({ node, dir }) => {
    const path = `${dir}/cloud.raw`;
    await writeSparseImage(path);
    await atoll(node, ["image", "upload", path, "cloud"]);
    const created = await atoll(node, [
      "volume",
      "create",
      "root",
      "--image",
      "cloud",
      "--size",
      "20G",
    ]);
    assert.match(created, /size:\s+20.0 GiB \(21474836480 bytes\)/);
    const uri = node.nbdUri("root");
    const info = await exec("nbdinfo", ["--size", uri]);
    assert.equal(info.stdout.trim(), String(20 * GiB));
    const same = await exec("qemu-img", ["compare", "-f", "raw", "-F", "raw", path, uri]);
    assert.equal(same.code, 0, same.stdout + same.stderr);
    assert.match(same.stdout, /Images are identical/);

    // The comparison sees a difference in either part: the check is not vacuous.
    await qemuIo(uri, ["write -P 9 5G 512", "flush"]);
    const past = await exec("qemu-img", ["compare", "-f", "raw", "-F", "raw", path, uri]);
    assert.equal(past.code, 1, past.stdout + past.stderr);
    await qemuIo(uri, ["write -z 5G 512", "write -P 9 1G 512", "flush"]);
    const inside = await exec("qemu-img", ["compare", "-f", "raw", "-F", "raw", path, uri]);
    assert.equal(inside.code, 1, inside.stdout + inside.stderr);
    assert.match(inside.stdout, /Content mismatch at offset 1073741824/);
  });
});

/** A QMP client on a unix socket: one command at a time, events skipped. */
class Qmp {
  #conn: Deno.UnixConn;
  #lines: ReadableStreamDefaultReader<string>;
  #buffer = "";

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
    this.#lines = conn.readable.pipeThrough(new TextDecoderStream()).getReader();
  }

  static async connect(path: string): Promise<Qmp> {
    for (let attempt = 0;; attempt++) {
      try {
        const qmp = new Qmp(await Deno.connect({ transport: "unix", path }));
        await qmp.#message(); // the greeting
        await qmp.execute("qmp_capabilities");
        return qmp;
      } catch (error) {
        if (attempt >= 100 || !(error instanceof Deno.errors.NotFound)) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  /** Runs `command`; its `return`, or throws with QEMU's error text. */
  async execute(command: string, args: Record<string, unknown> = {}): Promise<unknown> {
    const request = JSON.stringify({ execute: command, arguments: args }) + "\n";
    await this.#conn.write(new TextEncoder().encode(request));
    for (;;) {
      const message = await this.#message();
      if ("event" in message) continue;
      if ("error" in message) throw new Error((message.error as { desc: string }).desc);
      return message.return;
    }
  }

  /** Closes the connection (QEMU may have closed it first, after `quit`). */
  close(): void {
    try {
      this.#conn.close();
    } catch (error) {
      if (!(error instanceof Deno.errors.BadResource)) throw error;
    }
  }

  async #message(): Promise<Record<string, unknown>> {
    while (!this.#buffer.includes("\n")) {
      const { value, done } = await this.#lines.read();
      if (done) throw new Error(`QMP closed: ${this.#buffer}`);
      this.#buffer += value;
    }
    const end = this.#buffer.indexOf("\n");
    const line = this.#buffer.slice(0, end);
    this.#buffer = this.#buffer.slice(end + 1);
    return JSON.parse(line);
  }
}

/** The `-blockdev` options of an NBD node on volume `name` of `node` (TCP). */
function nbdNode(node: TestNode, nodeName: string, name: string) {
  return {
    driver: "nbd",
    "node-name": nodeName,
    server: { type: "inet", host: "127.0.0.1", port: String(node.nbdPort) },
    export: name,
  };
}

/** The size QEMU's virtio-blk device `vd0` sees (its block backend's). */
async function deviceSize(qmp: Qmp): Promise<number> {
  const blocks = await qmp.execute("query-block") as {
    qdev?: string;
    inserted?: { image: { "virtual-size": number } };
  }[];
  const device = blocks.find((block) => block.qdev?.includes("vd0"));
  assert.ok(device?.inserted !== undefined, JSON.stringify(blocks));
  return device.inserted.image["virtual-size"];
}

Deno.test("QEMU sees a volume grown while attached, after block_resize", async () => {
  await withNode(async ({ node, dir }) => {
    await api(node, "/v1/volumes", { name: "vm", size: 64 * MiB });
    await qemuIo(node.nbdUri("vm"), ["write -P 3 60M 1M", "flush"]);
    const socket = `${dir}/qmp.sock`;
    const qemu = new Deno.Command("qemu-system-x86_64", {
      args: [
        ...["-machine", "pc,accel=tcg", "-S", "-nodefaults", "-display", "none"],
        ...["-qmp", `unix:${socket},server=on,wait=off`],
        ...["-blockdev", JSON.stringify(nbdNode(node, "nbd0", "vm"))],
        ...["-blockdev", JSON.stringify({ driver: "raw", "node-name": "disk0", file: "nbd0" })],
        ...["-device", "virtio-blk-pci,drive=disk0,id=vd0"],
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output = Promise.all([
      new Response(qemu.stdout).text(),
      new Response(qemu.stderr).text(),
    ]);
    let qmp: Qmp | null = null;
    try {
      qmp = await Qmp.connect(socket);
      assert.equal(await deviceSize(qmp), 64 * MiB);

      await atoll(node, ["volume", "resize", "vm", "96M"]);
      // QEMU alone cannot: its NBD node keeps the size of its connection.
      await assert.rejects(
        qmp.execute("block_resize", { "node-name": "disk0", size: 96 * MiB }),
        /Cannot grow NBD nodes/,
      );
      // The steps of docs/operations.md "Growing a volume".
      await qmp.execute("blockdev-add", nbdNode(node, "nbd1", "vm"));
      await qmp.execute("blockdev-reopen", {
        options: [{ driver: "raw", "node-name": "disk0", file: "nbd1" }],
      });
      await qmp.execute("block_resize", { "node-name": "disk0", size: 96 * MiB });
      await qmp.execute("blockdev-del", { "node-name": "nbd0" });
      assert.equal(await deviceSize(qmp), 96 * MiB);

      // QEMU writes past the old end, and reads what was there before the growth.
      // (Through the device's own block backend.)
      for (const command of ["write -P 7 90M 64k", "read -P 3 60M 1M", "flush"]) {
        const said = await qmp.execute("human-monitor-command", {
          "command-line": `qemu-io -d /machine/peripheral/vd0/virtio-backend "${command}"`,
        });
        assert.equal(said, "", `qemu-io ${command}: ${said}`);
      }
      await qemuIo(node.nbdUri("vm"), ["read -P 7 90M 64k", "read -P 0 64M 26M"]);
    } finally {
      await qmp?.execute("quit").catch(() => qemu.kill());
      qmp?.close();
    }
    const status = await qemu.status;
    const [stdout, stderr] = await output;
    assert.equal(status.code, 0, stderr);
    // qemu-io, run by the monitor, prints to QEMU's stdout.
    assert.match(stdout, /wrote 65536\/65536 bytes at offset 94371840/);
    assert.match(stdout, /read 1048576\/1048576 bytes at offset 62914560/);
    assert.doesNotMatch(stdout, /Pattern verification failed|error/i, stdout);
  });
});
