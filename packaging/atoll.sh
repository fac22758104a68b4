#!/bin/sh
# `atoll` from the single-file bundle (deno task bundle): install the bundle as
# /usr/local/lib/atoll/atoll.js and this script as /usr/local/bin/atoll. Deno
# must be on PATH (or set DENO to its path); ATOLL_BUNDLE overrides the bundle.
exec "${DENO:-deno}" run --allow-all --no-prompt --no-config \
  "${ATOLL_BUNDLE:-/usr/local/lib/atoll/atoll.js}" "$@"
