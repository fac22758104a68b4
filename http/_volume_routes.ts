/** The routes of volumes (their leases and data) and of their snapshots, under /v1. */
import { Hono } from "hono";
import { ConflictError, validateName, type VolumeAuthority } from "../core/mod.ts";
import type { AppEnv, AppOptions } from "./app.ts";
import { dataResponse } from "./data_response.ts";
import { clientBytes, jsonBody } from "./_request_body.ts";

/** Volume and snapshot routes; the data routes open volumes through `authority`. */
export function volumeRoutes(options: AppOptions, authority: VolumeAuthority): Hono<AppEnv> {
  const { store } = options;
  const app = new Hono<AppEnv>();
  app.post("/volumes", async (c) => {
    const request = await jsonBody(c.req.raw);
    return c.json(await store.createVolume(request as never), 201);
  });
  app.get("/volumes", async (c) => c.json(await store.listVolumes()));
  app.get("/volumes/:name", async (c) => {
    const name = c.req.param("name");
    return c.json(await (options.leases?.info(name) ?? store.volumeInfo(name)));
  });
  app.post("/volumes/:name/lease", async (c) => {
    const name = validateName(c.req.param("name"), "volume");
    const { action } = await jsonBody(c.req.raw);
    if (action !== "acquire" && action !== "break") {
      throw new TypeError(
        `Cannot change the lease of "${name}": action must be "acquire" or "break"`,
      );
    }
    if (options.leases === undefined) {
      throw new ConflictError(
        `Cannot change the lease of "${name}": this node runs alone (no --gossip)`,
      );
    }
    if (action === "acquire") await options.leases.acquire(name);
    else await options.leases.breakLease(name);
    return c.json(await options.leases.info(name));
  });
  app.post("/volumes/:name/resize", async (c) => {
    const name = validateName(c.req.param("name"), "volume");
    const { size, force } = await jsonBody(c.req.raw);
    if (force !== undefined && typeof force !== "boolean") {
      throw new TypeError(`Cannot resize volume "${name}": force must be true or false`);
    }
    const resized = await store.resizeVolume(name, size, { force: force === true });
    return c.json(await (options.leases?.info(name) ?? resized));
  });
  app.post("/volumes/:name/rollback", async (c) => {
    const name = validateName(c.req.param("name"), "volume");
    const { snapshot, force } = await jsonBody(c.req.raw);
    if (typeof snapshot !== "string") {
      throw new TypeError(`Cannot roll volume "${name}" back: give the snapshot's name`);
    }
    if (force !== undefined && typeof force !== "boolean") {
      throw new TypeError(`Cannot roll volume "${name}" back: force must be true or false`);
    }
    const rolled = await store.rollbackVolume(name, snapshot, { force: force === true });
    return c.json(options.leases === undefined ? rolled : await options.leases.info(name));
  });
  app.post("/volumes/:name/flatten", async (c) => {
    const name = validateName(c.req.param("name"), "volume");
    const flattened = await store.flattenVolume(name);
    if (options.leases === undefined) return c.json(flattened);
    const info = await options.leases.info(name) as object;
    return c.json({ ...info, flattenedBlocks: flattened.flattenedBlocks });
  });
  app.delete("/volumes/:name", async (c) => {
    await store.deleteVolume(c.req.param("name"), { cascade: c.req.query("cascade") === "true" });
    return c.body(null, 204);
  });
  app.get("/volumes/:name/data", async (c) => {
    const volume = await authority.open(validateName(c.req.param("name"), "volume"));
    return await dataResponse({
      sizeBytes: volume.sizeBytes,
      readAt: async (range, into = new Uint8Array(range.length)) => {
        await volume.read(range, into);
        return into;
      },
    }, c.req.header("range"));
  });
  app.patch("/volumes/:name/data", async (c) => {
    const volume = await authority.open(validateName(c.req.param("name"), "volume"));
    const offset = Number(c.req.query("offset") ?? "0");
    const body = c.req.raw.body;
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new TypeError(`Cannot write volume "${volume.name}": offset must be a byte count`);
    }
    let written = 0;
    if (body !== null) {
      for await (const chunk of clientBytes(body)) {
        await volume.write(offset + written, chunk, false);
        written += chunk.length;
      }
    }
    await volume.flush();
    return c.json({ name: volume.name, offset, written });
  });

  app.post("/volumes/:name/snapshots", async (c) => {
    const request = await jsonBody(c.req.raw) as { name?: unknown };
    const name = validateName(request.name, "snapshot");
    return c.json(await store.createSnapshot(c.req.param("name"), name), 201);
  });
  app.get("/volumes/:name/snapshots", async (c) => {
    return c.json(await store.listSnapshots(c.req.param("name")));
  });
  app.get("/volumes/:name/snapshots/:snapshot/data", async (c) => {
    const view = await store.openSnapshot(c.req.param("name"), c.req.param("snapshot"));
    return await dataResponse(view, c.req.header("range"));
  });
  app.delete("/volumes/:name/snapshots/:snapshot", async (c) => {
    await store.deleteSnapshot(c.req.param("name"), c.req.param("snapshot"));
    return c.body(null, 204);
  });
  return app;
}
