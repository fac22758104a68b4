/**
 * Parses an HTTP/1.x request head (RFC 9112) into what the server needs: the
 * method, target, headers, how the body is framed and whether the connection
 * stays open. Everything ambiguous is refused rather than guessed, which is
 * what keeps a proxy in front of the node from reading another request than
 * the node does (request smuggling): Content-Length with Transfer-Encoding,
 * differing Content-Lengths, obsolete line folding.
 */
import { headerLinesMax } from "./limits.ts";

/** A request head the server cannot serve; answered with `status`, then the connection closes. */
export class HttpRequestError extends Error {
  override name = "HttpRequestError";
  readonly status: number;

  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** How a request's body is delimited on the connection. */
export type BodyFraming =
  | { kind: "none" }
  | { kind: "length"; bytes: number }
  | { kind: "chunked" };

/** A parsed request head. */
export interface RequestHead {
  method: string;
  /** The request target as sent: origin form (`/path?query`) or absolute form. */
  target: string;
  /** 1 for HTTP/1.1, 0 for HTTP/1.0. */
  minorVersion: number;
  headers: Headers;
  body: BodyFraming;
  /** Whether the client lets the connection carry another request after this one. */
  keepAlive: boolean;
  /** The client waits for `100 Continue` before it sends the body. */
  expectContinue: boolean;
}

const requestLine = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([^ ]+) HTTP\/1\.([01])$/;
const token = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Parses `head`, the bytes before the blank line that ends a request head (CRLF included or not). */
export function parseHead(head: Uint8Array): RequestHead {
  const lines = latin1(head).split("\r\n");
  if (lines.at(-1) === "") lines.pop();
  if (lines.length - 1 > headerLinesMax) {
    throw new HttpRequestError(
      431,
      `Cannot read request: more than ${headerLinesMax} header lines`,
    );
  }
  const match = lines[0].match(requestLine);
  if (match === null) {
    if (/^\S+ \S+ HTTP\/\d/.test(lines[0])) {
      throw new HttpRequestError(505, "Cannot read request: only HTTP/1.0 and HTTP/1.1 are served");
    }
    throw new HttpRequestError(400, "Cannot read request: malformed request line");
  }
  const [, method, target, minor] = match;
  const headers = new Headers();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(":");
    const name = line.slice(0, colon);
    if (colon <= 0 || !token.test(name)) {
      throw new HttpRequestError(400, `Cannot read request: malformed header line ${i}`);
    }
    try {
      headers.append(name, line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, ""));
    } catch {
      throw new HttpRequestError(400, `Cannot read request: invalid value of header ${name}`);
    }
  }
  const minorVersion = Number(minor);
  const connection = tokens(headers.get("connection"));
  const keepAlive = minorVersion === 1
    ? !connection.includes("close")
    : connection.includes("keep-alive") && !connection.includes("close");
  const expect = headers.get("expect");
  if (expect !== null && expect.toLowerCase() !== "100-continue") {
    throw new HttpRequestError(417, `Cannot meet expectation ${JSON.stringify(expect)}`);
  }
  return {
    method,
    target,
    minorVersion,
    headers,
    body: bodyFraming(headers, minorVersion),
    keepAlive,
    expectContinue: expect !== null && minorVersion === 1,
  };
}

function bodyFraming(headers: Headers, minorVersion: number): BodyFraming {
  const transferEncoding = headers.get("transfer-encoding");
  const contentLength = headers.get("content-length");
  if (transferEncoding !== null) {
    if (contentLength !== null) {
      throw new HttpRequestError(
        400,
        "Cannot read request: both Content-Length and Transfer-Encoding",
      );
    }
    if (minorVersion === 0) {
      throw new HttpRequestError(400, "Cannot read request: Transfer-Encoding in HTTP/1.0");
    }
    const codings = tokens(transferEncoding);
    if (codings.length !== 1 || codings[0] !== "chunked") {
      throw new HttpRequestError(
        501,
        `Cannot read request: transfer coding ${transferEncoding} (only chunked is served)`,
      );
    }
    return { kind: "chunked" };
  }
  if (contentLength === null) return { kind: "none" };
  // Headers joins repeated fields with ", ": every copy must say the same.
  const values = new Set(contentLength.split(",").map((value) => value.trim()));
  const [value] = values;
  if (values.size !== 1 || !/^\d{1,16}$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new HttpRequestError(400, "Cannot read request: bad Content-Length");
  }
  const bytes = Number(value);
  return bytes === 0 ? { kind: "none" } : { kind: "length", bytes };
}

/** The comma-separated tokens of a header, lower case. */
function tokens(value: string | null): string[] {
  if (value === null) return [];
  return value.toLowerCase().split(",").map((part) => part.trim()).filter((part) => part !== "");
}

/** Bytes as ISO-8859-1 text: each byte one code unit, as header values are ByteStrings. */
function latin1(bytes: Uint8Array): string {
  let text = "";
  for (let at = 0; at < bytes.length; at += 8192) {
    text += String.fromCharCode(...bytes.subarray(at, at + 8192));
  }
  return text;
}
