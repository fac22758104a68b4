#!/bin/sh
# `atoll` from the single-file bundle (deno task bundle): install the bundle as
# /usr/local/lib/atoll/atoll.js and this script as /usr/local/bin/atoll. Deno
# must be on PATH (or set DENO to its path); ATOLL_BUNDLE overrides the bundle.
# V8's memory reducer stays off: after a quiet minute it left the next upload
# 10-20% slower (docs/decisions.md, "V8 without its memory reducer").
exec "${DENO:-deno}" run --allow-all --no-prompt --no-config --v8-flags=--no-memory-reducer \
  "${ATOLL_BUNDLE:-/usr/local/lib/atoll/atoll.js}" "$@"
