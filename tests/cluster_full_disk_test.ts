/**
 * Goal: a member whose data disk is full costs the cluster nothing it can do
 * without: writes through another member go on (the write quorum is the other
 * two), a volume opens and reads back whole through the full member (a copy it
 * cannot keep is no reason to fail a read), and once there is room again it
 * takes part as before, its acceptor included. Its disk fills as it joins:
 * the changes of voters its joining brings are learned without room to save
 * them, used from memory, and saved once there is room.
 * Method: three `atoll serve` processes at R=3, the third on a 40 MiB tmpfs
 * (mounted by the test, as root); qemu-io writes 128 MiB through the first and
 * reads it back through each; the tmpfs is grown, and a write through the
 * full member and a volume creation follow.
 */
import assert from "node:assert/strict";
import { eventually, members, votersSettled } from "./_cluster.ts";
import { createVolume, exec, MiB } from "./_nbd.ts";
import { removeData, startNode, type TestNode } from "./_node.ts";

const volumeBytes = 128 * MiB;

async function qemuIo(uri: string, commands: string[]): Promise<string> {
  const out = await exec("qemu-io", ["-f", "raw", ...commands.flatMap((c) => ["-c", c]), uri]);
  assert.equal(out.code, 0, `qemu-io ${commands.join("; ")} on ${uri}: ${out.stdout}${out.stderr}`);
  assert.doesNotMatch(out.stdout, /Pattern verification failed|error/i, out.stdout);
  return out.stdout;
}

Deno.test("a member with a full disk still opens and reads volumes, and takes part again once there is room", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-full-member-" });
  const small = `${dir}/small`;
  await Deno.mkdir(small);
  const mount = await exec("mount", ["-t", "tmpfs", "-o", "size=40m", "tmpfs", small]);
  assert.equal(mount.code, 0, `mount tmpfs (the test runs as root): ${mount.stderr}`);
  const nodes: TestNode[] = [];
  try {
    await Deno.writeTextFile(`${dir}/key`, crypto.randomUUID().replaceAll("-", ""));
    const args = ["--gossip", "127.0.0.1:0", "--cluster-key-file", `${dir}/key`, "--replicas", "3"];
    nodes.push(await startNode({ args }));
    nodes.push(await startNode({ args: [...args, "--join", nodes[0].gossip!] }));
    nodes.push(await startNode({ data: small, args: [...args, "--join", nodes[0].gossip!] }));
    // Full from the start: the member joins, and learns the voters' changes that
    // its joining brings, with no room to save them (CI once ran into this).
    await exec("dd", ["if=/dev/zero", `of=${small}/filler`, "bs=64k"]);
    await eventually("3 alive members everywhere", async () => {
      const views = await Promise.all(nodes.map(members));
      return views.every((view) => view.filter((member) => member.state === "alive").length === 3);
    });
    await votersSettled(nodes, 3);
    await createVolume(nodes[0], "vm1", { size: volumeBytes });
    await qemuIo(nodes[0].nbdUri("vm1"), ["write -P 0x5a 0 128M", "flush"]);
    const free = Deno.statSync(small); // the tmpfs took what it could
    assert.ok(free.isDirectory);
    const stats = await exec("df", ["--output=avail", "-B1", small]);
    const avail = Number(stats.stdout.trim().split("\n").at(-1));
    assert.ok(avail < 4 * MiB, `the third member's disk is full (${avail} bytes free)`);
    for (const node of nodes) {
      await qemuIo(node.nbdUri("vm1"), ["read -P 0x5a 0 128M"]).catch((error) => {
        throw new Error(`${error.message}\nits log:\n${node.log.slice(-20).join("\n")}`);
      });
    }

    const grown = await exec("mount", ["-o", "remount,size=1g", small]);
    assert.equal(grown.code, 0, grown.stderr);
    // What it learned in memory it saves once there is room.
    await eventually("the full member saved its configuration", async () => {
      const cluster = await (await nodes[2].fetch("/v1/cluster")).json();
      return cluster.metadata.configurationSaved === true;
    });
    await qemuIo(nodes[2].nbdUri("vm1"), ["write -P 0x33 0 16M", "flush"]);
    await qemuIo(nodes[0].nbdUri("vm1"), ["read -P 0x33 0 16M", "read -P 0x5a 16M 112M"]);
    const created = await nodes[2].fetch("/v1/volumes", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "vm2", size: MiB }),
    });
    assert.equal(created.status, 201, await created.text());
    const metrics = await (await nodes[2].fetch("/metrics")).text();
    assert.match(metrics, /^atoll_cluster_acceptor_log_failed 0$/m, "the acceptor goes on");
  } finally {
    for (const node of nodes) await node.kill9();
    for (const node of nodes.slice(0, 2)) await removeData(node);
    await exec("umount", [small]);
    await Deno.remove(dir, { recursive: true });
  }
});
