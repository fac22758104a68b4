/**
 * Goal: a listing of metadata keys is complete or fails: it never returns
 * what a minority of the voters answered (garbage collection would delete the
 * data of the records it missed), and a lister on an older configuration
 * learns the newer one from the voters' answers and lists again.
 * Method: listChosenKeys over voters simulated by a table of answers.
 */
import assert from "node:assert/strict";
import { listChosenKeys, type VoterKeys } from "./key_listing.ts";
import { NoQuorumError } from "./caspaxos.ts";
import type { MetaConfig } from "./config.ts";

function config(epoch: number, voters: string[], next: string[] | null = null): MetaConfig {
  return { epoch, clusterId: "c", voters, next };
}

function configs(start: MetaConfig) {
  let current = start;
  return {
    current: () => current,
    install: (newer: MetaConfig) => Promise.resolve(void (current = newer)),
  };
}

/** Voters answering from `answers` (absent: the voter does not answer). */
function ask(answers: Record<string, VoterKeys>) {
  return (id: string) =>
    answers[id] === undefined
      ? Promise.reject(new Error(`${id} does not answer`))
      : Promise.resolve(answers[id]);
}

Deno.test("listChosenKeys() unions the keys of a quorum of the voters", async () => {
  const c = config(1, ["a", "b", "c"]);
  const { keys } = await listChosenKeys({
    configs: configs(c),
    prefix: "volume/",
    ask: ask({
      a: { keys: ["volume/x"], config: c },
      b: { keys: ["volume/y"], config: c },
    }),
  });
  assert.deepEqual(keys, ["volume/x", "volume/y"]);
});

Deno.test("listChosenKeys() fails when only a minority of the voters answers", async () => {
  const c = config(1, ["a", "b", "c"]);
  await assert.rejects(
    listChosenKeys({
      configs: configs(c),
      prefix: "volume/",
      ask: ask({ a: { keys: ["volume/x"], config: c } }),
    }),
    NoQuorumError,
  );
});

Deno.test("listChosenKeys() needs a majority of both groups of a joint configuration", async () => {
  const c = config(2, ["a", "b", "c"], ["c", "d", "e"]);
  const answers = {
    a: { keys: [], config: c },
    b: { keys: [], config: c },
    c: { keys: ["volume/x"], config: c },
  };
  await assert.rejects(
    listChosenKeys({ configs: configs(c), prefix: "volume/", ask: ask(answers) }),
    NoQuorumError,
  );
  const { keys } = await listChosenKeys({
    configs: configs(c),
    prefix: "volume/",
    ask: ask({ ...answers, d: { keys: ["volume/y"], config: c } }),
  });
  assert.deepEqual(keys, ["volume/x", "volume/y"]);
});

Deno.test("listChosenKeys() learns a newer configuration from the voters and lists its voters", async () => {
  const old = config(1, ["a", "b", "c"]);
  const newer = config(3, ["c", "d", "e"]);
  const held = configs(old);
  const { keys } = await listChosenKeys({
    configs: held,
    prefix: "volume/",
    ask: ask({
      a: { keys: [], config: old },
      c: { keys: ["volume/x"], config: newer },
      d: { keys: ["volume/y"], config: newer },
    }),
  });
  assert.equal(held.current().epoch, 3);
  assert.deepEqual(keys, ["volume/x", "volume/y"]);
});

Deno.test("listChosenKeys() says which keys some voters lack, and can demand every voter", async () => {
  const c = config(1, ["a", "b", "c"]);
  const answers = {
    a: { keys: ["image/x"], config: c },
    b: { keys: ["image/x", "image/y"], config: c },
  };
  const listed = await listChosenKeys({ configs: configs(c), prefix: "image/", ask: ask(answers) });
  assert.deepEqual(listed.keys, ["image/x", "image/y"]);
  assert.deepEqual([...listed.partial], ["image/y"]);
  // Garbage collection's listing: a voter that does not answer may hold a value left there.
  await assert.rejects(
    listChosenKeys({ configs: configs(c), prefix: "image/", ask: ask(answers), everyVoter: true }),
    NoQuorumError,
  );
  const all = await listChosenKeys({
    configs: configs(c),
    prefix: "image/",
    ask: ask({ ...answers, c: { keys: ["image/x", "image/z"], config: c } }),
    everyVoter: true,
  });
  assert.deepEqual(all.keys, ["image/x", "image/y", "image/z"]);
  assert.deepEqual([...all.partial].sort(), ["image/y", "image/z"]);
});
