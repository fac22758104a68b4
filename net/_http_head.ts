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
  /** Header fields in order as sent, for the Request (which validates them again). */
  headers: [string, string][];
  /** The Host header (repeated fields joined by ", "), null when absent. */
  host: string | null;
  body: BodyFraming;
  /** Whether the client lets the connection carry another request after this one. */
  keepAlive: boolean;
  /** The client waits for `100 Continue` before it sends the body. */
  expectContinue: boolean;
}

const requestLine = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([^ ]+) HTTP\/1\.([01])$/;
const token = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Fields the server itself reads, by lower-case name. */
type Fields = Partial<
  Record<"connection" | "content-length" | "transfer-encoding" | "expect" | "host", string>
>;
const read = new Set(["connection", "content-length", "transfer-encoding", "expect", "host"]);

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
  // Plain pairs, not a Headers object: the Request validates its headers anyway,
  // and building a Headers twice per request costs more than the rest of parsing.
  const headers: [string, string][] = [];
  const fields: Fields = {};
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(":");
    const name = line.slice(0, colon);
    if (colon <= 0 || !token.test(name)) {
      throw new HttpRequestError(400, `Cannot read request: malformed header line ${i}`);
    }
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    headers.push([name, value]);
    const lower = name.toLowerCase() as keyof Fields;
    if (read.has(lower)) {
      fields[lower] = fields[lower] === undefined ? value : `${fields[lower]}, ${value}`;
    }
  }
  const minorVersion = Number(minor);
  const connection = tokens(fields.connection);
  const keepAlive = minorVersion === 1
    ? !connection.includes("close")
    : connection.includes("keep-alive") && !connection.includes("close");
  const expect = fields.expect;
  if (expect !== undefined && expect.toLowerCase() !== "100-continue") {
    throw new HttpRequestError(417, `Cannot meet expectation ${JSON.stringify(expect)}`);
  }
  return {
    method,
    target,
    minorVersion,
    headers,
    host: fields.host ?? null,
    body: bodyFraming(fields, minorVersion),
    keepAlive,
    expectContinue: expect !== undefined && minorVersion === 1,
  };
}

function bodyFraming(fields: Fields, minorVersion: number): BodyFraming {
  const transferEncoding = fields["transfer-encoding"];
  const contentLength = fields["content-length"];
  if (transferEncoding !== undefined) {
    if (contentLength !== undefined) {
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
  if (contentLength === undefined) return { kind: "none" };
  // Repeated fields were joined with ", ": every copy must say the same.
  const values = new Set(contentLength.split(",").map((value) => value.trim()));
  const [value] = values;
  if (values.size !== 1 || !/^\d{1,16}$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new HttpRequestError(400, "Cannot read request: bad Content-Length");
  }
  const bytes = Number(value);
  return bytes === 0 ? { kind: "none" } : { kind: "length", bytes };
}

/** The comma-separated tokens of a header, lower case. */
function tokens(value: string | undefined): string[] {
  if (value === undefined) return [];
  return value.toLowerCase().split(",").map((part) => part.trim()).filter((part) => part !== "");
}

const utf8 = new TextDecoder();

/** Bytes as ISO-8859-1 text: each byte one code unit, as header values are ByteStrings. */
function latin1(bytes: Uint8Array): string {
  // Heads are ASCII but for rare values: decode natively, byte by byte only when needed.
  const ascii = utf8.decode(bytes);
  if (!/[\u0080-\uffff]/.test(ascii)) return ascii;
  let text = "";
  for (let at = 0; at < bytes.length; at += 8192) {
    text += String.fromCharCode(...bytes.subarray(at, at + 8192));
  }
  return text;
}
