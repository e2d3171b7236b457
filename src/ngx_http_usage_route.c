
/*
 * Routing of the API.  Routes are matched on the path as the client sent
 * it (see ngx_http_usage_route()), never on what a rewrite made of it,
 * and a path that nginx had to normalise is routed only if it names the
 * location nginx chose for it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"
#include "ngx_http_usage_request.h"
#include "ngx_http_usage_route.h"
#include "ngx_http_usage_uri.h"


static ngx_uint_t ngx_http_usage_route_path(ngx_http_request_t *r,
    ngx_str_t *path, ngx_uint_t *raw);


/* route words match case-insensitively; each literal is in lower case */
#define ngx_http_usage_is(s, lit)                                            \
    ((s)->len == sizeof(lit) - 1                                             \
     && ngx_http_usage_word((s)->data, lit, sizeof(lit) - 1))


static ngx_inline ngx_uint_t
ngx_http_usage_word(u_char *s, const char *lit, size_t n)
{
    u_char  c;
    size_t  i;

    /* inlined where the literal is known: a few instructions a byte,
     * where ngx_strncasecmp() lowers both sides in a call */
    for (i = 0; i < n; i++) {
        c = s[i];

        if (c >= 'A' && c <= 'Z') {
            c |= 0x20;
        }

        if (c != (u_char) lit[i]) {
            return 0;
        }
    }

    return 1;
}


/* /health and /ready are the balancer's probes: never self-tracked */

ngx_uint_t
ngx_http_usage_untracked_route(ngx_http_request_t *r)
{
    ngx_str_t              path;
    ngx_uint_t             raw;
    ngx_http_usage_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_usage_module);

    if (ctx && ctx->routed) {
        return ctx->untracked;
    }

    /* not routed (refused before the content phase): the two words, on
     * a path that would be routed */
    if (ngx_http_usage_route_path(r, &path, &raw) != NGX_HTTP_USAGE_PATH_SAME)
    {
        return 0;
    }

    if (path.len > 1 && path.data[path.len - 1] == '/') {
        path.len--;
    }

    return ngx_http_usage_is(&path, "/health")
           || ngx_http_usage_is(&path, "/ready");
}


/*
 * Routes are matched on the path as the client sent it, so that %2F in an
 * entity id stays inside its segment, as in Express; after a rewrite or an
 * internal redirect the (decoded) current URI is all there is.  Route words
 * match case-insensitively and one trailing slash is tolerated, as Express's
 * default router does.
 */

void
ngx_http_usage_route(ngx_http_request_t *r, ngx_http_usage_route_t *rt)
{
    u_char      *slash;
    ngx_str_t    path, rest, tail;
    ngx_uint_t   raw;

    ngx_memzero(rt, sizeof(ngx_http_usage_route_t));

    switch (ngx_http_usage_route_path(r, &rt->path, &raw)) {

    case NGX_HTTP_USAGE_PATH_SAME:
        break;

    case NGX_HTTP_USAGE_PATH_DOTS:
        rt->dots = 1;
        return;

    default: /* NGX_HTTP_USAGE_PATH_OTHER */
        return;     /* an unknown route */
    }

    rt->raw = raw;

    path = rt->path;

    if (path.len > 1 && path.data[path.len - 1] == '/') {
        path.len--;
    }

    if (ngx_http_usage_is(&path, "/")) {
        rt->route = NGX_HTTP_USAGE_ROUTE_ROOT;

    } else if (ngx_http_usage_is(&path, "/health")) {
        rt->route = NGX_HTTP_USAGE_ROUTE_HEALTH;

    } else if (ngx_http_usage_is(&path, "/ready")) {
        rt->route = NGX_HTTP_USAGE_ROUTE_READY;

    } else if (ngx_http_usage_is(&path, "/info")) {
        rt->route = NGX_HTTP_USAGE_ROUTE_INFO;

    } else if (ngx_http_usage_is(&path, "/docs")) {
        rt->route = NGX_HTTP_USAGE_ROUTE_DOCS;

    } else if (ngx_http_usage_is(&path, "/openapi.json")) {
        rt->route = NGX_HTTP_USAGE_ROUTE_OPENAPI;

    } else if (ngx_http_usage_is(&path, "/dashboard")) {
        rt->route = NGX_HTTP_USAGE_ROUTE_DASHBOARD;

    } else if (ngx_http_usage_is(&path, "/v1/events")) {
        rt->route = NGX_HTTP_USAGE_ROUTE_EVENTS;

    } else if (ngx_http_usage_is(&path, "/v1/events/batch")) {
        rt->route = NGX_HTTP_USAGE_ROUTE_BATCH;

    } else if (ngx_http_usage_is(&path, "/v1/entities")) {
        rt->route = NGX_HTTP_USAGE_ROUTE_ENTITIES;

    } else if (path.len > sizeof("/v1/usage/") - 1
               && ngx_http_usage_word(path.data, "/v1/usage/",
                                      sizeof("/v1/usage/") - 1))
    {
        rest.data = path.data + sizeof("/v1/usage/") - 1;
        rest.len = path.len - (sizeof("/v1/usage/") - 1);

        slash = ngx_strlchr(rest.data, rest.data + rest.len, '/');

        if (slash == NULL) {
            rt->route = ngx_http_usage_is(&rest, "stats")
                        ? NGX_HTTP_USAGE_ROUTE_STATS
                        : NGX_HTTP_USAGE_ROUTE_SUMMARY;
            rt->entity = rest;

        } else {
            tail.data = slash + 1;
            tail.len = rest.data + rest.len - tail.data;
            rest.len = slash - rest.data;

            if (rest.len && ngx_http_usage_is(&tail, "history")) {
                rt->route = NGX_HTTP_USAGE_ROUTE_HISTORY;
                rt->entity = rest;
            }
        }
    }
}


/*
 * The path as sent, without the query (*raw = 1), or the current URI.
 * nginx chose the location by the path it decoded and normalised (dot
 * segments removed, slashes merged): a path it had to change is routed
 * only if it is that same path, or "/v1/usage/..%2F..%2Fhealth" would be
 * answered as a summary from "location = /health", which may have no key.
 * NGX_HTTP_USAGE_PATH_DOTS or _OTHER: it must not be routed.  A plain
 * path (no '%', no "/." nor "//") is r->uri as it is: nothing to check.
 */

static ngx_uint_t
ngx_http_usage_route_path(ngx_http_request_t *r, ngx_str_t *path,
    ngx_uint_t *raw)
{
    u_char  *q;

    if (!r->valid_unparsed_uri || r->unparsed_uri.len == 0) {
        *path = r->uri;
        *raw = 0;

        return NGX_HTTP_USAGE_PATH_SAME;
    }

    *path = r->unparsed_uri;
    *raw = 1;
    ngx_http_usage_cut_query(r, path);

    if (!r->main->complex_uri && !r->main->quoted_uri) {
        return NGX_HTTP_USAGE_PATH_SAME;
    }

    /* nginx forgets where the query started when a '#' follows it; an
     * escaped '?' is "%3F", so the first one is the query's */
    q = ngx_strlchr(path->data, path->data + path->len, '?');
    if (q) {
        path->len = q - path->data;
    }

    return ngx_http_usage_path_check(path, &r->uri);
}
