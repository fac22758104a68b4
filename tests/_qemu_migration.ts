/**
 * A real QEMU live migration with the volume on Atoll, for the engines' tests
 * (migration_test.ts on the ring, rados_migration_test.ts on RADOS): the source
 * VM on node one, the destination (`-incoming`) on node two, both attached over
 * NBD at once; what the source wrote is what the destination reads; the
 * destination's writes move the lease; migrating back to a fresh QEMU on node
 * one works the same way; the volume ends equal to the model.
 * Method: two `qemu-system-x86_64 -accel tcg` processes per hop driven over QMP
 * (qemu-io through `human-monitor-command` on a virtio-blk drive), migration
 * over loopback TCP; the final check with nbdcopy as a third client.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createVolume, exec, MiB } from "./_nbd.ts";
import type { TestNode } from "./_node.ts";
import { bytesSha256, fileSha256 } from "./_files.ts";

const volumeSize = 32 * MiB;

/** A QEMU process and its QMP connection. */
class Qemu {
  #lines: ReadableStreamDefaultReader<string>;
  #buffered = "";

  private constructor(
    readonly process: Deno.ChildProcess,
    readonly conn: Deno.UnixConn,
    readonly log: () => string,
  ) {
    this.#lines = conn.readable.pipeThrough(new TextDecoderStream()).getReader();
  }

  static async start(node: TestNode, dir: string, name: string, incoming?: string): Promise<Qemu> {
    const socket = join(dir, `${name}.qmp`);
    const process = new Deno.Command("qemu-system-x86_64", {
      args: [
        "-machine",
        "pc",
        "-accel",
        "tcg",
        "-nodefaults",
        "-display",
        "none",
        "-m",
        "64",
        "-drive",
        `file=${node.nbdUri("vm1")},format=raw,if=none,id=drive0,cache=none`,
        "-device",
        "virtio-blk-pci,drive=drive0,id=disk0",
        "-qmp",
        `unix:${socket},server=on,wait=off`,
        ...(incoming === undefined ? [] : ["-incoming", incoming]),
      ],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const stderr: string[] = [];
    (async () => {
      for await (const chunk of process.stderr.pipeThrough(new TextDecoderStream())) {
        stderr.push(chunk);
      }
    })().catch(() => {});
    let conn: Deno.UnixConn | null = null;
    for (let i = 0; i < 100 && conn === null; i++) {
      try {
        conn = await Deno.connect({ transport: "unix", path: socket });
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    assert.ok(conn !== null, `QMP socket of ${name}: ${stderr.join("")}`);
    const qemu = new Qemu(process, conn, () => stderr.join(""));
    await qemu.#reply(); // greeting
    await qemu.command("qmp_capabilities");
    return qemu;
  }

  /** Runs a QMP command; returns its "return" value or throws its error. */
  async command(execute: string, args?: Record<string, unknown>): Promise<unknown> {
    await this.conn.write(
      new TextEncoder().encode(JSON.stringify({ execute, arguments: args }) + "\n"),
    );
    const reply = await this.#reply();
    if ("error" in reply) throw new Error(`${execute}: ${JSON.stringify(reply.error)}`);
    return reply.return;
  }

  /** Runs qemu-io on the VM's drive; asserts it reported no error. */
  async qemuIo(command: string): Promise<string> {
    const out = String(
      await this.command("human-monitor-command", {
        "command-line": `qemu-io drive0 "${command}"`,
      }),
    );
    assert.doesNotMatch(out, /error|failed|verification/i, `qemu-io ${command}: ${out}`);
    return out;
  }

  /** Waits until `query-migrate` says completed. */
  async migrationDone(): Promise<void> {
    for (let i = 0; i < 600; i++) {
      const status = (await this.command("query-migrate") as { status?: string }).status;
      if (status === "completed") return;
      assert.ok(status !== "failed" && status !== "cancelled", `migration ${status}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.fail("migration did not complete in 60 s");
  }

  /**
   * Live-migrates this VM to a new QEMU attached through `node` (started with
   * `-incoming`, named `name`) and returns it once the migration completed.
   */
  async migrateTo(node: TestNode, dir: string, name: string): Promise<Qemu> {
    const port = freePort();
    const target = await Qemu.start(node, dir, name, `tcp:127.0.0.1:${port}`);
    try {
      await this.command("migrate", { uri: `tcp:127.0.0.1:${port}` });
      await this.migrationDone();
    } catch (error) {
      await target.kill();
      throw error;
    }
    return target;
  }

  async quit(): Promise<void> {
    await this.command("quit").catch(() => {});
    try {
      this.conn.close();
    } catch { /* QEMU closed it first: the reader already released it */ }
    const status = await this.process.status;
    assert.ok(status.success, `qemu exited ${status.code}: ${this.log()}`);
  }

  async kill(): Promise<void> {
    try {
      this.process.kill("SIGKILL");
    } catch { /* gone */ }
    await this.process.status;
  }

  async #reply(): Promise<Record<string, unknown>> {
    for (;;) {
      const newline = this.#buffered.indexOf("\n");
      if (newline >= 0) {
        const line = this.#buffered.slice(0, newline);
        this.#buffered = this.#buffered.slice(newline + 1);
        const message = JSON.parse(line);
        if ("event" in message) continue;
        return message;
      }
      const { value, done } = await this.#lines.read();
      if (done) throw new Error(`QMP closed: ${this.log()}`);
      this.#buffered += value;
    }
  }
}

/** A free TCP port on loopback. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Migrates a VM on volume vm1 from `one` to `two` and back (see the module doc). */
export async function migrateThereAndBack(
  one: TestNode,
  two: TestNode,
  dir: string,
): Promise<void> {
  const vms: Qemu[] = [];
  try {
    await createVolume(one, "vm1", { size: volumeSize });
    const model = new Uint8Array(volumeSize);
    const source = await Qemu.start(one, dir, "source");
    vms.push(source);
    await source.qemuIo("write -P 0x11 0 1M");
    await source.qemuIo("write -P 0x12 5M 64k");
    model.fill(0x11, 0, MiB);
    model.fill(0x12, 5 * MiB, 5 * MiB + 64 * 1024);

    // Migrate to a destination attached through node 2.
    const destination = await source.migrateTo(two, dir, "destination");
    vms.push(destination);
    await destination.qemuIo("read -P 0x11 0 1M");
    await destination.qemuIo("read -P 0x12 5M 64k");
    await destination.qemuIo("write -P 0x22 1M 1M");
    await destination.qemuIo("write -P 0x23 0 4k");
    model.fill(0x22, MiB, 2 * MiB);
    model.fill(0x23, 0, 4096);
    await destination.qemuIo("read -P 0x22 1M 1M");
    const held = await (await two.fetch("/v1/volumes/vm1")).json();
    assert.equal(held.heldHere, true, "the destination's writes moved the lease to node 2");
    await source.quit(); // its FLUSH and DISC after switchover succeed

    // Migrate back to a fresh QEMU on node 1.
    const returned = await destination.migrateTo(one, dir, "returned");
    vms.push(returned);
    await returned.qemuIo("read -P 0x23 0 4k");
    await returned.qemuIo("read -P 0x22 1M 1M");
    await returned.qemuIo("write -P 0x33 2M 512k");
    model.fill(0x33, 2 * MiB, 2 * MiB + 512 * 1024);
    await destination.quit();
    await returned.command("human-monitor-command", { "command-line": "qemu-io drive0 flush" });
    assert.equal((await (await one.fetch("/v1/volumes/vm1")).json()).heldHere, true);

    // A third client reads the whole volume through node 2.
    const copy = join(dir, "copy.raw");
    const out = await exec("nbdcopy", [two.nbdUri("vm1"), copy]);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(await fileSha256(copy), bytesSha256(model), "the volume equals the model");
    await returned.quit();
  } finally {
    for (const vm of vms) await vm.kill();
  }
}
