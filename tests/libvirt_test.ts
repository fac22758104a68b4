/**
 * Goal: the libvirt domain examples (integrations/libvirt) are valid and work: a
 * real libvirtd starts a domain whose disk is an Atoll volume over NBD, on TCP and
 * on a unix socket, and QEMU reads (the VM's firmware boots the volume's first
 * sector) and writes it through the node.
 * Method: each example validates unchanged with virt-xml-validate; then a copy
 * with the test's own values (TCG instead of KVM, the node's port or socket, the
 * volume's name, the serial port to a file, and no console) is started by a
 * private libvirtd (tests/_libvirtd.ts) with `virsh create`. The volume is a
 * clone of an image whose boot sector prints a random token on COM1; the test
 * waits for the token in the serial file, reads the disk's size with
 * `virsh domblkinfo`, sees the node count an NBD connection, writes a pattern
 * through QEMU's block layer (`qemu-io` in the monitor) and reads it back over
 * HTTP, then destroys the domain and sees the connection closed.
 */
import assert from "node:assert/strict";
import { removeData, startNode, type TestNode } from "./_node.ts";
import { patternBytes } from "./_files.ts";
import { bootSector, waitForText } from "./_boot_sector.ts";
import { Libvirtd } from "./_libvirtd.ts";

const root = new URL("../", import.meta.url).pathname;
const examples = `${root}integrations/libvirt`;
const MiB = 1024 * 1024;

/** Replaces `from` by `to`, which must occur exactly once (the example's shape is known). */
function replaceOnce(xml: string, from: string, to: string): string {
  const count = xml.split(from).length - 1;
  assert.equal(count, 1, `the example holds ${JSON.stringify(from)} once, not ${count} times`);
  return xml.replace(from, () => to);
}

/** Checks a domain XML against libvirt's schema (virt-xml-validate says so on stderr). */
async function validate(path: string): Promise<void> {
  const output = await new Deno.Command("virt-xml-validate", {
    args: [path, "domain"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  const said = text.decode(output.stdout) + text.decode(output.stderr);
  assert.ok(output.success && /validates/.test(said), `${path} is invalid: ${said}`);
}

async function nbdConnectionsOpen(node: TestNode): Promise<number> {
  const text = await (await node.fetch("/metrics")).text();
  const match = text.match(/^atoll_nbd_connections_open (\d+)$/m);
  assert.ok(match, "the node exports atoll_nbd_connections_open");
  return Number(match[1]);
}

async function waitForConnections(node: TestNode, wanted: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (await nbdConnectionsOpen(node) !== wanted) {
    assert.ok(Date.now() < deadline, `the node never had ${wanted} NBD connections open`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Starts the example `file` on a fresh libvirtd with `disk` substitutions (its
 * host element's values), checks that QEMU boots, reads and writes the volume.
 */
async function runExample(node: TestNode, file: string, disk: [string, string]): Promise<void> {
  const example = await Deno.readTextFile(`${examples}/${file}`);
  await validate(`${examples}/${file}`);

  const token = `atoll-libvirt-${crypto.randomUUID()}`;
  const image = patternBytes(4 * MiB, 29);
  image.set(bootSector(token));
  const imageName = `boot-${crypto.randomUUID()}`;
  const upload = await node.fetch(`/v1/images/${imageName}`, { method: "PUT", body: image });
  assert.equal(upload.status, 201, await upload.text());
  const volume = `vm-${crypto.randomUUID()}`;
  const created = await node.fetch("/v1/volumes", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: volume, image: imageName, size: 64 * MiB }),
  });
  assert.equal(created.status, 201, await created.text());

  const libvirtd = await Libvirtd.start();
  const domain = `atoll-${crypto.randomUUID()}`;
  try {
    const serial = `${libvirtd.outputDir}/serial.log`;
    let xml = replaceOnce(example, "<domain type='kvm'>", "<domain type='qemu'>");
    xml = replaceOnce(xml, "<name>vm1</name>", `<name>${domain}</name>`);
    xml = replaceOnce(
      xml,
      "<source protocol='nbd' name='vm1'>",
      `<source protocol='nbd' name='${volume}'>`,
    );
    xml = replaceOnce(xml, ...disk);
    xml = replaceOnce(
      xml,
      "<serial type='pty'/>",
      `<serial type='file'><source path='${serial}'/></serial>`,
    );
    xml = replaceOnce(xml, "<console type='pty'/>", "");
    const path = `${libvirtd.outputDir}/domain.xml`;
    await Deno.writeTextFile(path, xml);
    await validate(path);

    await libvirtd.virsh("create", path);
    await waitForText(serial, token, 60_000);
    assert.equal((await libvirtd.virsh("domstate", domain)).trim(), "running");
    assert.match(
      await libvirtd.virsh("domblkinfo", domain, "vda"),
      new RegExp(`Capacity: +${64 * MiB}\n`),
    );
    assert.equal(await nbdConnectionsOpen(node), 1);

    // QEMU writes through the disk libvirt configured; the node has the bytes.
    const blocks = await libvirtd.virsh("qemu-monitor-command", domain, "--hmp", "info block");
    const device = blocks.match(/^\s+Attached to:\s+(\S+)/m)?.[1];
    assert.ok(device && /: nbd/.test(blocks), `no NBD disk in ${blocks}`);
    const io = await libvirtd.virsh(
      "qemu-monitor-command",
      domain,
      "--hmp",
      `qemu-io -d ${device} "write -P 0x77 8M 64k"`,
    );
    assert.equal(io.trim(), "", "qemu-io prints to QEMU's log, errors to the monitor");
    const written = await node.fetch(`/v1/volumes/${volume}/data`, {
      headers: { Range: `bytes=${8 * MiB}-${8 * MiB + 65535}` },
    });
    assert.deepEqual(new Uint8Array(await written.arrayBuffer()), new Uint8Array(65536).fill(0x77));

    await libvirtd.virsh("destroy", domain);
    assert.equal((await libvirtd.virsh("list", "--all", "--name")).trim(), "");
    await waitForConnections(node, 0);
  } finally {
    await libvirtd.virsh("destroy", domain).catch(() => {});
    await libvirtd.stop();
  }
}

Deno.test("libvirt starts the TCP example's domain on an Atoll volume, and QEMU boots, reads and writes it", async () => {
  const node = await startNode();
  try {
    await runExample(node, "atoll-nbd-tcp.xml", ["port='10809'", `port='${node.nbdPort}'`]);
  } finally {
    await node.stop();
    await removeData(node);
  }
});

Deno.test("libvirt starts the unix socket example's domain on an Atoll volume, and QEMU boots, reads and writes it", async () => {
  // QEMU runs as libvirtd's unprivileged user: it must reach the socket, as an
  // operator grants libvirt-qemu (docs/operations.md, "libvirt").
  const dir = await Deno.makeTempDir({ prefix: "atoll-libvirt-sock-" });
  await Deno.chmod(dir, 0o755);
  const socket = `${dir}/nbd.sock`;
  const node = await startNode({ nbd: `unix:${socket}` });
  try {
    await Deno.chmod(socket, 0o666);
    await runExample(node, "atoll-nbd-unix.xml", [
      "socket='/run/atoll/nbd.sock'",
      `socket='${socket}'`,
    ]);
  } finally {
    await node.stop();
    await removeData(node);
    await Deno.remove(dir, { recursive: true });
  }
});
