/**
 * Backups to S3: forever-incremental, deduplicated copies of snapshots in any
 * S3 store (push, list, restore, prune). Blocks are content-addressed, so a
 * push sends only what the target lacks; see docs/operations.md "Backups to S3".
 */
export { s3ConfigFromEnvironment } from "./credentials.ts";
export {
  type Manifest,
  parseBackupUrl,
  parseTarget,
  type Target,
  validateBackupName,
} from "./layout.ts";
export { pruneBackups, type PrunePolicy, type PruneResult } from "./prune.ts";
export { pushBackup, type PushResult, type TransferProgress } from "./push.ts";
export { listBackups, restoreBackup } from "./restore.ts";
export { S3Bucket, type S3Config, S3Error, type S3Object } from "./s3_client.ts";
