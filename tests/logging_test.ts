/**
 * Goal: an operator can follow what a node does from its JSON log: every line
 * is one well-formed JSON object with its time, level and component, and an
 * upload, a clone, an NBD session and a lease move each leave a line that
 * names what it is about (image, volume, export and client, epoch).
 * Method: two real node processes with `--log-format json`; an image upload
 * and a clone through node 1, a qemu-io session on node 1, then a write
 * through node 2 that moves the volume's lease; every stderr line of both
 * nodes parsed as JSON.
 */
import assert from "node:assert/strict";
import { startCluster } from "./_cluster.ts";
import { createVolume, MiB, qemuIo, uploadImage } from "./_nbd.ts";
import type { TestNode } from "./_node.ts";
import { patternBytes } from "./_files.ts";

type Line = Record<string, unknown> & { message: string; logger: string; level: string };

/** Every line of `node`'s log, parsed: a line that is not one JSON object fails the test. */
function jsonLines(node: TestNode): Line[] {
  return node.log.filter((line) => line.trim() !== "").map((line) => {
    let parsed: unknown;
    assert.doesNotThrow(() => parsed = JSON.parse(line), `not JSON: ${line}`);
    const record = parsed as Line;
    assert.equal(typeof record["@timestamp"], "string", line);
    assert.ok(!Number.isNaN(Date.parse(record["@timestamp"] as string)), line);
    assert.match(record.level, /^(DEBUG|INFO|WARN|WARNING|ERROR|FATAL)$/, line);
    assert.match(record.logger, /^atoll\.[a-z]+$/, line);
    return record;
  });
}

function find(lines: Line[], what: string, match: (line: Line) => boolean): Line {
  const found = lines.find(match);
  assert.ok(
    found,
    `no log line for ${what} in:\n${lines.map((l) => JSON.stringify(l)).join("\n")}`,
  );
  return found;
}

Deno.test("the JSON log has a well-formed line for an upload, a clone, an NBD session and a lease move", async () => {
  const cluster = await startCluster(2, () => ["--log-format", "json"]);
  try {
    const [one, two] = cluster.nodes;
    await uploadImage(one, "base", patternBytes(8 * MiB, 5));
    await createVolume(one, "vm1", { image: "base" });
    await qemuIo(one.nbdUri("vm1"), ["write -P 0x55 0 4k", "flush"]);
    await qemuIo(two.nbdUri("vm1"), ["write -P 0x66 4k 4k", "flush"]);
    // Closing lines are written when the node notices the disconnect: give it a moment.
    await new Promise((resolve) => setTimeout(resolve, 500));

    const first = jsonLines(one);
    const second = jsonLines(two);
    find(first, "the upload", (l) => l.logger === "atoll.store" && l.image === "base");
    find(
      first,
      "the upload's request",
      (l) =>
        l.logger === "atoll.http" && l.method === "PUT" && l.path === "/v1/images/base" &&
        l.status === 201 && typeof l.request === "string" && typeof l.ms === "number",
    );
    find(
      first,
      "the clone",
      (l) =>
        l.logger === "atoll.store" && l.volume === "vm1" && /image base/.test(String(l.origin)),
    );
    find(
      first,
      "the NBD session opening",
      (l) =>
        l.logger === "atoll.nbd" && l.export === "vm1" && typeof l.client === "string" &&
        /open/.test(l.message),
    );
    find(
      first,
      "the NBD session closing",
      (l) =>
        l.logger === "atoll.nbd" && l.export === "vm1" && typeof l.ms === "number" &&
        /close/.test(l.message),
    );
    const idOf = (lines: Line[]) =>
      find(lines, "the start line", (l) => l.logger === "atoll.node" && typeof l.node === "string")
        .node;
    find(
      second,
      "the lease move",
      (l) =>
        l.logger === "atoll.leases" && l.volume === "vm1" && typeof l.epoch === "number" &&
        l.from === idOf(first) && l.to === idOf(second),
    );
  } finally {
    await cluster.stop();
  }
});
