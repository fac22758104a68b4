/**
 * The node's listeners and what keeps them up: accept loops with connection
 * caps and back-off, the HTTP/1.1 server with header, idle and stall timeouts,
 * the open-files limit and the caps sized from it.
 *
 * @module
 */
export { type AcceptOptions, Acceptor, closeQuietly, isConnectionError } from "./accept_loop.ts";
export {
  type FilesLimit,
  isFilesExhausted,
  raiseFilesLimit,
  readFilesLimit,
  surviveFilesExhaustion,
} from "./files_limit.ts";
export { type HttpHandler, HttpServer, type HttpServerOptions } from "./http_server.ts";
export type { HttpTimeouts } from "./_http_conn.ts";
export * from "./limits.ts";
