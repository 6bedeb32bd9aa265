#!/bin/sh
# Container entrypoint for an application that keeps its state in one SQLite file on a volume:
#   1. the database missing (first boot, or a lost volume): restore its latest state from the replica;
#      no backup at all: a first boot, the application creates the database;
#      any other failure (store unreachable, bad credentials, missing bucket): exit non-zero, the
#      application does not start and no database file is created;
#   2. replicate in the background;
#   3. run the application (this script's arguments) until it exits, then a final sync.
# SIGTERM (docker stop, a pod deletion) goes to the application; replication follows it down.
#
# Usage: entrypoint.sh APP_COMMAND [ARGS...]
#   LITESTREAM_CONFIG   the config (default /config/litestream.yml)
set -eu

if [ "$#" -eq 0 ]; then
  echo "usage: entrypoint.sh APP_COMMAND [ARGS...]" >&2
  exit 64
fi

# -exec takes one command line: quote every argument so that spaces and quotes survive.
cmd=""
for arg in "$@"; do
  cmd="$cmd '$(printf '%s' "$arg" | sed "s/'/'\\\\''/g")'"
done

exec stn-replicate replicate -restore-if-db-not-exists -config "${LITESTREAM_CONFIG:-/config/litestream.yml}" -exec "$cmd"
