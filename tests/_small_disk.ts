/**
 * A small tmpfs for tests of a full disk: mounted (the tests run as root) on
 * a new directory for the length of `run`, unmounted and removed afterwards.
 */
import assert from "node:assert/strict";

/** Runs `run` with `dir` a fresh tmpfs of `size` (mount's notation: "3m"). */
export async function withSmallDisk(
  size: string,
  run: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "atoll-small-disk-" });
  try {
    const mount = await new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir],
    }).output();
    const why = new TextDecoder().decode(mount.stderr);
    assert.equal(mount.code, 0, `mount a ${size} tmpfs (the tests run as root): ${why}`);
    try {
      await run(dir);
    } finally {
      const umount = await new Deno.Command("umount", { args: [dir] }).output();
      assert.equal(umount.code, 0, new TextDecoder().decode(umount.stderr));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
