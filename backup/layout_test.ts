import assert from "node:assert/strict";
import { keys, parseBackupUrl, parseTarget, validateBackupName } from "./layout.ts";

Deno.test("parseTarget() splits s3://BUCKET/PREFIX and drops trailing slashes", () => {
  assert.deepEqual(parseTarget("s3://backups/site-a/atoll/"), {
    bucket: "backups",
    prefix: "site-a/atoll",
  });
  assert.deepEqual(parseTarget("s3://backups"), { bucket: "backups", prefix: "" });
});

Deno.test("parseTarget() refuses other schemes, bad buckets and dot segments with a TypeError", () => {
  for (
    const bad of ["https://x/y", "s3://", "s3://A_B/x", "s3://bucket/../x", "s3://bucket/a//b", 7]
  ) {
    assert.throws(() => parseTarget(bad), TypeError, String(bad));
  }
});

Deno.test("parseBackupUrl() takes the last segment as the backup name", () => {
  assert.deepEqual(parseBackupUrl("s3://backups/site-a/vm1@nightly"), {
    target: { bucket: "backups", prefix: "site-a" },
    name: "vm1@nightly",
  });
  assert.throws(() => parseBackupUrl("s3://backups"), TypeError);
  assert.throws(() => parseBackupUrl("s3://backups/p/a@b@c"), TypeError);
});

Deno.test("validateBackupName() takes NAME and NAME@NAME only", () => {
  assert.equal(validateBackupName("vm1@s1"), "vm1@s1");
  assert.equal(validateBackupName("weekly.3"), "weekly.3");
  for (const bad of ["", "@s1", "vm1@", "a/b", "-x", "a b"]) {
    assert.throws(() => validateBackupName(bad), TypeError, bad);
  }
});

Deno.test("keys put blocks, manifests, pending manifests and markers under the prefix", () => {
  const target = { bucket: "b", prefix: "p/q" };
  assert.equal(keys.block(target, "ab"), "p/q/blocks/ab");
  assert.equal(keys.manifest(target, "vm1@s1"), "p/q/backups/vm1@s1.json");
  assert.equal(keys.pending(target, "push", 7), "p/q/pending/push/000007.json");
  assert.equal(keys.prune({ bucket: "b", prefix: "" }, "id"), "prunes/id.json");
});
