/**
 * Runs a command (the test suite: `deno task test`) with a throwaway
 * single-node Ceph for the RADOS tests, and stops that Ceph afterwards, also
 * when the command fails or is interrupted. The tests find it through
 * `TEST_ATOLL_CEPH_CONF` (tests/_rados.ts); a test file run alone starts its own.
 *
 * Usage: `deno run -A tests/with_ceph.ts COMMAND [ARGS...]`
 */
import { startCeph } from "./_ceph.ts";
import { cephConfVariable, testCephOptions } from "./_rados.ts";

const [command, ...args] = Deno.args;
if (command === undefined) {
  console.error("usage: deno run -A tests/with_ceph.ts COMMAND [ARGS...]");
  Deno.exit(2);
}
const started = performance.now();
const cluster = await startCeph(testCephOptions);
console.error(
  `with_ceph: a throwaway Ceph in ${cluster.dir} is up (${
    Math.round(performance.now() - started)
  } ms)`,
);
const child = new Deno.Command(command, {
  args,
  env: { [cephConfVariable]: `${cluster.dir}/ceph.conf` },
  stdin: "inherit",
}).spawn();
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    try {
      child.kill(signal);
    } catch { /* gone */ }
  });
}
const status = await child.status;
await cluster.stop();
Deno.exit(status.code);
