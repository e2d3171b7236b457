#!/usr/bin/env bash
# Builds the module and runs nginx in the foreground with conf/nginx.conf
# on 127.0.0.1:${PORT:-8080} with ${WORKERS:-auto} worker processes.
# Runtime files go to ${USAGE_PREFIX:-<checkout>/run}; nothing is written
# to /etc.
# Ctrl-C or SIGTERM stops nginx; SIGQUIT drains it gracefully.
#
# INSTANCES=3 scripts/run.sh: a fleet on one machine, for trying
# usage_sync: the Redis that REDIS=host:port names, or else a
# redis-server it starts on 127.0.0.1:${REDIS_PORT:-6390} (no
# persistence, under <prefix>/redis), and 3 instances of
# conf/nginx.cluster.conf (one cursor key for all, <prefix>/cursor.key),
# on ports $PORT, $PORT+1, ..., each with its own prefix (<prefix>/i1,
# i2, ...).  Ctrl-C or SIGTERM stops them all, SIGQUIT drains them, then
# Redis stops.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
port="${PORT:-8080}"
workers="${WORKERS:-auto}"
prefix="${USAGE_PREFIX:-$root/run}"
instances="${INSTANCES:-1}"
nginx=/usr/sbin/nginx

"$root/scripts/build.sh"

# one instance's prefix and configuration: run_prepare <prefix> <port>
# [<redis host:port> <name> <cursor key file>]: with a Redis, an instance
# of conf/nginx.cluster.conf, else of conf/nginx.conf
run_prepare() {
    local dir="$1" listen="$2" redis="${3:-}" name="${4:-}" key="${5:-}"
    local conf="$root/conf/nginx.conf"

    mkdir -p "$dir/conf" "$dir/logs" "$dir/modules" "$dir/temp" "$dir/state"
    # workers save the state file: started as root, nginx runs them as nobody
    if [ "$(id -u)" = 0 ]; then
        chown nobody "$dir/state"
    fi
    cp "${BUILD_DIR:-$root/build}/nginx/ngx_http_usage_module.so" \
       "$dir/modules/"

    if [ -n "$redis" ]; then
        conf="$root/conf/nginx.cluster.conf"
        cp "$key" "$dir/conf/cursor.key"
    fi

    # the shipped file, with the port and worker count of this run (and
    # its Redis and the instance's name)
    sed -e "s/listen 127\.0\.0\.1:8080;/listen 127.0.0.1:$listen;/" \
        -e "s/^worker_processes .*;/worker_processes $workers;/" \
        -e "s|^    usage_sync zone=usage redis=127\.0\.0\.1:6379;$|    usage_sync zone=usage redis=$redis name=$name;|" \
        "$conf" > "$dir/conf/nginx.conf"

    "$nginx" -t -q -p "$dir/" -e logs/error.log -c conf/nginx.conf
}

if [ "$instances" -gt 1 ]; then
    pids=()

    if [ -n "${REDIS:-}" ]; then
        # a Redis of the user's: used as it is, never stopped
        redis="$REDIS"

    else
        "$root/scripts/deps.sh" redis-server redis-tools
        redis_port="${REDIS_PORT:-6390}"
        redis="127.0.0.1:$redis_port"
        mkdir -p "$prefix/redis"

        redis-server --bind 127.0.0.1 --port "$redis_port" --save '' \
                     --appendonly no --dir "$prefix/redis" \
                     --logfile "$prefix/redis/redis.log" &
        pids=("$!")

        for _ in $(seq 50); do
            redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
            sleep 0.1
        done
    fi

    # one cursor key for the fleet, kept across runs
    [ -s "$prefix/cursor.key" ] || {
        mkdir -p "$prefix"
        head -c 32 /dev/urandom > "$prefix/cursor.key"
    }

    nginx_pids=()
    for i in $(seq "$instances"); do
        dir="$prefix/i$i"
        run_prepare "$dir" $((port + i - 1)) "$redis" "i$i" \
            "$prefix/cursor.key"
        "$nginx" -p "$dir/" -e logs/error.log -c conf/nginx.conf \
                 -g "daemon off; master_process on;" &
        nginx_pids+=("$!")
        echo "instance i$i on http://127.0.0.1:$((port + i - 1))/" >&2
    done

    stop() {
        kill "-$1" "${nginx_pids[@]}" 2>/dev/null || true
        wait "${nginx_pids[@]}" 2>/dev/null || true
        [ ${#pids[@]} -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true
        wait 2>/dev/null || true
        exit 0
    }
    trap 'stop TERM' INT TERM
    trap 'stop QUIT' QUIT

    echo "redis on $redis (logs under $prefix)" >&2
    wait
    exit 0
fi

run_prepare "$prefix" "$port"

echo "usage API on http://127.0.0.1:$port/ (logs in $prefix/logs)" >&2
exec "$nginx" -p "$prefix/" -e logs/error.log -c conf/nginx.conf \
     -g "daemon off; master_process on;"
