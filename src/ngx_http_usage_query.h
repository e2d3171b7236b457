
/*
 * Reads of the usage store: the event list, an entity's summary and
 * history, the store-wide stats.  Each takes the zone's lock for its
 * look-ups and copies, and returns what it found in the caller's pool.
 */


#ifndef _NGX_HTTP_USAGE_QUERY_H_INCLUDED_
#define _NGX_HTTP_USAGE_QUERY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_store.h"


typedef struct {
    ngx_str_t                    name;
    uint64_t                     count;
    double                       value;
    ngx_uint_t                   plain;        /* the name needs no JSON
                                                  escape */
} ngx_http_usage_count_t;


typedef struct {
    int64_t                      time;
    uint64_t                     count;
    double                       value;
} ngx_http_usage_point_t;


/* an event's place in the list, which a cursor carries */
typedef struct {
    int64_t                      created;
    uint32_t                     seq;            /* see raw_seq() */
    uint32_t                     epoch;          /* of the ring seq is of */
    u_char                       uuid[16];
} ngx_http_usage_list_key_t;


typedef struct {
    ngx_str_t                   *entity;         /* NULL: any */
    ngx_str_t                   *type;           /* NULL: any */
    ngx_uint_t                   offset;
    ngx_uint_t                   limit;
    ngx_uint_t                   by_key;         /* after, not offset */
    ngx_http_usage_list_key_t   *after;          /* NULL: the newest on */

    ngx_uint_t                   total;          /* out, not by_key */
    ngx_uint_t                   more;           /* out, by_key: a match
                                                    follows the last */
    ngx_http_usage_list_key_t    last;           /* out, by_key */
    ngx_array_t                  records;        /* out: record_t */
} ngx_http_usage_list_t;


typedef struct {
    ngx_str_t                    entity;
    int64_t                      since;          /* inclusive, ms */
    int64_t                      until;          /* inclusive, ms */
    int64_t                      interval;       /* history: point size */

    uint64_t                     total;          /* out */
    double                       value;          /* out */
    ngx_uint_t                   resolution;     /* out */
    ngx_array_t                  counts;         /* out: count_t (summary) */
    ngx_array_t                  points;         /* out: point_t (history) */
} ngx_http_usage_range_t;


/* the minutes eventsLastHour counts: the hour, its current minute and
 * the five ahead that client times may reach */
#define NGX_HTTP_USAGE_STATS_MINUTES     66

typedef struct {
    int64_t                      start;          /* ms */
    uint64_t                     count;
} ngx_http_usage_minute_t;


typedef struct {
    uint64_t                     total;
    uint64_t                     last_hour;
    ngx_uint_t                   nminutes;       /* of minute[], ascending */
    ngx_http_usage_minute_t      minute[NGX_HTTP_USAGE_STATS_MINUTES];
    ngx_uint_t                   entities;
    ngx_uint_t                   event_types;    /* held by the store */
    int64_t                      start_time;
    ngx_uint_t                   max_events;
    ngx_uint_t                   raw_events;
    ngx_uint_t                   buckets;
    ngx_uint_t                   ids;
    uint64_t                     recorded;
    uint64_t                     duplicates;
    uint64_t                     raw_evicted;
    uint64_t                     raw_expired;
    uint64_t                     buckets_evicted;
    uint64_t                     buckets_expired;
    uint64_t                     ids_evicted;
    uint64_t                     dropped;
    uint64_t                     entity_limited;
    uint64_t                     torn;
    size_t                       raw_bytes;
    size_t                       raw_bytes_used;
    size_t                       bytes_used;
    size_t                       bytes_free;
    int64_t                      saved_at;
    uint64_t                     saves;
    ngx_array_t                  types;          /* count_t, first seen first */
} ngx_http_usage_stats_t;


ngx_int_t ngx_http_usage_store_list(ngx_http_usage_zone_t *zone,
    ngx_pool_t *pool, ngx_http_usage_list_t *q, int64_t now);
ngx_int_t ngx_http_usage_store_summary(ngx_http_usage_zone_t *zone,
    ngx_pool_t *pool, ngx_http_usage_range_t *q, int64_t now);
ngx_int_t ngx_http_usage_store_history(ngx_http_usage_zone_t *zone,
    ngx_pool_t *pool, ngx_http_usage_range_t *q, int64_t now);
ngx_int_t ngx_http_usage_store_stats(ngx_http_usage_zone_t *zone,
    ngx_pool_t *pool, ngx_http_usage_stats_t *st, ngx_uint_t with_types,
    int64_t now);


#endif /* _NGX_HTTP_USAGE_QUERY_H_INCLUDED_ */
