
/*
 * What the module reads of a request: its context, its path as sent, its
 * headers and its body limit.  Everything above (routing, replies,
 * handlers, filters) reads a request through these.
 */


#ifndef _NGX_HTTP_USAGE_REQUEST_H_INCLUDED_
#define _NGX_HTTP_USAGE_REQUEST_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_usage_module.h"


ngx_http_usage_ctx_t *ngx_http_usage_get_ctx(ngx_http_request_t *r);
ngx_int_t ngx_http_usage_request_path(ngx_http_request_t *r,
    ngx_str_t *path);
ngx_table_elt_t *ngx_http_usage_find_header(ngx_http_request_t *r,
    u_char *name, size_t len);
off_t ngx_http_usage_body_limit(ngx_http_request_t *r);
ngx_int_t ngx_http_usage_request_body(ngx_http_request_t *r,
    ngx_str_t *body);

/* the format of a POST's body: NGX_HTTP_USAGE_BODY_* (body.h) */
ngx_uint_t ngx_http_usage_body_format(ngx_http_request_t *r);

/*
 * A request that waits for the zone, polling it on a timer of its
 * connection's write event, as limit_req delays a request: the worker
 * goes on serving, and a client that closes ends the wait.  poll() runs
 * at every write event: it goes on only when wait_due() says the timer
 * fired, then either waits again or ends the wait before it answers.
 */
void ngx_http_usage_wait(ngx_http_request_t *r,
    ngx_http_event_handler_pt poll, ngx_msec_t every);
ngx_uint_t ngx_http_usage_wait_due(ngx_http_request_t *r);
void ngx_http_usage_wait_again(ngx_http_request_t *r, ngx_msec_t every);
void ngx_http_usage_wait_end(ngx_http_request_t *r);


/*
 * The path of the request line, its query cut off.  nginx noted where the
 * arguments start as it parsed the line (or its %-escapes), so a client
 * request needs no search; a subrequest shares its parent's line but not
 * that note.  Inline: the router and the tracking handler run it on
 * every request.
 */

static ngx_inline void
ngx_http_usage_cut_query(ngx_http_request_t *r, ngx_str_t *path)
{
    u_char  *q;

    if (r->args_start > path->data
        && r->args_start <= path->data + path->len
        && r->args_start[-1] == '?')
    {
        path->len = r->args_start - 1 - path->data;
        return;
    }

    if (r->args_start == NULL && r == r->main) {
        return;     /* no '?' in the request line */
    }

    q = ngx_strlchr(path->data, path->data + path->len, '?');
    if (q) {
        path->len = q - path->data;
    }
}


#endif /* _NGX_HTTP_USAGE_REQUEST_H_INCLUDED_ */
