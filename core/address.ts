/** Parsing of `HOST:PORT` and `unix:PATH` listen addresses. */

/** A TCP address. */
export interface HostPort {
  hostname: string;
  port: number;
}

/** Parses `HOST:PORT` (IPv6 as `[::1]:PORT`); throws TypeError naming `flag`. */
export function parseHostPort(text: string, flag: string): HostPort {
  const match = text.match(/^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/);
  const port = Number(match?.[3]);
  if (!match || port > 65535) {
    throw new TypeError(`Cannot use ${flag} ${JSON.stringify(text)}: expected HOST:PORT`);
  }
  return { hostname: match[1] ?? match[2], port };
}
