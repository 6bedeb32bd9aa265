#!/bin/sh
# The tests drive databases from separate processes with the `sqlite3` shell (test/helpers/sqlite-cli.ts).
# Installs it where it is missing: with apt-get as root (CI runs as root), else says how.
set -eu
if [ -n "${SQLITE3_CLI:-}" ]; then
  command -v "$SQLITE3_CLI" >/dev/null 2>&1 && exit 0
  echo "ensure-sqlite3-cli: SQLITE3_CLI=$SQLITE3_CLI is not an executable" >&2
  exit 1
fi
command -v sqlite3 >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-sqlite3-cli: installing the sqlite3 shell (apt-get install sqlite3)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3 >/dev/null
  exit 0
fi
echo "ensure-sqlite3-cli: the tests need the sqlite3 command-line shell: install it (apt-get install sqlite3) or set SQLITE3_CLI" >&2
exit 1
