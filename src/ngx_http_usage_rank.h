
/*
 * The entities ranked by their events (or value) in a range: the read of
 * GET /v1/entities.
 */


#ifndef _NGX_HTTP_USAGE_RANK_H_INCLUDED_
#define _NGX_HTTP_USAGE_RANK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_store.h"


/* entities read in one hold of the zone's lock */
#define NGX_HTTP_USAGE_RANK_CHUNK  1024


typedef struct {
    ngx_str_t                    entity;
    uint64_t                     count;
    double                       value;
    int64_t                      last;         /* createdAt of its last
                                                  event, ms */
} ngx_http_usage_rank_row_t;


typedef struct {
    int64_t                      since;        /* inclusive, ms */
    int64_t                      until;
    ngx_uint_t                   by_value;
    ngx_uint_t                   limit;
    ngx_str_t                   *only;         /* a scope's entity */
    ngx_http_usage_rank_row_t   *after;        /* a cursor's row, or NULL */

    ngx_array_t                  rows;         /* out: rank_row_t, ranked */
    ngx_uint_t                   more;         /* out: a row follows */
    ngx_uint_t                   entities;     /* out: entities read */
} ngx_http_usage_rank_t;


ngx_int_t ngx_http_usage_store_rank(ngx_http_usage_zone_t *zone,
    ngx_pool_t *pool, ngx_http_usage_rank_t *q, int64_t now);


#endif /* _NGX_HTTP_USAGE_RANK_H_INCLUDED_ */
