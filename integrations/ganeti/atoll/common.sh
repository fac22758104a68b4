# Shared by the scripts of the Atoll ExtStorage provider (ganeti-extstorage-interface(7)):
# the settings, checks of what Ganeti passes, and the Atoll CLI. Each script sources it
# first. Ganeti runs a script with a clean environment (VOL_NAME, VOL_SIZE, EXTP_*...)
# and the provider's directory as its working directory; a script exits 0 on success,
# non-zero with a line `atoll ACTION: ...` on stderr on failure.

action=$(basename -- "$0")
provider_dir=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd) || exit 1

die() {
  printf 'atoll %s: %s\n' "$action" "$*" >&2
  exit 1
}

usage() {
  cat <<EOF
usage: $action (run by Ganeti with its ExtStorage environment; no arguments)
Atoll ExtStorage provider: $1
Settings: $provider_dir/atoll.conf (ATOLL_CLI, ATOLL_NODE, ATOLL_TOKEN_FILE, ATOLL_NBD).
EOF
}

# Every script but verify takes no arguments; -h or --help prints the usage.
# $1: what the script does; the rest: the script's arguments.
handle_arguments() {
  what=$1
  shift
  case "${1-}" in
    -h | --help)
      usage "$what"
      exit 0
      ;;
  esac
  if [ $# -ne 0 ] && [ "$action" != verify ]; then
    usage "$what" >&2
    exit 1
  fi
}

# Settings, defaults first; atoll.conf beside the scripts overrides them.
ATOLL_CLI=atoll
ATOLL_NODE=http://127.0.0.1:8080
ATOLL_TOKEN_FILE=
ATOLL_NBD=127.0.0.1:10809
if [ -e "$provider_dir/atoll.conf" ]; then
  [ -r "$provider_dir/atoll.conf" ] || die "cannot read $provider_dir/atoll.conf"
  # shellcheck source=atoll.conf
  . "$provider_dir/atoll.conf" || die "cannot load $provider_dir/atoll.conf"
fi

# Runs the Atoll CLI against this host's node. The CLI prints its own one-line
# reason (`atoll: ...`) on stderr when it fails.
atoll_cli() {
  # shellcheck disable=SC2086 # ATOLL_CLI is a command line, split on purpose
  set -- $ATOLL_CLI "$@" --node "$ATOLL_NODE"
  command -v "$1" >/dev/null 2>&1 ||
    die "cannot run the Atoll CLI: '$1' not found (set ATOLL_CLI in $provider_dir/atoll.conf)"
  if [ -n "$ATOLL_TOKEN_FILE" ]; then
    "$@" --token-file "$ATOLL_TOKEN_FILE"
  else
    "$@"
  fi
}

# VOL_NAME names the Atoll volume (Ganeti makes it: UUID.ext.diskN).
require_volume_name() {
  [ -n "${VOL_NAME-}" ] || die "VOL_NAME is not set (Ganeti passes the volume's name)"
}

# $1: the name of a variable that must hold a size in MiB (a positive integer).
require_mebibytes() {
  value=
  eval "value=\${$1-}"
  case "$value" in
    '' | *[!0-9]*) die "$1 must be a size in MiB (a positive integer), got '$value'" ;;
  esac
  [ "$value" -gt 0 ] 2>/dev/null || die "$1 must be a size in MiB (a positive integer), got '$value'"
}

# The NBD URI of volume $1 at this host's node, as QEMU's -drive file= takes it.
nbd_uri() {
  case "$ATOLL_NBD" in
    *[,[:space:]]*) die "ATOLL_NBD '$ATOLL_NBD' holds a comma or a space, which QEMU's -drive cannot take" ;;
    unix:/*) printf 'nbd+unix:///%s?socket=%s\n' "$1" "${ATOLL_NBD#unix:}" ;;
    unix:*) die "ATOLL_NBD '$ATOLL_NBD': the socket path must be absolute" ;;
    *:*) printf 'nbd://%s/%s\n' "$ATOLL_NBD" "$1" ;;
    *) die "ATOLL_NBD '$ATOLL_NBD' is not HOST:PORT or unix:PATH" ;;
  esac
}
