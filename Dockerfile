# ngx_http_usage_module: Debian's nginx with the module, the image a load
# balancer targets (README, "Deploying").
#
#   docker build -t usage-api .
#   docker build --build-arg RUN_TESTS=1 -t usage-api .   # + the test suite
#   docker run -p 8080:8080 -v usage-state:/var/lib/nginx-usage \
#       -v "$PWD/api-keys:/etc/nginx-usage/api-keys:ro" usage-api
#
# The module is built and packaged by the README's own script,
# scripts/package (scripts/build.sh, then the Debian package
# libnginx-mod-http-usage), against the nginx-dev of the same Debian release
# the runtime stage installs nginx from; the runtime stage installs that
# package as a server does (README, "Install as a package"), with that
# exact nginx version, and checks it.

###############################################################################
# build: scripts/package, as on a developer's machine

FROM debian:bookworm-slim AS build

WORKDIR /src

# The packages: scripts/build.sh and scripts/package install what they
# miss with scripts/deps.sh (scripts/package: dpkg-dev and lintian); run it
# first on its own so that the layer is cached.
COPY scripts/deps.sh scripts/deps.sh
RUN scripts/deps.sh dpkg-dev lintian

COPY . .

# The module and its package (build/package/*.deb, checked by lintian), and
# the nginx it was built for (Debian version and nginx -v)
RUN scripts/package \
    && dpkg-query -W -f='${Version}\n' nginx > build/nginx.deb-version \
    && nginx -v 2> build/nginx.version

# docker build --build-arg RUN_TESTS=1: the README's test command too
ARG RUN_TESTS=0
RUN if [ "$RUN_TESTS" = 1 ]; then scripts/test.sh; fi

###############################################################################
# runtime: Debian's nginx of the same version, the module's package, a
# non-root user

FROM debian:bookworm-slim AS runtime

COPY --from=build /src/build/nginx.deb-version /src/build/nginx.version \
     /usr/share/nginx-usage/
COPY --from=build /src/build/package/libnginx-mod-http-usage_*.deb /tmp/

# nginx pinned to the version the module was built for (a module only loads
# into the nginx it was built against), and the module's package, in one
# apt-get: the package brings the module (/usr/lib/nginx/modules/), the
# libraries it links (its Depends: libjansson4, libhiredis0.14) and
# enables it in modules-enabled/, as on a server; curl for the
# HEALTHCHECK.  The image's user owns only its runtime directories.
# hadolint ignore=DL3008
RUN set -eu; \
    v="$(cat /usr/share/nginx-usage/nginx.deb-version)"; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
        "nginx=$v" "nginx-common=$v" /tmp/libnginx-mod-http-usage_*.deb curl; \
    rm -rf /var/lib/apt/lists/* /tmp/libnginx-mod-http-usage_*.deb; \
    test "$(dpkg-query -W -f='${Version}\n' nginx)" = "$v"; \
    test "$(nginx -v 2>&1)" = "$(cat /usr/share/nginx-usage/nginx.version)"; \
    test -L /etc/nginx/modules-enabled/50-mod-http-usage.conf; \
    groupadd --gid 10001 usage; \
    useradd --uid 10001 --gid usage --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin usage; \
    mkdir -p /etc/nginx-usage /run/nginx-usage \
        /var/lib/nginx-usage /var/cache/nginx-usage; \
    chown usage:usage /run/nginx-usage /var/lib/nginx-usage \
        /var/cache/nginx-usage

COPY conf/nginx.prod.conf /etc/nginx-usage/nginx.conf
COPY conf/api-keys /etc/nginx-usage/api-keys

USER 10001:10001

# loads the module into this nginx (a version or build mismatch stops the
# image build here) and checks the configuration, as the runtime user.
# nginx reopens /dev/stdout for the access log, which needs a stdout the
# user owns (as "docker run" gives it); a build step's may not be: a file.
RUN nginx -t -q -c /etc/nginx-usage/nginx.conf > /tmp/nginx-t.log 2>&1 \
    || { cat /tmp/nginx-t.log; exit 1; }; \
    rm -f /tmp/nginx-t.log

EXPOSE 8080

# container liveness; the balancer's target health is /ready.  nginx is up
# in well under a second (a large state file: a few), and only 3 failures
# in a row, 90 s, make the container unhealthy: no --start-period needed.
HEALTHCHECK --interval=30s --timeout=3s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "--max-time", "2", "http://127.0.0.1:8080/health"]

# graceful: workers finish their requests, the store is saved.  Before it,
# the orchestrator's pre-stop hook drains the task (README, "Deploying"):
#     touch /run/nginx-usage/drain; sleep <deregistration delay>
STOPSIGNAL SIGQUIT

CMD ["nginx", "-c", "/etc/nginx-usage/nginx.conf", "-g", "daemon off;"]
