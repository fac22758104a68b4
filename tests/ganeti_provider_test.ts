/**
 * Goal: the Ganeti ExtStorage provider (integrations/ganeti/atoll) does what
 * ganeti-extstorage-interface(7) asks, against a real node: create, attach,
 * grow, snapshot, setinfo, verify, detach and remove a volume, and attach
 * prints what Ganeti's ExtStorageDevice.Attach and GetUserspaceAccessUri read
 * (no block device on the first line, then `kvm:URI`) such that QEMU boots
 * from the URI. Failures exit non-zero with a clear line on stderr and change
 * nothing.
 * Method: the provider directory is copied as an operator installs it, with an
 * atoll.conf naming a real `atoll serve` process and the CLI; each script runs
 * with a cleared environment holding only what Ganeti's _ExtStorageEnvironment
 * builds (VOL_NAME, VOL_SIZE, VOL_NEW_SIZE, VOL_METADATA, VOL_CNAME, VOL_UUID,
 * VOL_SNAPSHOT_NAME, VOL_SNAPSHOT_SIZE, EXTP_*), with the provider's directory
 * as working directory, as Ganeti's noded runs them. The URI is opened by
 * nbdinfo, qemu-img, qemu-io and a TCG qemu-system-x86_64 booting a sector
 * that prints a token on its serial port. shellcheck checks the scripts.
 */
import assert from "node:assert/strict";
import { removeData, startNode, type TestNode } from "./_node.ts";
import { bytesSha256, patternBytes, run } from "./_files.ts";
import { bootSector, waitForText } from "./_boot_sector.ts";

const root = new URL("../", import.meta.url).pathname;
const providerSource = `${root}integrations/ganeti/atoll`;
const scripts = ["create", "attach", "detach", "remove", "grow", "setinfo", "verify", "snapshot"];
const MiB = 1024 * 1024;

/** What Ganeti passes a script (lib/storage/extstorage.py, _ExtStorageEnvironment). */
interface GanetiCall {
  volume?: string;
  params?: Record<string, string>;
  size?: number;
  grow?: number;
  metadata?: string;
  name?: string;
  uuid?: string;
  snapName?: string;
  snapSize?: number;
}

function ganetiEnvironment(call: GanetiCall): Record<string, string> {
  const env: Record<string, string> = {};
  if (call.volume !== undefined) env.VOL_NAME = call.volume;
  for (const [name, value] of Object.entries(call.params ?? {})) {
    env[`EXTP_${name.toUpperCase()}`] = value;
  }
  if (call.size !== undefined) env.VOL_SIZE = String(call.size);
  if (call.grow !== undefined) env.VOL_NEW_SIZE = String(call.grow);
  if (call.metadata !== undefined) env.VOL_METADATA = call.metadata;
  if (call.name !== undefined) env.VOL_CNAME = call.name;
  if (call.uuid !== undefined) env.VOL_UUID = call.uuid;
  if (call.snapName !== undefined) env.VOL_SNAPSHOT_NAME = call.snapName;
  if (call.snapSize !== undefined) env.VOL_SNAPSHOT_SIZE = String(call.snapSize);
  return env;
}

interface ScriptResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** An installed copy of the provider, configured for one node. */
class Provider {
  constructor(readonly dir: string) {}

  static async install(node: TestNode, settings: Record<string, string> = {}): Promise<Provider> {
    const dir = await Deno.makeTempDir({ prefix: "atoll-ganeti-" });
    for (const entry of Deno.readDirSync(providerSource)) {
      await Deno.copyFile(`${providerSource}/${entry.name}`, `${dir}/${entry.name}`);
      await Deno.chmod(
        `${dir}/${entry.name}`,
        Deno.statSync(`${providerSource}/${entry.name}`).mode!,
      );
    }
    assert.ok(!/\s/.test(Deno.execPath()), "ATOLL_CLI is split on spaces");
    const values = {
      ATOLL_CLI: `${Deno.execPath()} run --allow-all --quiet ${root}main.ts`,
      ATOLL_NODE: node.url,
      ATOLL_NBD: node.nbd.replace(/^nbd:\/\//, ""),
      ...settings,
    };
    const conf = Object.entries(values).map(([key, value]) => `${key}="${value}"`).join("\n");
    await Deno.writeTextFile(`${dir}/atoll.conf`, `${conf}\n`);
    return new Provider(dir);
  }

  /** Runs a script as Ganeti's noded does: clean environment, the provider's directory. */
  async run(action: string, call: GanetiCall, args: string[] = []): Promise<ScriptResult> {
    const output = await new Deno.Command(`${this.dir}/${action}`, {
      args,
      cwd: this.dir,
      clearEnv: true,
      env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", ...ganetiEnvironment(call) },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder();
    return {
      code: output.code,
      stdout: text.decode(output.stdout),
      stderr: text.decode(output.stderr),
    };
  }

  /** Runs a script that must succeed; returns its stdout. */
  async ok(action: string, call: GanetiCall): Promise<string> {
    const result = await this.run(action, call);
    assert.equal(result.code, 0, `${action} failed: ${result.stderr}`);
    return result.stdout;
  }

  async remove(): Promise<void> {
    await Deno.remove(this.dir, { recursive: true });
  }
}

/**
 * The KVM userspace URI as Ganeti reads attach's output: the first line is the
 * block device path ("" when there is none), the others `HYPERVISOR:URI`.
 */
function kvmUri(stdout: string): string {
  const [devicePath, ...uris] = stdout.split("\n");
  assert.equal(devicePath, "", "no local block device: the first line is empty");
  const uri = uris.find((line) => line.toLowerCase().startsWith("kvm:"));
  assert.ok(uri !== undefined, `attach printed no kvm: URI: ${JSON.stringify(stdout)}`);
  return uri.slice("kvm:".length);
}

async function volumeNames(node: TestNode): Promise<string[]> {
  const volumes = await (await node.fetch("/v1/volumes")).json() as { name: string }[];
  return volumes.map((volume) => volume.name).sort();
}

async function volumeBytes(node: TestNode, name: string, length: number): Promise<Uint8Array> {
  const response = await node.fetch(`/v1/volumes/${name}/data`, {
    headers: { Range: `bytes=0-${length - 1}` },
  });
  assert.ok(response.ok, `reading ${name}: ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

/** Boots a TCG PC from `uri` with its disk as Ganeti 3.0's KVM -drive gives it. */
async function bootFrom(uri: string, token: string): Promise<void> {
  const serial = await Deno.makeTempFile({ prefix: "atoll-serial-" });
  const qemu = new Deno.Command("qemu-system-x86_64", {
    args: [
      ...["-accel", "tcg", "-machine", "pc", "-m", "32", "-display", "none"],
      ...["-nodefaults", "-no-user-config", "-serial", `file:${serial}`],
      ...["-drive", `file=${uri},format=raw,if=virtio,cache=none`, "-boot", "c"],
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  try {
    await waitForText(serial, token, 60_000);
  } finally {
    qemu.kill("SIGKILL");
    await qemu.output();
    await Deno.remove(serial);
  }
}

Deno.test("the provider creates, attaches, grows, snapshots, sets info, verifies, detaches and removes a volume as Ganeti runs it", async () => {
  const node = await startNode();
  const provider = await Provider.install(node);
  try {
    const token = `atoll-ganeti-${crypto.randomUUID()}`;
    const image = new Uint8Array(4 * MiB);
    image.set(patternBytes(image.length, 13));
    image.set(bootSector(token));
    const upload = await node.fetch("/v1/images/debian-ganeti", { method: "PUT", body: image });
    assert.equal(upload.status, 201, await upload.text());

    const uuid = crypto.randomUUID();
    const volume = `${uuid}.ext.disk0`;
    const common = { volume, name: "disk0", uuid };
    await provider.ok("create", { ...common, size: 64, params: { image: "debian-ganeti" } });
    const info = await (await node.fetch(`/v1/volumes/${volume}`)).json();
    assert.equal(info.size, 64 * MiB);

    // attach is idempotent and prints the URI; QEMU, qemu-img and nbdinfo open it.
    const attached = await provider.ok("attach", common);
    assert.equal(await provider.ok("attach", common), attached);
    const uri = kvmUri(attached);
    assert.equal(uri, `${node.nbd}/${volume}`);
    assert.equal((await run("nbdinfo", ["--size", uri])).trim(), String(64 * MiB));
    const qemuImg = JSON.parse(await run("qemu-img", ["info", "--output=json", uri]));
    assert.equal(qemuImg["virtual-size"], 64 * MiB);
    await bootFrom(uri, token);

    // grow: the new size over NBD, the image's bytes kept, zeros after them.
    await provider.ok("grow", { ...common, size: 64, grow: 128 });
    assert.equal((await run("nbdinfo", ["--size", uri])).trim(), String(128 * MiB));
    assert.equal(bytesSha256(await volumeBytes(node, volume, 4 * MiB)), bytesSha256(image));
    await run("qemu-io", ["-f", "raw", "-c", `read -P 0 ${4 * MiB} ${124 * MiB}`, uri]);

    const metadata = `originstname+inst-${uuid}.example.org`;
    assert.equal(
      await provider.ok("setinfo", { ...common, metadata }),
      `atoll volume ${volume}: ${metadata}\n`,
    );
    await provider.ok("verify", { params: { image: "debian-ganeti" } });

    // snapshot (gnt-backup export): a volume VOL_NAME.snap frozen at this instant,
    // which later writes to the disk do not change and garbage collection keeps.
    const snapName = `${volume}.snap`;
    await provider.ok("snapshot", { volume, snapName, snapSize: 128 });
    await run("qemu-io", ["-f", "raw", "-c", "write -P 0x5a 0 64k", uri]);
    const snapshots = await (await node.fetch(`/v1/volumes/${volume}/snapshots`)).json();
    assert.deepEqual(snapshots, [], "the Atoll snapshot behind the clone is gone");
    assert.equal((await node.fetch("/v1/gc", { method: "POST" })).status, 200);
    const snapUri = kvmUri(await provider.ok("attach", { volume: snapName }));
    assert.equal((await run("nbdinfo", ["--size", snapUri])).trim(), String(128 * MiB));
    assert.equal(bytesSha256(await volumeBytes(node, snapName, 4 * MiB)), bytesSha256(image));
    await provider.ok("detach", { volume: snapName });
    await provider.ok("remove", { volume: snapName });
    assert.deepEqual(await volumeNames(node), [volume]);

    assert.equal(await provider.ok("detach", common), "");
    assert.equal(await provider.ok("detach", common), "", "detach is idempotent");
    await provider.ok("remove", common);
    assert.equal((await node.fetch(`/v1/volumes/${volume}`)).status, 404);
    const gone = await provider.run("attach", common);
    assert.notEqual(gone.code, 0);
    assert.equal(gone.stdout, "");
    assert.match(gone.stderr, /no such volume/);
    assert.match(gone.stderr, new RegExp(`atoll attach: cannot attach volume ${volume}`));
  } finally {
    await provider.remove();
    await node.stop();
    await removeData(node);
  }
});

Deno.test("attach prints an nbd+unix URI for a node on a unix socket, and a new disk reads as zeros", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-ganeti-sock-" });
  const node = await startNode({ nbd: `unix:${dir}/nbd.sock` });
  const provider = await Provider.install(node);
  try {
    const volume = `${crypto.randomUUID()}.ext.disk1`;
    await provider.ok("create", { volume, size: 16 });
    const uri = kvmUri(await provider.ok("attach", { volume }));
    assert.equal(uri, `nbd+unix:///${volume}?socket=${dir}/nbd.sock`);
    assert.equal((await run("nbdinfo", ["--size", uri])).trim(), String(16 * MiB));
    await run("qemu-io", ["-f", "raw", "-c", `read -P 0 0 ${16 * MiB}`, uri]);
    await run("qemu-io", ["-f", "raw", "-c", "write -P 0x11 1M 8k", uri]);
    await run("qemu-io", ["-f", "raw", "-c", "read -P 0x11 1M 8k", uri]);
    await provider.ok("remove", { volume });
    assert.deepEqual(await volumeNames(node), []);
  } finally {
    await provider.remove();
    await node.stop();
    await removeData(node);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the provider's scripts fail with one clear line on stderr and change nothing", async () => {
  const node = await startNode();
  const provider = await Provider.install(node);
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closedPort = (closed.addr as Deno.NetAddr).port;
  closed.close();
  const unreachable = await Provider.install(node, {
    ATOLL_NODE: `http://127.0.0.1:${closedPort}`,
  });
  const noCli = await Provider.install(node, { ATOLL_CLI: "/nonexistent/atoll" });
  try {
    const volume = `${crypto.randomUUID()}.ext.disk0`;
    await provider.ok("create", { volume, size: 8 });
    const cases: [Provider, string, GanetiCall, RegExp][] = [
      [provider, "create", { size: 8 }, /atoll create: VOL_NAME is not set/],
      [provider, "create", { volume: "x.ext.disk9", size: 0 }, /VOL_SIZE must be a size in MiB/],
      [provider, "create", { volume: "x.ext.disk9", size: 1.5 }, /VOL_SIZE must be a size in MiB/],
      [
        provider,
        "create",
        { volume: "x.ext.disk9", size: 8, params: { image: "a", snapshot: "v@s" } },
        /not both/,
      ],
      [provider, "create", { volume, size: 8 }, /atoll create: cannot create volume/],
      [provider, "create", { volume: "x.ext.disk9", size: 8, params: { image: "nope" } }, /nope/],
      [provider, "grow", { volume, size: 8, grow: 4 }, /must be larger than VOL_SIZE/],
      [provider, "grow", { volume: "x.ext.disk9", size: 8, grow: 16 }, /cannot grow/],
      [provider, "remove", { volume: "x.ext.disk9" }, /cannot remove volume x.ext.disk9/],
      [provider, "setinfo", { volume }, /VOL_METADATA is not set/],
      [provider, "snapshot", { volume }, /VOL_SNAPSHOT_NAME is not set/],
      [provider, "snapshot", { volume, snapName: volume }, /cannot create volume/],
      [provider, "verify", { params: { snapshot: "novolume" } }, /expected VOLUME@SNAPSHOT/],
      [provider, "verify", { params: { snapshot: `${volume}@none` } }, /no snapshot/],
      [unreachable, "attach", { volume }, /Cannot reach node/],
      [unreachable, "verify", {}, /cannot reach the Atoll node/],
      [noCli, "attach", { volume }, /'\/nonexistent\/atoll' not found \(set ATOLL_CLI in/],
    ];
    for (const [installed, action, call, message] of cases) {
      const result = await installed.run(action, call);
      const what = `${action} ${JSON.stringify(call)}`;
      assert.notEqual(result.code, 0, `${what} succeeded`);
      assert.match(result.stderr, message, what);
      assert.match(result.stderr, new RegExp(`^atoll( ${action})?: `, "m"), what);
      assert.equal(result.stdout, "", what);
    }
    // Nothing changed: the one volume, its size, no snapshot left by the failed snapshot.
    assert.deepEqual(await volumeNames(node), [volume]);
    assert.equal((await (await node.fetch(`/v1/volumes/${volume}`)).json()).size, 8 * MiB);
    assert.deepEqual(await (await node.fetch(`/v1/volumes/${volume}/snapshots`)).json(), []);

    const help = await provider.run("attach", {}, ["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^usage: attach/);
    const extra = await provider.run("remove", { volume }, ["now"]);
    assert.notEqual(extra.code, 0);
    assert.match(extra.stderr, /^usage: remove/);
    assert.deepEqual(await volumeNames(node), [volume]);
  } finally {
    for (const installed of [provider, unreachable, noCli]) await installed.remove();
    await node.stop();
    await removeData(node);
  }
});

Deno.test("shellcheck finds nothing in the provider's scripts, and every script Ganeti needs is executable", async () => {
  for (const script of scripts) {
    const mode = Deno.statSync(`${providerSource}/${script}`).mode!;
    assert.equal(mode & 0o111, 0o111, `${script} is executable`);
  }
  const parameters = Deno.readTextFileSync(`${providerSource}/parameters.list`).trim().split("\n");
  assert.deepEqual(parameters.map((line) => line.split(/\s+/)[0]), ["image", "snapshot"]);
  const output = await new Deno.Command("shellcheck", {
    args: ["--shell=sh", "--external-sources", ...scripts, "common.sh"],
    cwd: providerSource,
    stdout: "piped",
    stderr: "piped",
  }).output().catch((error) => {
    throw new Error(`shellcheck is needed (bash tests/install_tools.sh): ${error.message}`);
  });
  const text = new TextDecoder();
  assert.ok(output.success, text.decode(output.stdout) + text.decode(output.stderr));
});
