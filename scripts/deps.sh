#!/usr/bin/env bash
# Installs the Debian packages the module needs to build, run, test and
# benchmark, but only those that are missing (no apt-get when all are there).
# Usage: scripts/deps.sh [extra-package ...]
set -euo pipefail

# libhiredis-dev: the RESP reader and formatter of usage_sync (issue 12)
want=(nginx nginx-dev libjansson-dev libhiredis-dev gcc make perl "$@")
missing=()
for p in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian starts the packaged nginx on port 80 (prometheus, installed
    # for promtool, on 9090; redis-server, for the sync tests, on 6379); we
    # run our own instances.  Only a service installed just now is stopped:
    # one the machine had before is its owner's.  Under systemd, systemctl
    # stops and disables it.  Without systemd (sysvinit, or a container
    # where systemctl exists but systemd is not PID 1) its init script may
    # have started it (unless a policy-rc.d said no, as Docker's images
    # do): stop it with that script and drop its boot links.
    for unit in nginx prometheus redis-server; do
        case " ${missing[*]} " in *" $unit "*) ;; *) continue ;; esac
        if [ -d /run/systemd/system ]; then
            $sudo systemctl disable --now "$unit" >/dev/null 2>&1 || true
        elif [ -x "/etc/init.d/$unit" ]; then
            $sudo "/etc/init.d/$unit" stop >/dev/null 2>&1 || true
            $sudo update-rc.d "$unit" disable >/dev/null 2>&1 || true
        fi
    done
fi
