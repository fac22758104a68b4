import assert from "node:assert/strict";
import { HttpRequestError, parseHead } from "./_http_head.ts";
import { headerLinesMax } from "./limits.ts";

const head = (text: string) => parseHead(new TextEncoder().encode(text));

function assertRefused(text: string, status: number) {
  assert.throws(
    () => head(text),
    (error) => error instanceof HttpRequestError && error.status === status,
    `${JSON.stringify(text)} answers ${status}`,
  );
}

Deno.test("parseHead() reads the request line, headers and keep-alive of HTTP/1.1 and 1.0", () => {
  const get = head("GET /v1/images?x=1 HTTP/1.1\r\nHost: node:8080\r\nX-Many:  a b \r\n");
  assert.equal(get.method, "GET");
  assert.equal(get.target, "/v1/images?x=1");
  assert.equal(get.host, "node:8080");
  assert.deepEqual(
    get.headers,
    [["Host", "node:8080"], ["X-Many", "a b"]],
    "names as sent; surrounding whitespace is not part of a value",
  );
  assert.deepEqual(get.body, { kind: "none" });
  assert.equal(get.keepAlive, true);
  assert.equal(head("GET / HTTP/1.1\r\nConnection: close\r\n").keepAlive, false);
  assert.equal(head("GET / HTTP/1.0\r\n").keepAlive, false);
  assert.equal(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n").keepAlive, true);
});

Deno.test("parseHead() frames bodies by Content-Length or chunked, and refuses ambiguity", () => {
  assert.deepEqual(head("PUT / HTTP/1.1\r\nContent-Length: 42\r\n").body, {
    kind: "length",
    bytes: 42,
  });
  assert.deepEqual(head("PUT / HTTP/1.1\r\nContent-Length: 0\r\n").body, { kind: "none" });
  assert.deepEqual(
    head("PUT / HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 7\r\n").body,
    { kind: "length", bytes: 7 },
    "repeated equal lengths are one length",
  );
  assert.deepEqual(head("PUT / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n").body, {
    kind: "chunked",
  });
  assertRefused("PUT / HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 8\r\n", 400);
  assertRefused("PUT / HTTP/1.1\r\nContent-Length: -1\r\n", 400);
  assertRefused("PUT / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n", 400);
  assertRefused("PUT / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n", 501);
  assertRefused("PUT / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n", 400);
});

Deno.test("parseHead() refuses malformed heads with the status that says why", () => {
  assertRefused("GET /\r\n", 400);
  assertRefused("GET / HTTP/2.0\r\n", 505);
  assertRefused("GET / HTTP/1.1\r\nX-Folded: a\r\n b\r\n", 400);
  assertRefused("GET / HTTP/1.1\r\nBad Name: a\r\n", 400);
  assertRefused("GET / HTTP/1.1\r\n: empty name\r\n", 400);
  assertRefused("GET / HTTP/1.1\r\nExpect: something-else\r\n", 417);
  assertRefused("GET / HTTP/1.1\r\n" + "X: y\r\n".repeat(headerLinesMax + 1), 431);
});

Deno.test("parseHead() notes a client that waits for 100 Continue", () => {
  assert.equal(head("PUT / HTTP/1.1\r\nExpect: 100-continue\r\n").expectContinue, true);
  assert.equal(head("PUT / HTTP/1.1\r\n").expectContinue, false);
});
