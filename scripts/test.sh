#!/usr/bin/env bash
# Builds the module and runs the whole test suite (prove -r t/).
#   scripts/test.sh               the normal build
#   SANITIZE=1 scripts/test.sh    AddressSanitizer + UBSan build, same suite
# Extra arguments go to prove, e.g. scripts/test.sh t/events.t
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

# promtool (Debian's prometheus package) checks the metrics exposition
"$root/scripts/deps.sh" prometheus
"$root/scripts/build.sh"

# Tools that only some tests use; a failed install makes only those skip
# (or check less): a Dockerfile linter for t/dockerfile.t (see
# scripts/lint-docker), curl for the image's HEALTHCHECK in
# t/docker_runtime.t.
optional() {
    local what="$1"
    shift
    if ! "$@" > "$root/build/test-install.log" 2>&1; then
        echo "test.sh: could not install $what (tests that need it skip):" >&2
        tail -5 "$root/build/test-install.log" >&2
    fi
}
optional "a Dockerfile linter" "$root/scripts/lint-docker" --install
optional curl "$root/scripts/deps.sh" curl

if [ "${SANITIZE:-0}" = 1 ]; then
    export USAGE_MODULE="$root/build/asan/ngx_http_usage_module.so"
    # the stock nginx binary is not instrumented: the ASan runtime must be
    # loaded first, into nginx only (the harness sets it for nginx alone)
    USAGE_NGINX_PRELOAD="$(gcc -print-file-name=libasan.so)"
    export USAGE_NGINX_PRELOAD
    # workers never free their pools at exit, by design: no leak report;
    # any other report aborts the worker, which the tests catch
    export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1"
    export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1"
else
    export USAGE_MODULE="$root/build/nginx/ngx_http_usage_module.so"
fi

if [ $# -eq 0 ]; then
    set -- -r t/
fi

prove "$@"
