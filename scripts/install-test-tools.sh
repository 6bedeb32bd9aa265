#!/usr/bin/env bash
# What the test suite needs from the machine besides npm packages, installed where missing from Debian's
# packages (a no-op once everything is there). Needs root (CI runs as root on a fresh Debian machine).
#
# - The sqlite3 command-line shell and python3 (with its sqlite3 module): the torture suite drives them
#   as application writers besides Node.
# - OpenSSH's server (openssh-server): the sftp tests start their own `sshd` on 127.0.0.1 with a config,
#   host key and authorized key of their own (test/servers/sftp-server.ts). The machine's own ssh service
#   is never started or enabled by this script: /etc/ssh/sshd_not_to_be_run (Debian's switch, honoured by
#   the init script and the systemd unit) is created before installing, and policy-rc.d refuses to start
#   services during the install.
# - A system user for those tests, stn-sftp (no shell: /usr/sbin/nologin, which still allows sftp), with a
#   random password that only root can read in /etc/stn-replicate-test/sftp-password: the tests log in with
#   it (password authentication) and with a key. A random password, not a fixed one, because the machine's
#   own sshd, if it runs one, would accept that password too.
set -euo pipefail

SFTP_USER=stn-sftp
SFTP_HOME=/var/lib/stn-sftp
SECRETS_DIR=/etc/stn-replicate-test
PASSWORD_FILE="$SECRETS_DIR/sftp-password"

need=()
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
python3 -c 'import sqlite3' >/dev/null 2>&1 || need+=(python3)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
user_ok=true
id -u "$SFTP_USER" >/dev/null 2>&1 && [ -s "$PASSWORD_FILE" ] || user_ok=false

if [ ${#need[@]} -eq 0 ] && $user_ok; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  missing="${need[*]}"
  $user_ok || missing="${missing:+$missing, }the $SFTP_USER test user"
  echo "install-test-tools: missing $missing; run scripts/install-test-tools.sh as root" >&2
  exit 1
fi

if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  if [[ " ${need[*]} " == *" openssh-server "* ]]; then
    # Installed for the tests only: the machine's ssh service stays off (see the top of this file).
    mkdir -p /etc/ssh
    touch /etc/ssh/sshd_not_to_be_run
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
      chmod 755 /usr/sbin/policy-rc.d
      trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

if ! $user_ok; then
  id -u "$SFTP_USER" >/dev/null 2>&1 || useradd --system --create-home --home-dir "$SFTP_HOME" --shell /usr/sbin/nologin "$SFTP_USER"
  mkdir -p "$SECRETS_DIR"
  chmod 700 "$SECRETS_DIR"
  password="$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
  echo "$SFTP_USER:$password" | chpasswd
  (umask 077 && printf '%s\n' "$password" >"$PASSWORD_FILE")
fi
