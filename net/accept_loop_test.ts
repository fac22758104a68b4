import assert from "node:assert/strict";
import { Acceptor } from "./accept_loop.ts";

/** A listener whose first `failures` accepts fail as when descriptors run out. */
function failingListener(
  failures: number,
  conns: Deno.Conn[],
): Deno.Listener & { calls: number[] } {
  const calls: number[] = [];
  let closed = Promise.withResolvers<never>();
  const listener = {
    calls,
    accept(): Promise<Deno.Conn> {
      calls.push(performance.now());
      if (calls.length <= failures) {
        return Promise.reject(
          Object.assign(new Error("Too many open files (os error 24)"), { code: "EMFILE" }),
        );
      }
      return conns.length > 0 ? Promise.resolve(conns.shift()!) : closed.promise;
    },
    close() {
      closed.reject(new Deno.errors.BadResource("listener closed"));
      closed = Promise.withResolvers<never>();
      closed.promise.catch(() => {});
    },
  };
  return listener as unknown as Deno.Listener & { calls: number[] };
}

function fakeConn(hostname: string): Deno.Conn & { closed: boolean } {
  const conn = {
    closed: false,
    remoteAddr: { transport: "tcp", hostname, port: 40000 },
    setNoDelay() {},
    close() {
      conn.closed = true;
    },
  };
  return conn as unknown as Deno.Conn & { closed: boolean };
}

Deno.test("Acceptor backs off and keeps accepting after accepts fail with EMFILE", async () => {
  const conn = fakeConn("10.0.0.1");
  const listener = failingListener(4, [conn]);
  const served = Promise.withResolvers<Deno.Conn>();
  const acceptor = Acceptor.start(listener, {
    name: "test",
    limits: { connectionsMax: 8, connectionsPerAddressMax: 8 },
    serve: (accepted) => {
      served.resolve(accepted);
      return new Promise(() => {});
    },
  });
  assert.equal(await served.promise, conn, "the connection after the failures is served");
  assert.equal(acceptor.acceptFailures, 4);
  const pauses = listener.calls.slice(1).map((at, i) => at - listener.calls[i]);
  assert.ok(pauses[0] >= 15 && pauses[3] >= 4 * pauses[0] * 0.8, `pauses grow: ${pauses}`);
  await acceptor.close();
});

Deno.test("Acceptor refuses connections past its caps, per listener and per address", async () => {
  const conns = ["10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    .map(fakeConn);
  const listener = failingListener(0, [...conns]);
  const acceptor = Acceptor.start(listener, {
    name: "test",
    limits: { connectionsMax: 4, connectionsPerAddressMax: 2 },
    serve: () => new Promise(() => {}),
  });
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(
    conns.map((conn) => conn.closed),
    [false, false, true, false, false, true],
    "the third from one address, and the fifth in all, are closed at once",
  );
  assert.equal(acceptor.connections, 4);
  assert.equal(acceptor.refused, 2);
  await acceptor.close();
});
