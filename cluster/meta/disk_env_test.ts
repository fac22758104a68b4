/**
 * Goal: acceptor states survive restarts with one sync per save, the last whole
 * record wins, and a record torn by a crash is ignored (its save never returned).
 * Method: an AcceptorLog in a temporary directory; saves, reopening, compaction,
 * and a file cut in the middle of its last record.
 */
import assert from "node:assert/strict";
import { AcceptorLog } from "./disk_env.ts";
import type { AcceptorState } from "./caspaxos.ts";

const state = (counter: number, value: string | null): AcceptorState => ({
  promised: { epoch: 1, counter, node: "n1" },
  accepted: value === null ? null : { epoch: 1, counter, node: "n1" },
  register: {
    version: counter,
    value: value === null ? null : new TextEncoder().encode(value),
    change: `n1/${counter}`,
  },
});

Deno.test("AcceptorLog: the last whole record wins, across reopen, compaction and a torn tail", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-acceptor-log-" });
  try {
    let log = new AcceptorLog(dir);
    assert.equal(await log.load("volume/v"), null);
    for (let i = 1; i <= 20; i++) await log.save("volume/v", state(i, `value ${i}`));
    await log.save("image/a", state(1, null));
    assert.deepEqual(await log.load("volume/v"), state(20, "value 20"));
    assert.deepEqual(log.keys("volume/"), ["volume/v"]);
    assert.deepEqual(log.keys("").sort(), ["image/a", "volume/v"]);
    // 20 records of ~200 bytes were saved; compaction keeps at most 8 of them.
    const size = (await Deno.stat(`${dir}/volume.v`)).size;
    assert.ok(size <= 8 * 300, `compaction keeps the file small (${size} bytes)`);
    log.close();

    log = new AcceptorLog(dir);
    assert.deepEqual(await log.load("volume/v"), state(20, "value 20"));
    await log.save("volume/v", state(21, "value 21"));
    log.close();
    // A crash in the middle of the next save: its record is cut short.
    const bytes = await Deno.readFile(`${dir}/volume.v`);
    const extra = new Uint8Array(bytes.length + 30);
    extra.set(bytes);
    extra.set([0, 0, 1, 0, 1, 2, 3, 4], bytes.length); // a header promising 256 bytes
    await Deno.writeFile(`${dir}/volume.v`, extra);
    log = new AcceptorLog(dir);
    assert.deepEqual(await log.load("volume/v"), state(21, "value 21"));
    // A flipped byte inside the last record makes it invalid: the one before wins.
    const flipped = await Deno.readFile(`${dir}/volume.v`);
    flipped[bytes.length - 3] ^= 0xff;
    await Deno.writeFile(`${dir}/volume.v`, flipped.subarray(0, bytes.length));
    log = new AcceptorLog(dir);
    assert.deepEqual(await log.load("volume/v"), state(20, "value 20"));
    await assert.rejects(log.save("../x", state(1, "x")), /bad metadata key/);
    log.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
