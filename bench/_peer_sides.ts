/**
 * The two sides of the peer benchmark (ceph_peer_bench.ts): how each makes
 * volumes, clones and images, and where fio goes.
 *
 * @module
 */
import type { FioTarget } from "./_fio.ts";
import type { CephCluster } from "../tests/_ceph.ts";
import type { TestProcessCluster } from "../tests/_cluster.ts";
import { createSnapshot, createVolume } from "../tests/_nbd.ts";
import type { TestNode } from "../tests/_node.ts";
import { curlUpload } from "./upload_bench.ts";

const MiB = 1024 * 1024;

/** One system under test: how to make volumes and clones, and where fio goes. */
export interface Side {
  name: string;
  create(volume: string, sizeBytes: number): Promise<void>;
  /** Snapshots `source` and makes each of `clones` a thin clone of the snapshot. */
  clone(source: string, clones: string[]): Promise<void>;
  target(volume: string): FioTarget;
  /** Stores the raw image file `path` as `name`; returns the seconds it took. */
  upload(name: string, path: string): Promise<number>;
  pids(): number[];
}

export function atollSide(cluster: TestProcessCluster): Side {
  // The node creating and first writing a volume holds its write lease: fio goes there.
  return nodeSide(cluster.nodes[0], () => cluster.nodes.map((n) => n.process.pid));
}

/** One Atoll node on the RADOS engine, in the benchmark's `rbd` pool. */
export function radosSide(node: TestNode): Side {
  return nodeSide(node, () => [node.process.pid]);
}

/** Atoll through `node`, its processes `pids`. */
function nodeSide(node: TestNode, pids: () => number[]): Side {
  return {
    name: "Atoll",
    create: async (volume, size) => void await createVolume(node, volume, { size }),
    clone: async (source, clones) => {
      await createSnapshot(node, source, "s");
      for (const clone of clones) await createVolume(node, clone, { snapshot: `${source}@s` });
    },
    target: (volume) => ({ kind: "nbd", uri: node.nbdUri(volume) }),
    upload: (name, path) => curlUpload(node.url, path, name),
    pids,
  };
}

export function cephSide(ceph: CephCluster): Side {
  return {
    name: "Ceph",
    create: async (volume, size) =>
      void await ceph.rbd([
        "create",
        "--size",
        `${size / MiB}M`,
        "--object-size",
        "4M",
        `rbd/${volume}`,
      ]),
    clone: async (source, clones) => {
      await ceph.rbd(["snap", "create", `rbd/${source}@s`]);
      await ceph.rbd(["snap", "protect", `rbd/${source}@s`]);
      for (const clone of clones) await ceph.rbd(["clone", `rbd/${source}@s`, `rbd/${clone}`]);
    },
    target: (volume) => ({ kind: "rbd", pool: "rbd", image: volume, env: ceph.env }),
    upload: async (name, path) => {
      const started = performance.now();
      await ceph.rbd(["import", "--object-size", "4M", path, `rbd/${name}`]);
      return (performance.now() - started) / 1000;
    },
    pids: () => ceph.pids(),
  };
}
