/**
 * What must never happen to metadata registers, checked over a simulation's
 * history of operations. Every write in the workload is a compare-and-set that
 * raises the register's version by one (deletes too), so a register's states
 * form one chain ordered by version, and:
 *
 * - fork: two different values were seen at one version of a key (two CAS
 *   winners, or a value that was lost and its version written again);
 * - rollback: an operation saw a version older than one acknowledged before it
 *   started (a lost or rolled-back write, or a deleted value come back);
 * - divergence: after the faults healed, members read different states, or a
 *   state older than the newest acknowledged one.
 *
 * @module
 */

/** One client operation, as the workload recorded it. */
export interface OpRecord {
  node: string;
  key: string;
  kind: "read" | "write" | "delete";
  startMs: number;
  endMs: number | null;
  /** The register after the operation (its result), when it completed. */
  version: number | null;
  /** "null" for an absent value, else the id of the write that made it. */
  tag: string | null;
  error: string | null;
}

/** The final state one member read of one key. */
export interface FinalRead {
  node: string;
  key: string;
  version: number | null;
  tag: string | null;
  error: string | null;
}

/** Every violation found (empty when the history is correct). */
export function checkHistory(ops: OpRecord[], finals: FinalRead[]): string[] {
  const violations: string[] = [];
  const seen = new Map<string, { tag: string; by: string }>();
  const observe = (key: string, version: number, tag: string, by: string) => {
    const at = `${key}@${version}`;
    const before = seen.get(at);
    if (before === undefined) seen.set(at, { tag, by });
    else if (before.tag !== tag) {
      violations.push(`fork: ${at} is ${before.tag} (${before.by}) and ${tag} (${by})`);
    }
  };
  const completed = ops.filter((op) => op.endMs !== null && op.version !== null);
  for (const op of completed) observe(op.key, op.version!, op.tag!, `${op.kind} at ${op.node}`);
  // Acknowledged writes by key, in order of completion, for the rollback check.
  const acked = new Map<string, OpRecord[]>();
  for (const op of completed) {
    if (op.kind === "read") continue;
    const list = acked.get(op.key) ?? [];
    list.push(op);
    acked.set(op.key, list);
  }
  for (const op of completed) {
    const before = (acked.get(op.key) ?? []).filter((write) => write.endMs! < op.startMs);
    const newest = Math.max(0, ...before.map((write) => write.version!));
    if (op.version! < newest) {
      violations.push(
        `rollback: ${op.kind} of ${op.key} at ${op.node} (${
          op.startMs.toFixed(1)
        } ms) saw version ${op.version}, but ${newest} was acknowledged before it started`,
      );
    }
  }
  const keys = new Set(finals.map((read) => read.key));
  for (const key of keys) {
    const reads = finals.filter((read) => read.key === key);
    const failed = reads.filter((read) => read.error !== null);
    for (const read of failed) {
      violations.push(`unavailable: final read of ${key} at ${read.node} failed: ${read.error}`);
    }
    const answers = reads.filter((read) => read.error === null);
    for (const read of answers) {
      observe(key, read.version!, read.tag!, `final read at ${read.node}`);
    }
    const states = new Set(answers.map((read) => `${read.version}:${read.tag}`));
    if (states.size > 1) violations.push(`divergence: final reads of ${key}: ${[...states]}`);
    const newest = Math.max(0, ...(acked.get(key) ?? []).map((write) => write.version!));
    for (const read of answers) {
      if (read.version! < newest) {
        violations.push(
          `lost: final read of ${key} at ${read.node} is version ${read.version}, ${newest} was acknowledged`,
        );
      }
    }
  }
  return violations;
}
