
/*
 * The raw log's skip list: levels of forward links above the log's own
 * queue, so that a cursor finds its place in O(log n), not by walking
 * from the newest event.  Lock held in every function.
 */


#ifndef _NGX_HTTP_USAGE_SKIP_H_INCLUDED_
#define _NGX_HTTP_USAGE_SKIP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_store_internal.h"
#include "ngx_http_usage_query.h"


/* how a record compares with a key: of an earlier millisecond only, or
 * also of its millisecond up to the key's event */
#define NGX_HTTP_USAGE_SKIP_EARLIER  0
#define NGX_HTTP_USAGE_SKIP_UPTO     1


ngx_uint_t ngx_http_usage_skip_levels(u_char *uuid);
void ngx_http_usage_skip_link_locked(ngx_http_usage_shctx_t *sh,
    ngx_http_usage_raw_t *raw);
void ngx_http_usage_skip_unlink_locked(ngx_http_usage_shctx_t *sh,
    ngx_http_usage_raw_t *raw);
ngx_uint_t ngx_http_usage_skip_before(ngx_http_usage_shctx_t *sh,
    ngx_http_usage_raw_t *raw, ngx_http_usage_list_key_t *key,
    ngx_uint_t how);
ngx_http_usage_raw_t *ngx_http_usage_skip_seek_locked(
    ngx_http_usage_shctx_t *sh, ngx_http_usage_list_key_t *key,
    ngx_uint_t how);
ngx_http_usage_raw_t *ngx_http_usage_skip_seek_event_locked(
    ngx_http_usage_shctx_t *sh, int64_t created, u_char *uuid);
ngx_http_usage_raw_t *ngx_http_usage_skip_find_locked(
    ngx_http_usage_shctx_t *sh, int64_t created, u_char *uuid);


#endif /* _NGX_HTTP_USAGE_SKIP_H_INCLUDED_ */
