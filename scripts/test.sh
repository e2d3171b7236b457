#!/usr/bin/env bash
# Builds the module and runs the whole test suite (prove -r t/).
#   scripts/test.sh               the normal build
#   SANITIZE=1 scripts/test.sh    AddressSanitizer + UBSan build, same suite
#   LEAKS=1 scripts/test.sh       the same, with LeakSanitizer at each
#                                 process's exit (see below)
# Extra arguments go to prove, e.g. scripts/test.sh t/events.t
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
export BUILD_DIR="$build"
cd "$root"

[ "${LEAKS:-0}" = 1 ] && export SANITIZE=1

# promtool (Debian's prometheus package) checks the metrics exposition;
# the sync tests start their own redis-server (t/lib/Test/UsageRedis.pm),
# redis-cli (redis-tools, a dependency) and openssl for its TLS; the
# package tests build the Debian package (scripts/package: dpkg-dev) and
# check it with lintian; gdb stops a worker in the middle of an insert
# (t/torn_change.t); Node.js runs @redocly/cli and ajv on the OpenAPI
# document (t/openapi.t, scripts/node-tools) and puppeteer-core, which
# drives chromium through the dashboard (t/dashboard.t): all required, as
# the tests need them
# (a Node.js with its own npm, as NodeSource's nodejs, is used as it is:
# Debian's npm package would conflict with it)
node_pkgs=()
command -v npm >/dev/null 2>&1 || node_pkgs=(nodejs npm)
"$root/scripts/deps.sh" prometheus redis-server redis-tools openssl gdb \
    dpkg-dev lintian chromium "${node_pkgs[@]}"
"$root/scripts/node-tools"
"$root/scripts/build.sh"
# the same with 4-bit client id hashes: t/client_id_collisions.t
ID_HASH_BITS=4 "$root/scripts/build.sh"

# Tools that only some tests use; a failed install makes only those skip
# (or check less): a Dockerfile linter for t/dockerfile.t (see
# scripts/lint-docker), curl for the image's HEALTHCHECK in
# t/docker_runtime.t.
optional() {
    local what="$1"
    shift
    if ! "$@" > "$build/test-install.log" 2>&1; then
        echo "test.sh: could not install $what (tests that need it skip):" >&2
        tail -5 "$build/test-install.log" >&2
    fi
}
optional "a Dockerfile linter" "$root/scripts/lint-docker" --install
optional curl "$root/scripts/deps.sh" curl

if [ "${SANITIZE:-0}" = 1 ]; then
    export USAGE_MODULE="$build/asan/ngx_http_usage_module.so"
    export USAGE_MODULE_COLLIDE="$build/asan-collide/ngx_http_usage_module.so"
    # the stock nginx binary is not instrumented: the ASan runtime must be
    # loaded first, into nginx only (the harness sets it for nginx alone)
    USAGE_NGINX_PRELOAD="$(gcc -print-file-name=libasan.so)"
    export USAGE_NGINX_PRELOAD
    # workers never free their pools at exit, by design: no leak report;
    # any other report aborts the worker, which the tests catch
    export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1"
    export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1"
else
    export USAGE_MODULE="$build/nginx/ngx_http_usage_module.so"
    export USAGE_MODULE_COLLIDE="$build/collide/ngx_http_usage_module.so"
fi

# LEAKS=1: LeakSanitizer runs when each nginx process exits, and its
# reports go to files, not to error.log.  nginx itself never frees what a
# worker allocates once for its whole life (connections, events, the
# cycle's pools: the kernel takes them back at exit), so only a leak with a
# frame in this module counts; any other sanitizer report fails too.
if [ "${LEAKS:-0}" = 1 ]; then
    lsan="$build/lsan"
    rm -rf "$lsan"
    mkdir -p "$lsan"
    chmod 1777 "$lsan"      # workers run as nobody when the master is root
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=0:halt_on_error=1:allocator_may_return_null=1:fast_unwind_on_malloc=0:log_path=$lsan/report"
fi

if [ $# -eq 0 ]; then
    set -- -r t/
fi

rc=0
prove "$@" || rc=$?

if [ "${LEAKS:-0}" = 1 ]; then
    shopt -s nullglob
    perl -e '
        my ($ours, $core, $errors, $files) = (0, 0, 0, 0);
        for my $f (@ARGV) {
            $files++;
            local $/;
            open my $fh, "<", $f or next;
            my $text = <$fh>;
            for my $b (split /\n(?=(?:Direct|Indirect) leak of )/, $text) {
                next unless $b =~ /^(?:Direct|Indirect) leak of/;
                # the module is the only dlopen()ed code the tests load,
                # and its frames print as "<unknown module>" (or with its
                # names); all else is nginx and its libraries (libc, pcre2)
                if ($b =~ /<unknown module>|ngx_http_usage_/) {
                    $ours++;
                    print STDERR "leak in the module ($f):\n$b\n";
                } else {
                    $core++;
                }
            }
            if ($text =~ /ERROR: AddressSanitizer|runtime error:/) {
                $errors++;
                print STDERR "sanitizer report ($f):\n$text\n";
            }
        }
        print "LeakSanitizer: $files process reports, $ours leaks in the "
            . "module, $core in nginx itself (allocated once per process), "
            . "$errors other reports\n";
        exit($ours || $errors ? 1 : 0);
    ' "$lsan"/report.* || rc=1
fi

exit $rc
