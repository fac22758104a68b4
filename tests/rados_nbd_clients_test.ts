/**
 * Goal: the NBD client tests (nbd_clients_test.ts: nbdinfo, qemu-io, qemu-img,
 * nbdcopy, fio, libnbd) pass on a node whose engine is RADOS. Method: the same
 * test cases, with every node this file starts put on the test Ceph
 * (tests/_rados.ts: a throwaway single-node Ceph, one pool for this file, a
 * namespace per node).
 */
import { useEngineArgs } from "./_node.ts";
import { radosNodeArgs } from "./_rados.ts";

useEngineArgs((data) => radosNodeArgs(data));
await import("./nbd_clients_test.ts");
