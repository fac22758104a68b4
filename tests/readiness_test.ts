/**
 * Goal: a node that is not ready says so, and why, to HTTP probes and to NBD
 * clients, and serves normally once ready. Method: a store on a temporary
 * directory, its HTTP app served on a loopback port and its NBD server on
 * another, both built with a `ready` function the test flips; `GET /readyz` is
 * read with fetch, and the real nbdinfo and qemu-img connect over NBD.
 */
import assert from "node:assert/strict";
import { destroyTestStore, openTestStore } from "../core/_test_store.ts";
import { createApp, type Readiness } from "../http/app.ts";
import { NbdServer } from "../nbd/server.ts";
import { Option, Reply } from "../nbd/protocol.ts";
import { exec } from "./_nbd.ts";
import { encodeGoData, RawNbdClient } from "./_nbd_raw.ts";

const MiB = 1024 * 1024;

/** A store with one volume, served over HTTP and NBD while `readiness` says so. */
async function startServers() {
  const store = await openTestStore();
  await store.createVolume({ name: "vm1", size: 4 * MiB });
  let readiness: Readiness = { ready: false, reason: "catching up with the cluster (3 of 5)" };
  const ready = () => readiness;
  const app = createApp({ store, members: () => [], version: "test", ready });
  const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, app.fetch);
  const nbd = await NbdServer.listen(store, { hostname: "127.0.0.1", port: 0 }, { ready });
  const port = (nbd.address as { port: number }).port;
  return {
    url: `http://127.0.0.1:${http.addr.port}`,
    nbdPort: port,
    nbdUri: (name: string) => `nbd://127.0.0.1:${port}/${name}`,
    set(next: Readiness) {
      readiness = next;
    },
    async stop() {
      await nbd.close();
      await http.shutdown();
      await destroyTestStore(store);
    },
  };
}

Deno.test("GET /readyz answers 503 with the reason until the node is ready, then 200", async () => {
  const servers = await startServers();
  try {
    const notReady = await fetch(`${servers.url}/readyz`);
    assert.equal(notReady.status, 503);
    assert.deepEqual(await notReady.json(), {
      ready: false,
      reason: "catching up with the cluster (3 of 5)",
    });
    const health = await fetch(`${servers.url}/healthz`);
    assert.equal(health.status, 200, "alive all the same");
    await health.body?.cancel();
    servers.set({ ready: true });
    const ready = await fetch(`${servers.url}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { ready: true });
  } finally {
    await servers.stop();
  }
});

Deno.test("GET /readyz is 200 when the app has no readiness hook", async () => {
  const store = await openTestStore();
  try {
    const app = createApp({ store, members: () => [], version: "test" });
    const response = await app.request("/readyz");
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { ready: true });
  } finally {
    await destroyTestStore(store);
  }
});

Deno.test("nbdinfo and qemu-img are refused with the reason until the node is ready", async () => {
  const servers = await startServers();
  try {
    const uri = servers.nbdUri("vm1");
    const reason = /this node is not ready: catching up with the cluster \(3 of 5\)/;
    const qemu = await exec("qemu-img", ["info", "--output=json", uri]);
    assert.notEqual(qemu.code, 0, "qemu-img must fail while the node is not ready");
    assert.match(qemu.stderr, /Server shutting down before option 7 \(go\)/, qemu.stderr);
    assert.match(qemu.stderr, reason, "qemu-img prints the server's reason");
    // libnbd says ESHUTDOWN ("...transport endpoint shutdown"); before 1.16 it
    // shows the server's message only in its debug output.
    const info = await exec("nbdinfo", ["--json", uri]);
    assert.notEqual(info.code, 0, "nbdinfo must fail while the node is not ready");
    assert.match(info.stderr, /transport endpoint shutdown|shutting down/, info.stderr);
    const debug = await new Deno.Command("nbdinfo", {
      args: ["--json", uri],
      env: { LIBNBD_DEBUG: "1" },
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.match(new TextDecoder().decode(debug.stderr), reason, "libnbd received the reason");
    const listed = await exec("nbdinfo", ["--list", servers.nbdUri("")]);
    assert.notEqual(listed.code, 0, "listing exports is refused too");

    servers.set({ ready: true });
    const ready = await exec("nbdinfo", ["--json", uri]);
    assert.equal(ready.code, 0, ready.stderr);
    assert.equal(JSON.parse(ready.stdout).exports[0]["export-size"], 4 * MiB);
    const qemuReady = await exec("qemu-img", ["info", "--output=json", uri]);
    assert.equal(qemuReady.code, 0, qemuReady.stderr);
    assert.equal(JSON.parse(qemuReady.stdout)["virtual-size"], 4 * MiB);
  } finally {
    await servers.stop();
  }
});

Deno.test("on the wire: GO gets NBD_REP_ERR_SHUTDOWN with the reason, EXPORT_NAME a hang-up", async () => {
  const servers = await startServers();
  const decoder = new TextDecoder();
  try {
    const client = await RawNbdClient.connect(servers.nbdPort);
    await client.greet();
    await client.enableStructuredReplies(); // touches no export: still answered
    const [refused] = await client.option(Option.go, encodeGoData("vm1"));
    assert.equal(refused.type, Reply.errShutdown);
    assert.equal(
      decoder.decode(refused.data),
      "Cannot serve exports: this node is not ready: catching up with the cluster (3 of 5)",
    );
    const [aborted] = await client.option(Option.abort);
    assert.equal(aborted.type, Reply.ack, "the client may still abort cleanly");
    client.close();

    // EXPORT_NAME has no error reply: the server ends the session, sending nothing.
    const old = await RawNbdClient.connect(servers.nbdPort);
    await old.greet();
    await old.sendOption(Option.exportName, new TextEncoder().encode("vm1"));
    assert.deepEqual(await old.waitClosed(), { how: "eof", bytes: 0 });

    servers.set({ ready: true });
    const { client: ready, sizeBytes } = await RawNbdClient.open(servers.nbdPort, "vm1");
    assert.equal(sizeBytes, BigInt(4 * MiB));
    ready.close();
  } finally {
    await servers.stop();
  }
});
