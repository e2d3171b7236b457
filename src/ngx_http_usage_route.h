
/*
 * Routing of the API: which route a request's path names, matched on the
 * path as the client sent it.
 */


#ifndef _NGX_HTTP_USAGE_ROUTE_H_INCLUDED_
#define _NGX_HTTP_USAGE_ROUTE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


typedef enum {
    NGX_HTTP_USAGE_ROUTE_NONE = 0,
    NGX_HTTP_USAGE_ROUTE_ROOT,
    NGX_HTTP_USAGE_ROUTE_DOCS,
    NGX_HTTP_USAGE_ROUTE_OPENAPI,
    NGX_HTTP_USAGE_ROUTE_DASHBOARD,
    NGX_HTTP_USAGE_ROUTE_HEALTH,
    NGX_HTTP_USAGE_ROUTE_READY,
    NGX_HTTP_USAGE_ROUTE_INFO,
    NGX_HTTP_USAGE_ROUTE_BATCH,
    NGX_HTTP_USAGE_ROUTE_EVENTS,
    NGX_HTTP_USAGE_ROUTE_STATS,
    NGX_HTTP_USAGE_ROUTE_ENTITIES,
    NGX_HTTP_USAGE_ROUTE_SUMMARY,
    NGX_HTTP_USAGE_ROUTE_HISTORY
} ngx_http_usage_route_e;


typedef struct {
    ngx_http_usage_route_e       route;
    ngx_str_t                    path;       /* as routed */
    ngx_str_t                    entity;     /* {entityId} segment */
    unsigned                     raw:1;      /* path is still %-encoded */
    unsigned                     dots:1;     /* a "." or ".." segment */
} ngx_http_usage_route_t;


void ngx_http_usage_route(ngx_http_request_t *r, ngx_http_usage_route_t *rt);
ngx_uint_t ngx_http_usage_untracked_route(ngx_http_request_t *r);


#endif /* _NGX_HTTP_USAGE_ROUTE_H_INCLUDED_ */
