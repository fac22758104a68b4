/**
 * Goal: acceptor states survive restarts with one sync shared by the saves
 * made together; the last state saved of a key wins; a frame torn by a crash
 * is ignored (its saves never returned) and hides nothing appended later, while
 * a damaged frame before whole ones stops the log from opening; the log is
 * compacted; the files of the old layout (one per key) are taken in and
 * removed; one descriptor whatever the number of keys; a full disk fails the
 * saves that do not fit and no other, and the log goes on once there is room.
 * Method: AcceptorLogs on temporary directories (one on a 64 KiB tmpfs), files
 * cut and written by hand.
 */
import assert from "node:assert/strict";
import zlib from "node:zlib";
import * as fs from "node:fs";
import { AcceptorLog, openNodeAcceptorLog } from "./acceptor_log.ts";
import type { AcceptorState } from "./caspaxos.ts";
import { encodeState } from "./meta_service.ts";

const state = (counter: number, value: string | null): AcceptorState => ({
  promised: { epoch: 1, counter, node: "n1" },
  accepted: value === null ? null : { epoch: 1, counter, node: "n1" },
  register: {
    version: counter,
    value: value === null ? null : new TextEncoder().encode(value),
    change: `n1/${counter}`,
  },
});
const logFile = (dir: string) => `${dir}/acceptor-states.log`;

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "atoll-acceptor-log-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("AcceptorLog: the last record of a key wins, across reopen and compaction", () =>
  inTempDir(async (dir) => {
    let log = new AcceptorLog(dir, { compactBytesMin: 4096 });
    assert.equal(await log.load("volume/v"), null);
    for (let i = 1; i <= 100; i++) await log.save("volume/v", state(i, `value ${i}`));
    await log.save("image/a", state(1, null));
    assert.deepEqual(await log.load("volume/v"), state(100, "value 100"));
    assert.deepEqual(log.keys("volume/"), ["volume/v"]);
    assert.deepEqual(log.keys(""), ["image/a", "volume/v"]);
    // 100 records of ~100 bytes were saved; compaction kept the file under 4 KiB + 4 × live.
    const size = (await Deno.stat(logFile(dir))).size;
    assert.ok(size <= 4096 + 4 * 300, `compaction keeps the log small (${size} bytes)`);
    assert.equal(size, log.bytes);
    log.close();

    log = new AcceptorLog(dir);
    assert.deepEqual(await log.load("volume/v"), state(100, "value 100"));
    assert.deepEqual(await log.load("image/a"), state(1, null));
    await assert.rejects(log.save("../x", state(1, "x")), /bad metadata key/);
    log.close();
  }));

Deno.test("AcceptorLog: a torn last frame is ignored and cut off, so later saves are not hidden", () =>
  inTempDir(async (dir) => {
    let log = new AcceptorLog(dir);
    await log.save("volume/v", state(1, "one"));
    await log.save("volume/w", state(1, "w"));
    log.close();
    const whole = await Deno.readFile(logFile(dir));
    // A crash in the middle of the next save: a header promising 256 bytes, 22 of them.
    const torn = new Uint8Array(whole.length + 30);
    torn.set(whole);
    torn.set([0, 0, 1, 0, 1, 2, 3, 4], whole.length);
    await Deno.writeFile(logFile(dir), torn);
    log = new AcceptorLog(dir);
    assert.deepEqual(await log.load("volume/v"), state(1, "one"));
    await log.save("volume/v", state(2, "two"));
    log.close();
    log = new AcceptorLog(dir);
    assert.deepEqual(await log.load("volume/v"), state(2, "two"), "the save after the torn record");
    assert.deepEqual(await log.load("volume/w"), state(1, "w"));
    log.close();
    // A flipped byte inside the last frame makes it a torn tail: the key's state before wins.
    const bytes = await Deno.readFile(logFile(dir));
    bytes[bytes.length - 3] ^= 0xff;
    await Deno.writeFile(logFile(dir), bytes);
    log = new AcceptorLog(dir);
    assert.deepEqual(await log.load("volume/v"), state(1, "one"));
    log.close();
  }));

Deno.test("AcceptorLog: a damaged frame before whole ones is a damaged disk, and the log does not open", () =>
  inTempDir(async (dir) => {
    const log = new AcceptorLog(dir);
    for (let i = 1; i <= 3; i++) await log.save("volume/v", state(i, `value ${i}`));
    log.close();
    const bytes = await Deno.readFile(logFile(dir));
    bytes[12] ^= 0xff; // inside the first frame (the empty log's rewrite wrote none)
    await Deno.writeFile(logFile(dir), bytes);
    assert.throws(() => new AcceptorLog(dir), /damaged frame at byte 0, before whole ones/);
    assert.deepEqual(await Deno.readFile(logFile(dir)), bytes, "the log is left as it was");
  }));

Deno.test("AcceptorLog: saves made together share a sync, and a thousand keys keep one descriptor", () =>
  inTempDir(async (dir) => {
    const openFiles = () => [...Deno.readDirSync("/proc/self/fd")].length;
    const log = new AcceptorLog(dir);
    const before = openFiles();
    await Promise.all(
      Array.from({ length: 1000 }, (_, i) => log.save(`volume/v${i}`, state(1, `v${i}`))),
    );
    assert.ok(log.syncs <= 4, `1000 saves at once took ${log.syncs} syncs`);
    assert.ok(openFiles() <= before, `descriptors grew from ${before} to ${openFiles()}`);
    assert.equal(log.keys("volume/").length, 1000);
    log.close();
    const again = new AcceptorLog(dir);
    assert.deepEqual(await again.load("volume/v999"), state(1, "v999"));
    again.close();
  }));

/** A file of the layout before the shared log: records of u32 length, u32 CRC-32, state. */
function legacyFile(...states: AcceptorState[]): Uint8Array {
  const parts = states.map((s) => {
    const record = encodeState(s);
    const framed = new Uint8Array(8 + record.length);
    new DataView(framed.buffer).setUint32(0, record.length);
    new DataView(framed.buffer).setUint32(4, zlib.crc32(record));
    framed.set(record, 8);
    return framed;
  });
  const bytes = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) bytes.set(part, (at += part.length) - part.length);
  return bytes;
}

Deno.test("AcceptorLog: a directory of one file per key is taken in, and the old files go", () =>
  inTempDir(async (dir) => {
    await Deno.writeFile(`${dir}/volume.vm1`, legacyFile(state(1, "a"), state(2, "b")));
    await Deno.writeFile(`${dir}/snapshot.vm1@s1`, legacyFile(state(3, null)));
    await Deno.writeFile(`${dir}/image.x.tmp`, legacyFile(state(9, "never renamed")));
    let log = new AcceptorLog(dir);
    assert.deepEqual(await log.load("volume/vm1"), state(2, "b"));
    assert.deepEqual(await log.load("snapshot/vm1@s1"), state(3, null));
    assert.equal(await log.load("image/x"), null);
    assert.deepEqual([...Deno.readDirSync(dir)].map((entry) => entry.name), [
      "acceptor-states.log",
    ]);
    await log.save("volume/vm1", state(4, "c"));
    log.close();
    // A crash after the log was written and before the old files went: the log wins.
    await Deno.writeFile(`${dir}/volume.vm1`, legacyFile(state(2, "b")));
    log = new AcceptorLog(dir);
    assert.deepEqual(await log.load("volume/vm1"), state(4, "c"));
    assert.equal([...Deno.readDirSync(dir)].length, 1);
    log.close();
  }));

Deno.test("AcceptorLog: a full disk fails the saves that do not fit, keeps the rest, and takes saves again once there is room", async () => {
  // A 64 KiB tmpfs (the tests run as root, as the netns partition tests do).
  const dir = await Deno.makeTempDir({ prefix: "atoll-acceptor-full-" });
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir],
  }).output();
  assert.equal(mount.code, 0, new TextDecoder().decode(mount.stderr));
  try {
    const log = new AcceptorLog(dir);
    const big = (i: number) => state(i, String(i).repeat(6000));
    let saved = 0;
    let failure: Error | null = null;
    for (let i = 1; i <= 40 && failure === null; i++) {
      try {
        await log.save(`volume/v${i}`, big(i));
        saved = i;
      } catch (error) {
        failure = error as Error;
      }
    }
    assert.ok(failure !== null && saved >= 3, `saved ${saved}, then ${failure}`);
    assert.match(failure.message, /Cannot save to .*acceptor-states\.log: .*space/);
    assert.equal(log.failure, null, "a failed write does not stop the log");
    assert.deepEqual(await log.load(`volume/v${saved}`), big(saved));
    assert.equal(await log.load(`volume/v${saved + 1}`), null);
    await assert.rejects(log.save(`volume/v${saved + 1}`, big(saved + 1)), /space/);

    const grown = await new Deno.Command("mount", {
      args: ["-o", "remount,size=1m", dir],
    }).output();
    assert.equal(grown.code, 0, new TextDecoder().decode(grown.stderr));
    await log.save(`volume/v${saved + 1}`, big(saved + 1));
    log.close();
    const reopened = new AcceptorLog(dir);
    for (let i = 1; i <= saved + 1; i++) {
      assert.deepEqual(await reopened.load(`volume/v${i}`), big(i));
    }
    assert.equal(reopened.keys("volume/").length, saved + 1);
    reopened.close();
  } finally {
    await new Deno.Command("umount", { args: [dir] }).output();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openNodeAcceptorLog: takes in DATA/paxos, then leaves a file there that an earlier version stops at", () =>
  inTempDir(async (data) => {
    await Deno.mkdir(`${data}/paxos`);
    await Deno.writeFile(`${data}/paxos/volume.vm1`, legacyFile(state(1, "a"), state(2, "b")));
    let log = openNodeAcceptorLog(data);
    assert.deepEqual(await log.load("volume/vm1"), state(2, "b"));
    await log.save("volume/vm2", state(1, "c"));
    log.close();
    assert.ok(Deno.statSync(`${data}/paxos`).isFile, "the old directory is a file now");
    assert.match(await Deno.readTextFile(`${data}/paxos`), /earlier version/);
    // An earlier version creates its directory there first: it cannot.
    assert.throws(() => fs.mkdirSync(`${data}/paxos`, { recursive: true }), /EEXIST/);
    log = openNodeAcceptorLog(data);
    assert.deepEqual(await log.load("volume/vm1"), state(2, "b"));
    assert.deepEqual(await log.load("volume/vm2"), state(1, "c"));
    log.close();

    // A log a version between kept under paxos/ is moved, not lost.
    const other = `${data}/other`;
    await Deno.mkdir(`${other}/paxos`, { recursive: true });
    await Deno.copyFile(
      `${data}/acceptors/acceptor-states.log`,
      `${other}/paxos/acceptor-states.log`,
    );
    log = openNodeAcceptorLog(other);
    assert.deepEqual(await log.load("volume/vm2"), state(1, "c"));
    log.close();
    assert.ok(Deno.statSync(`${other}/paxos`).isFile);
  }));

Deno.test("AcceptorLog: closing while saves are under way: what resolved is durable, the rest fail", () =>
  inTempDir(async (dir) => {
    const log = new AcceptorLog(dir);
    await log.save("volume/first", state(1, "first"));
    const saves = Array.from({ length: 50 }, (_, i) => log.save(`volume/v${i}`, state(1, `v${i}`)));
    await new Promise((resolve) => setTimeout(resolve, 0)); // some are writing by now
    log.close();
    const results = await Promise.allSettled(saves);
    for (const result of results) {
      if (result.status === "rejected") assert.match(String(result.reason), /closed/);
    }
    await assert.rejects(log.save("volume/late", state(1, "late")), /closed/);
    log.close(); // twice: nothing more
    assert.equal(log.failure, null);
    const reopened = new AcceptorLog(dir);
    const saved = results.flatMap((result, i) => result.status === "fulfilled" ? [i] : []);
    for (const i of saved) assert.deepEqual(await reopened.load(`volume/v${i}`), state(1, `v${i}`));
    assert.deepEqual(await reopened.load("volume/first"), state(1, "first"));
    assert.equal(reopened.keys("volume/").length, saved.length + 1);
    reopened.close();
  }));
