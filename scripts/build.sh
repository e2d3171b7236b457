#!/usr/bin/env bash
# Builds ngx_http_usage_module as a dynamic module that matches the installed
# Debian nginx exactly: same version, same configure flags (from nginx-dev).
#
#   scripts/build.sh              -> build/nginx/ngx_http_usage_module.so
#   SANITIZE=1 scripts/build.sh   -> build/asan/ngx_http_usage_module.so
#                                    (AddressSanitizer + UndefinedBehaviorSanitizer)
#   ID_HASH_BITS=4 scripts/build.sh -> build/collide/ (build/asan-collide/
#                                    with SANITIZE=1): client ids keep 4
#                                    bits of their hash, for the tests that
#                                    need colliding ids
#   BUILD_DIR=/tmp/b scripts/build.sh   the same under another directory
#                                    (two builds of one tree at once)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
"$root/scripts/deps.sh"

src=/usr/share/nginx/src
if [ "${SANITIZE:-0}" = 1 ]; then
    out="$build/asan"
    extra_cc="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined"
    extra_ld="-fsanitize=address,undefined"
else
    out="$build/nginx"
    extra_cc=""
    extra_ld=""
fi

if [ -n "${ID_HASH_BITS:-}" ]; then
    [ "${SANITIZE:-0}" = 1 ] && out="$build/asan-collide" || out="$build/collide"
    extra_cc="$extra_cc -DNGX_HTTP_USAGE_ID_HASH_BITS=$ID_HASH_BITS"
fi

# nginx's configure writes a Makefile into its current directory, so run it
# in a private copy of the nginx-dev tree rather than in /usr/share.
tree="$build/nginx-src"
stamp="$(dpkg-query -W -f='${Version}' nginx-dev)"
if [ ! -f "$tree/.stamp" ] || [ "$(cat "$tree/.stamp")" != "$stamp" ]; then
    rm -rf "$tree"
    mkdir -p "$tree"
    cp -a "$src/." "$tree/"
    echo "$stamp" > "$tree/.stamp"
fi

# Reconfigure only when the addon's inputs changed: configure takes seconds.
sig="$(cat "$root/config" "$0" | md5sum | cut -d' ' -f1)-${SANITIZE:-0}-${ID_HASH_BITS:-}"
if [ ! -f "$out/Makefile" ] || [ "$(cat "$out/.sig" 2>/dev/null)" != "$sig" ]; then
    rm -rf "$out"
    mkdir -p "$out"
    (
        cd "$tree"
        # shellcheck disable=SC1091
        . ./conf_flags
        ./configure \
            --with-cc-opt="-g -O2 -fstack-protector-strong -Wformat -Werror=format-security -fPIC -D_FORTIFY_SOURCE=2 -Wall -Wextra -Werror $extra_cc" \
            --with-ld-opt="-Wl,-z,relro -Wl,-z,now -fPIC $extra_ld" \
            "${NGX_CONF_FLAGS[@]}" \
            --add-dynamic-module="$root" \
            --builddir="$out" > "$out/configure.log" 2>&1 \
        || { tail -30 "$out/configure.log"; exit 1; }
    )
    echo "$sig" > "$out/.sig"
fi

# assets/ (the OpenAPI document, the pages) into src/ngx_http_usage_assets.c:
# the generated file is committed, this keeps it current while editing
perl "$root/scripts/embed"

make -s -f "$out/Makefile" -C "$tree" modules
echo "built $out/ngx_http_usage_module.so"
