#!/usr/bin/env bash
# Installs the Debian packages the module needs to build, run, test and
# benchmark, but only those that are missing (no apt-get when all are there).
# Usage: scripts/deps.sh [extra-package ...]
set -euo pipefail

want=(nginx nginx-dev libjansson-dev gcc make perl "$@")
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
    # Debian starts the packaged nginx on port 80 (and prometheus, installed
    # for promtool, on 9090); we run our own instances.
    if command -v systemctl >/dev/null 2>&1; then
        for unit in nginx prometheus; do
            $sudo systemctl disable --now "$unit" >/dev/null 2>&1 || true
        done
    fi
fi
