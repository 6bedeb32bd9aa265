#!/usr/bin/env bash
# Programs the torture suite drives as application writers besides Node: the sqlite3 command-line shell
# and python3 (with its sqlite3 module). Installs whatever is missing from Debian's packages; a no-op
# when both are there. Needs root (CI runs as root on a fresh Debian machine).
set -euo pipefail
need=()
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
python3 -c 'import sqlite3' >/dev/null 2>&1 || need+=(python3)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-tools: missing ${need[*]}; run this script as root (apt-get install -y ${need[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}"
