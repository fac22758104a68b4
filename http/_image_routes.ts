/** The routes of images and their uploads, under /v1. */
import { Hono } from "hono";
import { parseUploadFormat, type Store, validateName } from "../core/mod.ts";
import type { AppEnv } from "./app.ts";
import { frozenData } from "./_frozen_data.ts";
import { uploadBytes, uploadNewBytes } from "../metrics/mod.ts";
import { clientBytes, contentLength } from "./_request_body.ts";

/** Image routes over `store`; uploads count their bytes in /metrics. */
export function imageRoutes(store: Store): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.put("/images/:name", async (c) => {
    const name = validateName(c.req.param("name"), "image");
    const body = c.req.raw.body;
    const expectedBytes = contentLength(c.req.header("content-length"));
    if (body === null || expectedBytes === 0) {
      throw new TypeError(`Cannot upload image "${name}": the body is empty`);
    }
    const format = parseUploadFormat(c.req.query("format"));
    const result = await store.uploadImage(name, clientBytes(body), { expectedBytes, format });
    uploadBytes.inc(result.size);
    uploadNewBytes.inc(result.newBytes);
    const { created, ...info } = result;
    return c.json(info, created ? 201 : 200);
  });
  app.get("/images", async (c) => c.json(await store.listImages()));
  app.get("/uploads", (c) => c.json(store.uploads()));
  app.get("/images/:name", async (c) => {
    const view = await store.openImage(c.req.param("name"));
    return await frozenData(view, c.req.query("format"), c.req.header("range"));
  });
  app.get("/images/:name/info", async (c) => c.json(await store.imageInfo(c.req.param("name"))));
  app.delete("/images/:name", async (c) => {
    await store.deleteImage(c.req.param("name"));
    return c.body(null, 204);
  });
  return app;
}
