/** The routes of the cluster view, name placement and garbage collection, under /v1. */
import { Hono } from "hono";
import { ConflictError, isBlockName, isMetaKey, isObjectName } from "../core/mod.ts";
import type { AppEnv, AppOptions } from "./app.ts";

/** The longest member id the routes take (gossip's bound is lower). */
const memberIdLengthMax = 256;

/** Cluster routes (a collection counts what it deleted itself: core/collector.ts). */
export function clusterRoutes(options: AppOptions): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get(
    "/cluster",
    (c) => c.json({ members: options.members(), ...options.clusterStatus?.() }),
  );
  app.get("/cluster/replicas/:name", (c) => {
    const name = c.req.param("name");
    if (options.replicasOf === undefined) {
      throw new ConflictError("Cannot place names: this node runs alone (no --gossip)");
    }
    if (!isBlockName(name) && !isObjectName(name) && !isMetaKey(name.replace(":", "/"))) {
      throw new TypeError(
        `Cannot place ${JSON.stringify(name)}: expected a block hash, an object name or KIND:NAME`,
      );
    }
    return c.json({ name, replicas: options.replicasOf(name.replace(":", "/")) });
  });
  app.post("/cluster/members/:id/lost", async (c) => {
    const id = c.req.param("id");
    if (options.declareLost === undefined) {
      throw new ConflictError("Cannot declare a member lost: this node runs alone (no --gossip)");
    }
    if (id.length === 0 || id.length > memberIdLengthMax) {
      throw new TypeError(
        `Cannot declare a member lost: its id is 1 to ${memberIdLengthMax} characters`,
      );
    }
    await options.declareLost(id);
    return c.json({ id, lost: true });
  });
  app.post("/gc", async (c) => {
    return c.json(await options.store.collectGarbage());
  });
  return app;
}
