#!/usr/bin/env bash
# Builds the module and runs nginx in the foreground with conf/nginx.conf
# on 127.0.0.1:${PORT:-8080} with ${WORKERS:-auto} worker processes.
# Runtime files go to ${USAGE_PREFIX:-<checkout>/run}; nothing is written
# to /etc.
# Ctrl-C or SIGTERM stops nginx; SIGQUIT drains it gracefully.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
port="${PORT:-8080}"
workers="${WORKERS:-auto}"
prefix="${USAGE_PREFIX:-$root/run}"

"$root/scripts/build.sh"

mkdir -p "$prefix/conf" "$prefix/logs" "$prefix/modules" "$prefix/temp" \
         "$prefix/state"
# workers save the state file: started as root, nginx runs them as nobody
if [ "$(id -u)" = 0 ]; then
    chown nobody "$prefix/state"
fi
cp "${BUILD_DIR:-$root/build}/nginx/ngx_http_usage_module.so" "$prefix/modules/"

# the shipped file, with the port and worker count of this run
sed -e "s/listen 127\.0\.0\.1:8080;/listen 127.0.0.1:$port;/" \
    -e "s/^worker_processes .*;/worker_processes $workers;/" \
    "$root/conf/nginx.conf" > "$prefix/conf/nginx.conf"

nginx=/usr/sbin/nginx
"$nginx" -t -q -p "$prefix/" -e logs/error.log -c conf/nginx.conf

echo "usage API on http://127.0.0.1:$port/ (logs in $prefix/logs)" >&2
exec "$nginx" -p "$prefix/" -e logs/error.log -c conf/nginx.conf \
     -g "daemon off; master_process on;"
