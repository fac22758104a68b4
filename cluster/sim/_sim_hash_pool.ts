/**
 * The hash pool of the whole-cluster simulation. The production pool hashes
 * in workers or with WebCrypto, whose digests come back from another thread
 * at a moment of real time: the simulation's event loop would interleave them
 * differently on every run. This one hashes on the calling thread, at once
 * (node:crypto, as the block service verifies blocks), so an upload's blocks
 * reach the engine in an order the seed alone decides.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { type BlockDigest, HashPool } from "../../wasm/hash_pool.ts";

/** A pool that hashes synchronously; see the module doc. */
export class SimHashPool extends HashPool {
  constructor() {
    super({ engine: "native" });
  }

  /** As {@linkcode HashPool.hashBlock}, resolved with a digest computed before it returns. */
  override hashBlock(
    data: Uint8Array,
    options: { detectZero?: boolean } = {},
  ): Promise<BlockDigest> {
    if (options.detectZero === true && data.every((byte) => byte === 0)) {
      return Promise.resolve({ data, digest: null });
    }
    return Promise.resolve({
      data,
      digest: new Uint8Array(createHash("sha256").update(data).digest()),
    });
  }
}
