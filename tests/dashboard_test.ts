/**
 * Goal: the dashboard a node serves at `/` shows a cluster as it is, live: every
 * member with its state, a volume with its lease holder, the volume's IOPS while
 * a VM-like client writes to it through another member, and a member killed
 * with SIGKILL turning dead. Method: three real node processes (tests/_cluster.ts),
 * headless Chromium (Debian's) driven by playwright-core on node 0's page; fio
 * (`--ioengine=nbd`) writes 4 KiB blocks to the volume through node 1, which
 * takes its write lease, so the page of node 0 can only know the IOPS by asking
 * node 1 (`GET /v1/stats`). The screenshot taken meanwhile is docs/dashboard.png.
 */
import assert from "node:assert/strict";
import { cell, launchBrowser, nextRefresh, refreshed, until } from "./_browser.ts";
import { members, startCluster } from "./_cluster.ts";
import { patternBytes } from "./_files.ts";
import { createVolume, MiB, uploadImage } from "./_nbd.ts";
import type { TestNode } from "./_node.ts";

const screenshotPath = new URL("../docs/dashboard.png", import.meta.url).pathname;

Deno.test("the dashboard shows members, a volume's lease holder and IOPS, and a dead member", async () => {
  const cluster = await startCluster(3);
  const browser = await launchBrowser();
  let fio: Deno.ChildProcess | null = null;
  try {
    const [node0, node1, node2] = cluster.nodes;
    const image = new Uint8Array(12 * MiB);
    image.set(patternBytes(8 * MiB, 7));
    await uploadImage(node0, "debian-12", image);
    await createVolume(node0, "vm1", { image: "debian-12" });
    await createVolume(node0, "vm2", { size: 64 * MiB });
    const ids = (await members(node0)).map((member) => member.id);
    const [id1, id2] = [await idOf(node1), await idOf(node2)];

    const page = await browser.newPage({ viewport: { width: 1500, height: 1000 } });
    const failedRequests: string[] = [];
    page.on("response", (response) => {
      if (response.status() >= 400) failedRequests.push(`${response.status()} ${response.url()}`);
    });
    const pageErrors: string[] = [];
    page.on("pageerror", (error) => pageErrors.push(error.message));
    await page.goto(`${node0.url}/`);
    await refreshed(page, 1);

    // Every member, alive; the volumes with their origin; the image with its clone.
    for (const id of ids) {
      assert.equal(await cell(page, "members", id, "state").textContent(), "alive");
    }
    assert.equal(await cell(page, "volumes", "vm1", "origin").textContent(), "image debian-12");
    assert.equal(await cell(page, "volumes", "vm1", "iops").getAttribute("data-value"), "0");
    assert.equal(await cell(page, "images", "debian-12", "clones").textContent(), "1");

    // fio writes through node 1: node 1 takes the lease, and the page sees its IOPS.
    fio = new Deno.Command("fio", {
      args: [
        "--name=dashboard",
        "--ioengine=nbd",
        `--uri=${node1.nbdUri("vm1")}`,
        "--rw=randwrite",
        "--bs=4k",
        "--iodepth=4",
        "--rate_iops=300",
        "--time_based",
        "--runtime=60",
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    let iops = 0;
    await until("vm1's IOPS above 20 on node 0's page", async () => {
      iops = Number(await cell(page, "volumes", "vm1", "iops").getAttribute("data-value"));
      return iops > 20;
    });
    assert.equal(await cell(page, "volumes", "vm1", "holder").getAttribute("data-holder"), id1);
    assert.match(
      await cell(page, "volumes", "vm1", "open").textContent() ?? "",
      new RegExp(id1.slice(0, 8)),
    );
    assert.match(await cell(page, "volumes", "vm1", "epoch").textContent() ?? "", /^\d+$/);
    assert.match(await cell(page, "volumes", "vm1", "latency").textContent() ?? "", /ms$/);
    assert.notEqual(await cell(page, "members", id1, "iops").textContent(), "0");
    await nextRefresh(page);
    await page.screenshot({ path: screenshotPath, fullPage: true });
    console.log(
      `vm1 at ${iops.toFixed(0)} IOPS on the page (fio --rate_iops=300); ${screenshotPath}`,
    );
    fio.kill("SIGTERM");
    await fio.status;
    fio = null;

    // A member killed without warning turns dead on the page, and the event says so.
    await node2.kill9();
    await until(
      "the killed member dead on the page",
      async () => await cell(page, "members", id2, "state").textContent() === "dead",
    );
    await until(
      "the member's death among the events",
      async () =>
        (await page.locator("#events tbody").textContent() ?? "").includes(`member ${id2}`),
    );
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(failedRequests, []);
  } finally {
    fio?.kill("SIGKILL");
    await fio?.status;
    await browser.close();
    await cluster.stop();
  }
});

/** A node's id, as it keeps it in its data directory. */
async function idOf(node: TestNode): Promise<string> {
  return (await Deno.readTextFile(`${node.data}/node-id`)).trim();
}
