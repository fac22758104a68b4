import assert from "node:assert/strict";
import { newClusterId } from "../transport/identity.ts";
import { Acceptor } from "./acceptor.ts";
import type { AcceptorState } from "./caspaxos.ts";
import type { MetaConfig } from "./config.ts";
import { NodeConfig, type NodeConfigState } from "./node_config.ts";

/** A disk that saves what it is given until `full` is set, then fails as ENOSPC does. */
function fillableDisk() {
  const disk = {
    full: false,
    saved: null as NodeConfigState | null,
    save(state: NodeConfigState): Promise<void> {
      if (disk.full) {
        return Promise.reject(
          Object.assign(new Error("No space left on device"), { code: "ENOSPC" }),
        );
      }
      disk.saved = structuredClone(state);
      return Promise.resolve();
    },
  };
  return disk;
}

const clusterId = newClusterId();
const config = (epoch: number, voters: string[]): MetaConfig => ({
  epoch,
  clusterId,
  voters,
  next: null,
});

Deno.test("a configuration that cannot be saved is learned for proposals, never installed, and saved once there is room", async () => {
  const disk = fillableDisk();
  const configs = new NodeConfig({ clusterId, config: config(1, ["a"]) }, disk);
  disk.full = true;

  await assert.rejects(configs.install(config(2, ["a", "b", "c"])), /No space/);
  assert.equal(configs.current()!.epoch, 1, "install is durable or fails");
  await configs.learn(config(2, ["a", "b", "c"]));
  assert.equal(configs.current()!.epoch, 1, "what the acceptor enforces is what was saved");
  assert.deepEqual(configs.newest(), config(2, ["a", "b", "c"]));
  await configs.learn(config(1, ["a"]));
  assert.equal(configs.newest()!.epoch, 2, "an older one changes nothing");
  await assert.rejects(
    configs.learn({ ...config(3, ["a"]), clusterId: newClusterId() }),
    /this node is in/,
  );

  // The acceptor still takes a round of the saved epoch: this node never said it has epoch 2.
  const states = new Map<string, AcceptorState>();
  const acceptor = new Acceptor({
    load: (key) => Promise.resolve(states.get(key) ?? null),
    save: (key, state) => Promise.resolve(void states.set(key, state)),
  }, configs);
  const reply = await acceptor.prepare(
    "volume/v",
    { epoch: 1, counter: 1, node: "p" },
    config(1, ["a"]),
  );
  assert.equal(reply.ok, true);

  disk.full = false;
  await configs.learn(config(1, ["a"])); // any later call saves what was learned
  assert.equal(configs.current()!.epoch, 2);
  assert.equal(disk.saved!.config!.epoch, 2);
  assert.equal(configs.newest(), configs.current());
});
