/**
 * Goal: a replica's journal is what makes its changes durable: after a crash
 * that lost every object file not synced by a checkpoint (a power loss), the
 * replica comes back with the bytes and stamps of every change a flush
 * covered; a record torn by the crash ends the replay; checkpoints remove the
 * journals they cover and lose nothing.
 * Method: an ObjectReplica on a LocalEngine and a JournalDisk in a temp dir.
 * The power loss is the files it would take: the object files (never synced:
 * no checkpoint ran) are deleted before the replica opens again. kill -9 of
 * real processes is tests/cluster_journal_test.ts.
 */
import assert from "node:assert/strict";
import { LocalEngine } from "../../core/mod.ts";
import { JournalDisk } from "./journal_disk.ts";
import { decodeRecords, encodeRecord, type JournalRecord } from "./object_journal.ts";
import type { ObjectChange, Stamp } from "./object_link.ts";
import { ObjectReplica } from "./object_service.ts";

const uid = "ef".repeat(16);
const names = [0, 1, 2, 3].map((i) => `${uid}.1.${i}`);

function bytes(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 31 + seed * 7) % 251);
}

function change(version: number, offset: number, data: Uint8Array, more = {}): ObjectChange {
  return { epoch: 1, version, offset, data, ...more };
}

async function open(dir: string, checkpointBytes?: number, inPlaceBytes?: number) {
  const engine = await LocalEngine.open({ dir });
  const journal = new JournalDisk(`${dir}/journal`);
  const replica = new ObjectReplica("n1", engine, { journal, checkpointBytes, inPlaceBytes });
  const close = async () => {
    await replica.close();
    await engine.close();
  };
  return { engine, journal, replica, close };
}

Deno.test("flushed changes come back from the journal after a crash lost the object files", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-journal-" });
  try {
    const first = await open(dir);
    const { replica } = first;
    const model = new Map<string, { stamp: Stamp; data: Uint8Array }>();
    // Object 0: three writes in place; 1: replaced whole; 2: written then removed;
    // 3: written then handed off (dropped).
    await replica.change(names[0], change(1, 0, bytes(8192, 1)));
    await replica.change(names[0], change(2, 4096, bytes(4096, 2)));
    await replica.change(names[0], change(3, 12288, bytes(100, 3)));
    const zero = bytes(8192, 1);
    zero.set(bytes(4096, 2), 4096);
    const expected0 = new Uint8Array(12388);
    expected0.set(zero);
    expected0.set(bytes(100, 3), 12288);
    model.set(names[0], { stamp: [1, 3], data: expected0 });
    await replica.change(names[1], change(1, 0, bytes(5000, 4)));
    await replica.change(names[1], change(7, 0, bytes(3000, 5), { replace: true }));
    model.set(names[1], { stamp: [1, 7], data: bytes(3000, 5) });
    await replica.change(names[2], change(1, 0, bytes(4096, 6)));
    await replica.change(names[2], change(2, 0, new Uint8Array(), { replace: true, remove: true }));
    model.set(names[2], { stamp: [1, 2], data: new Uint8Array() });
    await replica.change(names[3], change(1, 0, bytes(4096, 7)));
    assert.equal(await replica.drop(names[3], [1, 1]), true);
    model.set(names[3], { stamp: [0, 0], data: new Uint8Array() });
    await replica.flush([]);
    // After the flush: not durable, so either outcome is right; it must not break replay.
    await replica.change(names[0], change(4, 0, bytes(10, 8)));
    await first.close();
    assert.ok((await first.journal.journals()).length > 0, "no checkpoint ran: a journal is left");

    await Deno.remove(`${dir}/objects`, { recursive: true });
    await Deno.mkdir(`${dir}/objects`);
    const second = await open(dir);
    try {
      for (const [name, { stamp, data }] of model) {
        const read = await second.replica.read(name, 0, -1);
        if (name === names[0] && read.stamp[1] === 4) {
          const unflushed = expected0.slice();
          unflushed.set(bytes(10, 8));
          assert.deepEqual(read.data, unflushed, `${name}: the unflushed change, whole`);
          continue;
        }
        assert.deepEqual(read.stamp, stamp, `${name}: its stamp`);
        assert.deepEqual(read.data, data, `${name}: its bytes`);
      }
      assert.deepEqual(await second.journal.journals(), [], "replayed, then checkpointed");
    } finally {
      await second.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a torn or damaged record ends the replay: the records before it are whole", () => {
  const records: JournalRecord[] = [
    {
      kind: "write",
      name: names[0],
      stamp: [2, 9],
      offset: 4096,
      data: bytes(700, 1),
      truncate: false,
    },
    { kind: "remove", name: names[1], stamp: [3, 1] },
    { kind: "drop", name: names[2] },
    { kind: "write", name: names[3], stamp: [1, 1], offset: 0, data: bytes(64, 2), truncate: true },
  ];
  const parts = records.flatMap(encodeRecord);
  const whole = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    whole.set(part, at);
    at += part.length;
  }
  assert.deepEqual([...decodeRecords(whole)], records);
  assert.deepEqual([...decodeRecords(whole.subarray(0, whole.length - 5))], records.slice(0, 3));
  const damaged = whole.slice();
  damaged[damaged.length - 70] ^= 0xff; // inside the last record's data
  assert.deepEqual([...decodeRecords(damaged)], records.slice(0, 3));
  const third = encodeRecord(records[0]).reduce((sum, part) => sum + part.length, 0) +
    encodeRecord(records[1])[0].length + 3;
  const early = whole.slice();
  early[third] ^= 0x01; // the drop record's name length... or kind: either fails its checksum
  assert.deepEqual([...decodeRecords(early)], records.slice(0, 2));
});

Deno.test("checkpoints remove the journals they cover and lose nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-journal-" });
  try {
    const first = await open(dir, 64 * 1024);
    let version = 0;
    for (let i = 0; i < 40; i++) {
      await first.replica.change(names[0], change(++version, (i % 8) * 8192, bytes(8192, i)));
    }
    await first.replica.flush([]);
    await first.close();
    const left = await first.journal.journals();
    assert.ok(left.length <= 2, `journals left after checkpoints: ${left}`);
    const second = await open(dir);
    try {
      const read = await second.replica.read(names[0], 0, -1);
      assert.deepEqual(read.stamp, [1, 40]);
      for (let slot = 0; slot < 8; slot++) {
        const last = 32 + slot; // writes 32..39 were the last to each slot
        assert.deepEqual(read.data.subarray(slot * 8192, (slot + 1) * 8192), bytes(8192, last));
      }
    } finally {
      await second.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a change placed in its file covers the journaled ones before it on replay", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-journal-" });
  try {
    const first = await open(dir, undefined, 64 * 1024);
    const { replica } = first;
    await replica.change(names[0], change(1, 0, bytes(4096, 1))); // journaled
    await replica.change(names[0], change(2, 0, bytes(128 * 1024, 2))); // placed
    await replica.change(names[0], change(3, 8192, bytes(4096, 3))); // journaled, after the sync
    await replica.change(names[1], change(1, 0, bytes(256 * 1024, 4))); // placed, synced by flush
    await replica.flush([]);
    await first.close();
    const records = [];
    for (const gen of await first.journal.journals()) {
      records.push(...decodeRecords(await first.journal.readJournal(gen)));
    }
    assert.deepEqual(records.map((record) => `${record.kind} ${record.name.slice(-1)}`), [
      "write 0",
      "placed 0",
      "write 0",
      "placed 1",
    ]);
    const second = await open(dir);
    try {
      const expected = bytes(128 * 1024, 2);
      expected.set(bytes(4096, 3), 8192);
      const zero = await second.replica.read(names[0], 0, -1);
      assert.deepEqual(zero.stamp, [1, 3]);
      assert.deepEqual(zero.data, expected, "the placed bytes, not the older journaled ones");
      const one = await second.replica.read(names[1], 0, -1);
      assert.deepEqual(one.stamp, [1, 1]);
      assert.deepEqual(one.data, bytes(256 * 1024, 4));
    } finally {
      await second.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a journal that fills its disk keeps every record it took, and no partial one", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-journal-full-" });
  const mounted = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", "size=256k", "tmpfs", dir],
  }).output();
  assert.equal(mounted.code, 0, "mount tmpfs (the test runs as root)");
  try {
    await Deno.writeFile(`${dir}/filler`, new Uint8Array(64 * 1024));
    const journal = new JournalDisk(`${dir}/journal`);
    const taken: JournalRecord[] = [];
    let refused = false;
    for (let i = 0; !refused; i++) {
      // 40 KiB records do not divide the space left: the last one comes up short.
      const record: JournalRecord = {
        kind: "write",
        name: names[i % 4],
        stamp: [1, i + 1],
        offset: 0,
        data: bytes(40 * 1024, i),
        truncate: false,
      };
      try {
        journal.appendJournal(1, encodeRecord(record));
        taken.push(record);
      } catch {
        refused = true;
      }
    }
    // Space comes back (another file goes): the next record must follow the last whole one.
    await Deno.remove(`${dir}/filler`);
    const after: JournalRecord = { kind: "drop", name: names[0] };
    journal.appendJournal(1, encodeRecord(after));
    taken.push(after);
    await journal.syncJournal(1);
    journal.closeJournals();
    const kept = [...decodeRecords(await journal.readJournal(1))];
    assert.equal(
      kept.length,
      taken.length,
      "every record taken is replayed, none lost after a tear",
    );
    assert.deepEqual(kept, taken);
  } finally {
    await new Deno.Command("umount", { args: [dir] }).output();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("stamps are kept in records of one shard each, written only when their shard changed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "atoll-journal-shards-" });
  // Objects far apart in one volume, and one whole-volume record left by an older version.
  const far = [0, 1, 5_000, 9_000_000].map((index) => `${uid}.2.${index}`);
  try {
    const engine = await LocalEngine.open({ dir });
    const old = `${uid}.1.7`;
    await engine.putMeta(
      `ov/${uid}`,
      new TextEncoder().encode(JSON.stringify({ [old]: [1, 4] })),
      0,
    );
    await engine.writeObject(old, 0, bytes(4096, 9));
    await engine.flush();
    await engine.close();
    const first = await open(dir);
    for (const name of far) await first.replica.change(name, change(1, 0, bytes(4096, 1)));
    await first.replica.flush([]);
    await first.close();
    await (await open(dir)).close(); // its start replays the journal, then checkpoints
    const keys = async () => {
      const engine = await LocalEngine.open({ dir });
      try {
        const listed = await engine.listMeta(`ov/${uid}`);
        return new Map(
          await Promise.all(listed.map(async (key) => {
            const entry = (await engine.getMeta(key))!;
            return [key, {
              version: entry.version,
              names: Object.keys(JSON.parse(new TextDecoder().decode(entry.value))),
            }] as const;
          })),
        );
      } finally {
        await engine.close();
      }
    };
    const before = await keys();
    assert.deepEqual([...before.keys()], [
      `ov/${uid}.1.0`,
      `ov/${uid}.2.0`,
      `ov/${uid}.2.1`,
      `ov/${uid}.2.2197`,
    ], "one record per generation and 4096 objects; the whole-volume record is gone");
    assert.deepEqual(before.get(`ov/${uid}.2.0`)!.names, [far[0], far[1]]);
    const second = await open(dir);
    try {
      assert.deepEqual((await second.replica.read(old, 0, 4096)).stamp, [1, 4]);
      assert.deepEqual((await second.replica.read(far[3], 0, 4096)).stamp, [1, 1]);
      await second.replica.change(far[2], change(2, 0, bytes(4096, 2)));
      await second.replica.flush([]);
    } finally {
      await second.close();
    }
    await (await open(dir)).close();
    const after = await keys();
    for (const [key, { version }] of before) {
      const changed = key === `ov/${uid}.2.1`;
      assert.equal(after.get(key)!.version !== version, changed, `${key} rewritten: ${changed}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
