#!/usr/bin/env bash
# Installs the Debian packages the module needs to build, run, test and
# benchmark, but only those that are missing (no apt-get when all are there).
# Usage: scripts/deps.sh [extra-package ...]
#
# As root it runs apt-get itself; otherwise through sudo, and where there
# is no sudo it says what to run as root and fails.  No service a package
# brings may start during the install: Debian's nginx would take port 80
# (and fail the whole install where port 80 is in use), prometheus 9090,
# redis-server 6379, and this project runs its own instances.  A
# policy-rc.d that says no (exit 101, Debian's way, which invoke-rc.d and
# deb-systemd-invoke obey) is in place for the install, unless the machine
# has its own.
#
# Environment (for t/deps_script.t): DEPS_POLICY_RC_D, the policy file
# (default /usr/sbin/policy-rc.d).
set -euo pipefail

# libhiredis-dev: the RESP reader and formatter of usage_sync (issue 12)
want=(nginx nginx-dev libjansson-dev libhiredis-dev gcc make perl "$@")
missing=()
for p in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing+=("$p")
    fi
done

[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "deps.sh: these Debian packages are missing: ${missing[*]}" >&2
    echo "deps.sh: not root, and no sudo: run as root" >&2
    echo "    apt-get update && apt-get install -y ${missing[*]}" >&2
    echo "deps.sh: then run this command again" >&2
    exit 1
fi

policy="${DEPS_POLICY_RC_D:-/usr/sbin/policy-rc.d}"
if [ ! -e "$policy" ]; then
    "${sudo[@]}" sh -c "printf '#!/bin/sh\n# scripts/deps.sh: no service starts during its install\nexit 101\n' > '$policy' && chmod 755 '$policy'"
    trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# Nothing started, but the services would start at the next boot: drop
# their boot links.  Only a service installed just now: one the machine
# had before is its owner's.
for unit in nginx prometheus redis-server; do
    case " ${missing[*]} " in *" $unit "*) ;; *) continue ;; esac
    if [ -d /run/systemd/system ]; then
        "${sudo[@]}" systemctl disable --now "$unit" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$unit" ]; then
        "${sudo[@]}" "/etc/init.d/$unit" stop >/dev/null 2>&1 || true
        "${sudo[@]}" update-rc.d "$unit" disable >/dev/null 2>&1 || true
    fi
done
