/**
 * Goal: reads forwarded to a lease holder at depth travel several to a call,
 * each with its own answer (served with its bytes, not held, or the error the
 * holder's read threw); a holder of an earlier version, which serves only
 * `volume.read`, still serves every read, one to a call; the holder refuses
 * batches out of bounds.
 * Method: real links over loopback (a cluster port whose methods are the
 * holder's side, serveForwardedReads over a fake volume that fills each read
 * with bytes of its offset), the node's ForwardedReads as the caller.
 */
import assert from "node:assert/strict";
import { BufferPool, type ByteRange, systemClock } from "../../core/mod.ts";
import { LinkClient } from "../transport/link_client.ts";
import { MemoryIdentity } from "../transport/identity.ts";
import { RpcError, type RpcMethod } from "../transport/mod.ts";
import { key, startPort } from "../../tests/_link_proxy.ts";
import {
  forwardedReadBytesMax,
  ForwardedReads,
  forwardedReadsBatchMax,
  serveForwardedReads,
} from "./_forwarded_reads.ts";

/** The byte at `offset` of every volume the fake holder serves. */
const byteAt = (offset: number) => (offset * 7 + 3) % 251;

/** The fake holder's read: "held" volumes are served, "gone" ones not held, "bad" ones fail. */
async function serve(name: string, range: ByteRange, into: Uint8Array): Promise<boolean> {
  await Promise.resolve();
  if (name === "bad") throw new RangeError("no such block");
  if (name === "gone") return false;
  for (let i = 0; i < into.length; i++) into[i] = byteAt(range.offset + i);
  return true;
}

function holderMethods(calls: Record<string, number>, batches: boolean): Record<string, RpcMethod> {
  const pool = new BufferPool(1 << 20, 1 << 20);
  const methods: Record<string, RpcMethod> = {
    "volume.read": async (request) => {
      calls.single = (calls.single ?? 0) + 1;
      const { name, offset, length } = request.header as Record<string, never>;
      const data = new Uint8Array(length);
      const held = await serve(name, { offset, length }, data);
      return held ? { header: { held: true }, data } : { header: { held: false } };
    },
  };
  if (batches) {
    methods["volume.reads"] = (request) => {
      calls.batch = (calls.batch ?? 0) + 1;
      calls.reads = (calls.reads ?? 0) + (request.header.reads as unknown[]).length;
      return serveForwardedReads(request.header, serve, (n) => pool.acquire(n), (b) => {
        pool.release(b);
      });
    };
  }
  return methods;
}

function expected(offset: number, length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => byteAt(offset + i));
}

Deno.test("forwarded reads at depth go several to a call, each answered on its own", async () => {
  const calls: Record<string, number> = {};
  const server = startPort({ methods: holderMethods(calls, true) });
  const links = new LinkClient(key, new MemoryIdentity(), { selfId: "client" });
  let sent = 0;
  const reads = new ForwardedReads(links, systemClock, () => sent++);
  try {
    const names: string[] = Array.from({ length: 40 }, (_, i) => i % 10 === 3 ? "gone" : "held");
    names[17] = "bad";
    const intos = names.map((_, i) => new Uint8Array(4096 + i));
    const answers = await Promise.allSettled(
      names.map((name, i) =>
        reads.read(server.address, name, { offset: i * 1000, length: intos[i].length }, intos[i])
      ),
    );
    answers.forEach((answer, i) => {
      if (names[i] === "bad") {
        assert.equal(answer.status, "rejected");
        const error = (answer as PromiseRejectedResult).reason;
        assert.ok(error instanceof RpcError, String(error));
        assert.equal(error.remoteName, "RangeError");
        assert.match(error.message, /no such block/);
        return;
      }
      assert.equal(answer.status, "fulfilled", String((answer as PromiseRejectedResult).reason));
      const value = (answer as PromiseFulfilledResult<string>).value;
      if (names[i] === "gone") return assert.equal(value, "not held");
      assert.equal(value, "served");
      assert.deepEqual(intos[i], expected(i * 1000, intos[i].length), `read ${i}`);
    });
    // The first two go alone (nothing in flight yet), the rest wait and go together.
    assert.ok((calls.batch ?? 0) >= 1, JSON.stringify(calls));
    assert.ok(sent < names.length / 4, `${sent} calls for ${names.length} reads`);
    assert.equal((calls.single ?? 0) + (calls.reads ?? 0), names.length);
  } finally {
    await links.close();
    await server.stop();
  }
});

Deno.test("a holder that serves only volume.read is called one read at a time", async () => {
  const calls: Record<string, number> = {};
  const server = startPort({ methods: holderMethods(calls, false) });
  const links = new LinkClient(key, new MemoryIdentity(), { selfId: "client" });
  const reads = new ForwardedReads(links, systemClock);
  try {
    for (let round = 0; round < 2; round++) {
      const intos = Array.from({ length: 12 }, () => new Uint8Array(512));
      const answers = await Promise.all(
        intos.map((into, i) =>
          reads.read(server.address, "held", { offset: i, length: 512 }, into)
        ),
      );
      assert.deepEqual(answers, intos.map(() => "served"));
      intos.forEach((into, i) => assert.deepEqual(into, expected(i, 512)));
    }
    assert.equal(calls.single, 24);
    assert.equal(calls.batch, undefined);
  } finally {
    await links.close();
    await server.stop();
  }
});

Deno.test("the holder refuses batches out of bounds", async () => {
  const pool = new BufferPool(1 << 20, 1 << 20);
  const run = (reads: unknown) =>
    serveForwardedReads({ reads }, serve, (n) => pool.acquire(n), (b) => pool.release(b));
  const one = { name: "held", offset: 0, length: 8 };
  await assert.rejects(run([]), RangeError);
  await assert.rejects(run("x"), RangeError);
  await assert.rejects(run(Array(forwardedReadsBatchMax + 1).fill(one)), RangeError);
  await assert.rejects(run([{ ...one, offset: -1 }]), RangeError);
  await assert.rejects(run([{ ...one, length: 1.5 }]), TypeError);
  await assert.rejects(run([{ ...one, name: 5 }]), TypeError);
  await assert.rejects(run([null]), TypeError);
  const half = { ...one, length: forwardedReadBytesMax / 2 };
  await assert.rejects(run([half, half, one]), RangeError);
  const reply = await run([one, { ...one, name: "gone" }, { ...one, offset: 8 }]);
  assert.deepEqual(reply.header.results, [{ held: true }, { held: false }, { held: true }]);
  assert.deepEqual(reply.data, expected(0, 16));
});
