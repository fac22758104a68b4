/**
 * Goal: each call on a link fails at its own deadline, whatever the deadlines
 * of the calls around it (a link keeps one timer, set for the earliest), and a
 * call answered in time is not failed by a timer set for another.
 * Method: a LinkClient calling a real link server whose `echo` answers after
 * `delayMs`; calls with long and short deadlines in flight on one link.
 */
import assert from "node:assert/strict";
import { MemoryIdentity } from "./identity.ts";
import { LinkClient } from "./link_client.ts";
import { RpcError } from "./rpc_message.ts";
import { key, startPort } from "../../tests/_link_proxy.ts";

Deno.test("a call with a short deadline sent after one with a long deadline fails at its own", async () => {
  const server = startPort();
  const links = new LinkClient(key, new MemoryIdentity(), { selfId: "client" });
  try {
    await links.call(server.address, "echo"); // the link is open
    const started = performance.now();
    const patient = links.call(
      server.address,
      "echo",
      { header: { value: 1, delayMs: 1_500 } },
      10_000,
    );
    const hasty = links.call(server.address, "echo", { header: { value: 2, delayMs: 1_500 } }, 200)
      .then(() => null, (error) => ({ error, atMs: performance.now() - started }));
    const failed = await hasty;
    assert.ok(failed !== null, "the call with a 200 ms deadline was answered");
    assert.ok(failed.error instanceof RpcError && failed.error.unreachable, String(failed.error));
    assert.match(failed.error.message, /no answer within 200 ms/);
    assert.ok(
      failed.atMs < 1_400,
      `failed after ${Math.round(failed.atMs)} ms, not at its deadline`,
    );
    // The link stays (the peer answered the first call: the timeout of the second asks for a
    // ping, which it answers), and the patient call gets its answer.
    assert.equal((await patient).header.got, 1);
    // Calls after those, short and long, still time out and answer as they should.
    assert.equal(
      (await links.call(server.address, "echo", { header: { value: 3 } }, 1_000)).header.got,
      3,
    );
    const late = await links.call(server.address, "echo", { header: { delayMs: 800 } }, 100)
      .catch((error) => error);
    assert.match(String(late), /no answer within 100 ms/);
  } finally {
    await links.close();
    await server.stop();
  }
});
