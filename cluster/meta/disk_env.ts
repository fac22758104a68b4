/**
 * The real disk of a node's metadata configuration: a JSON file (acceptor
 * states are in acceptor_log.ts). The simulation keeps both in memory instead.
 *
 * @module
 */
import * as fs from "node:fs";
import { dirname } from "node:path";
import { isClusterId } from "../transport/mod.ts";
import { parseConfig } from "./config.ts";
import type { NodeConfigDisk, NodeConfigState } from "./node_config.ts";

/** The state kept in a JSON file, replaced atomically and synced. */
export function fileConfigDisk(path: string): { state: NodeConfigState; disk: NodeConfigDisk } {
  let state: NodeConfigState = { clusterId: null, config: null };
  try {
    const saved = JSON.parse(fs.readFileSync(path, "utf8"));
    state = {
      clusterId: typeof saved.clusterId === "string" && isClusterId(saved.clusterId)
        ? saved.clusterId
        : null,
      config: saved.config == null ? null : parseConfig(saved.config),
    };
  } catch (error) {
    if ((error as { code?: string }).code !== "ENOENT") {
      throw new TypeError(`Cannot read cluster state ${path}: ${(error as Error).message}`);
    }
  }
  const disk: NodeConfigDisk = {
    save(next) {
      const tmp = `${path}.tmp`;
      const fd = fs.openSync(tmp, "w");
      try {
        fs.writeSync(fd, JSON.stringify(next) + "\n");
        fs.fdatasyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, path);
      const dir = fs.openSync(dirname(path), "r");
      try {
        fs.fsyncSync(dir);
      } finally {
        fs.closeSync(dir);
      }
      return Promise.resolve();
    },
  };
  return { state, disk };
}
