
/*
 * The usage store: events in a shared-memory slab zone, shared by all
 * worker processes and kept across reloads.  No HTTP in here.
 *
 * Every public function takes the zone's slab mutex itself, does only
 * look-ups, links and copies under it, and returns copies allocated from
 * the caller's pool, so that rendering happens outside the lock.
 */


#ifndef _NGX_HTTP_USAGE_STORE_H_INCLUDED_
#define _NGX_HTTP_USAGE_STORE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_HTTP_USAGE_ENTITY_MAX_BYTES  (255 * 4)
#define NGX_HTTP_USAGE_TYPE_MAX_BYTES    (100 * 4)

#define NGX_HTTP_USAGE_MINUTE            60000
#define NGX_HTTP_USAGE_HOUR              3600000
#define NGX_HTTP_USAGE_DAY               86400000


/* an entity or an event type: a name, counted, in a tree keyed by hash */
typedef struct {
    ngx_rbtree_node_t            node;
    /* entity: its events, oldest first; type: all types, first seen first */
    ngx_queue_t                  queue;
    ngx_uint_t                   count;
    /* per-query tally, valid only while tally_gen is the query's: a worker
     * that dies mid-query leaves nothing that needs cleaning */
    ngx_uint_t                   tally;
    ngx_uint_t                   tally_gen;
    u_short                      len;
    u_char                       data[1];
} ngx_http_usage_key_t;


typedef struct {
    ngx_queue_t                  queue;         /* all, oldest first */
    ngx_queue_t                  entity_queue;  /* entity's, oldest first */
    ngx_http_usage_key_t        *entity;
    ngx_http_usage_key_t        *type;
    int64_t                      created;       /* epoch ms */
    u_char                       id[16];
    uint32_t                     metadata_len;
    u_char                       metadata[1];   /* serialized JSON object */
} ngx_http_usage_event_t;


typedef struct {
    ngx_rbtree_t                 entities;
    ngx_rbtree_node_t            entities_sentinel;
    ngx_rbtree_t                 types;
    ngx_rbtree_node_t            types_sentinel;
    ngx_queue_t                  types_order;

    ngx_queue_t                  events;
    ngx_uint_t                   count;
    ngx_uint_t                   entity_count;

    /* the oldest event of the last hour and how many follow it, moved
     * forward as time passes: eventsLastHour without a walk */
    ngx_queue_t                 *hour;
    ngx_uint_t                   hour_count;

    ngx_uint_t                   tally_gen;

    int64_t                      start_time;     /* epoch ms of the data set */
    int64_t                      last_created;   /* keeps createdAt monotonic */

    uint64_t                     recorded;
    uint64_t                     evicted;
    uint64_t                     expired;
    ngx_atomic_t                 dropped;        /* also counted unlocked */
} ngx_http_usage_shctx_t;


typedef struct {
    ngx_http_usage_shctx_t      *sh;
    ngx_slab_pool_t             *shpool;
    ngx_uint_t                   max_events;
    int64_t                      retention;      /* ms */
} ngx_http_usage_zone_t;


/* an event as given to insert, or as copied out of the zone */
typedef struct {
    u_char                       id[16];
    ngx_str_t                    entity;
    ngx_str_t                    type;
    ngx_str_t                    metadata;
    int64_t                      created;
} ngx_http_usage_record_t;


typedef struct {
    ngx_str_t                    name;
    ngx_uint_t                   count;
} ngx_http_usage_count_t;


typedef struct {
    int64_t                      time;
    ngx_uint_t                   count;
} ngx_http_usage_bucket_t;


typedef struct {
    ngx_str_t                   *entity;         /* NULL: any */
    ngx_str_t                   *type;           /* NULL: any */
    ngx_uint_t                   offset;
    ngx_uint_t                   limit;

    ngx_uint_t                   total;          /* out */
    ngx_array_t                  records;        /* out: record_t */
} ngx_http_usage_list_t;


typedef struct {
    ngx_str_t                    entity;
    int64_t                      since;          /* inclusive, ms */
    int64_t                      until;          /* inclusive, ms */
    int64_t                      bucket;         /* history: bucket size, ms */

    ngx_uint_t                   total;          /* out */
    ngx_array_t                  counts;         /* out: count_t (summary) */
    ngx_array_t                  buckets;        /* out: bucket_t (history) */
} ngx_http_usage_range_t;


typedef struct {
    ngx_uint_t                   total;
    ngx_uint_t                   last_hour;
    ngx_uint_t                   entities;
    int64_t                      start_time;
    ngx_uint_t                   max_events;
    uint64_t                     recorded;
    uint64_t                     evicted;
    uint64_t                     expired;
    uint64_t                     dropped;
    size_t                       bytes_used;
    size_t                       bytes_free;
    ngx_array_t                  types;          /* count_t, first seen first */
} ngx_http_usage_stats_t;


ngx_int_t ngx_http_usage_store_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);

ngx_int_t ngx_http_usage_store_insert(ngx_http_usage_zone_t *zone,
    ngx_http_usage_record_t *rec, int64_t now);
ngx_int_t ngx_http_usage_store_list(ngx_http_usage_zone_t *zone,
    ngx_pool_t *pool, ngx_http_usage_list_t *q, int64_t now);
ngx_int_t ngx_http_usage_store_summary(ngx_http_usage_zone_t *zone,
    ngx_pool_t *pool, ngx_http_usage_range_t *q, int64_t now);
ngx_int_t ngx_http_usage_store_history(ngx_http_usage_zone_t *zone,
    ngx_pool_t *pool, ngx_http_usage_range_t *q, int64_t now);
ngx_int_t ngx_http_usage_store_stats(ngx_http_usage_zone_t *zone,
    ngx_pool_t *pool, ngx_http_usage_stats_t *st, ngx_uint_t with_types,
    int64_t now);

size_t ngx_http_usage_store_event_max(ngx_slab_pool_t *shpool);
int64_t ngx_http_usage_store_start_time(ngx_http_usage_zone_t *zone);

/* bytes of zone an event takes beyond its metadata: the event record, its
 * slab slot rounding; used to warn about zones too small for the limits */
#define NGX_HTTP_USAGE_EVENT_OVERHEAD    256
void ngx_http_usage_store_count_drop(ngx_http_usage_zone_t *zone);


#endif /* _NGX_HTTP_USAGE_STORE_H_INCLUDED_ */
