/** The bearer token check of the /v1 routes. */
import type { Context, Next } from "hono";
import { HTTPException } from "hono/http-exception";
import { createHash, timingSafeEqual } from "node:crypto";

/** Middleware that answers 401 unless `Authorization: Bearer <token>` names `token`. */
export function bearerAuth(token: string) {
  const expected = digest(token);
  return async (c: Context, next: Next) => {
    const header = c.req.header("authorization") ?? "";
    const given = header.startsWith("Bearer ") ? header.slice(7) : null;
    if (given === null || !timingSafeEqual(digest(given), expected)) {
      throw new HTTPException(401, {
        message: "Cannot authorize request: a valid bearer token is required",
      });
    }
    await next();
  };
}

function digest(text: string): Uint8Array {
  // Equal-length digests let timingSafeEqual compare tokens of any length.
  return createHash("sha256").update(text).digest();
}
