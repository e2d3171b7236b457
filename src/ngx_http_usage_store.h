
/*
 * The usage store: a shared-memory slab zone, shared by all worker
 * processes and kept across reloads.  No HTTP in here.
 *
 * It keeps two things:
 *
 *   - aggregates: per entity and event type, the count and value sum of
 *     events in time buckets (minute buckets for a recent span, hour
 *     buckets for the rest of the retention window), plus per-type totals
 *     for the whole store.  Summaries, histories and stats read these, so
 *     they count every event of the window whatever the raw log holds;
 *
 *   - the raw log: the newest events themselves, in a ring buffer carved
 *     out of the zone, for GET /v1/events and for the exact edges of a
 *     time range.  Oldest first out, no per-event allocation.
 *
 * Every public function takes the zone's slab mutex itself, does only
 * look-ups, links and copies under it, and returns copies allocated from
 * the caller's pool, so that parsing and rendering happen outside the lock.
 * The zone's layout is ngx_http_usage_store_internal.h's, which only the
 * store's own files (store, query, state) include.
 */


#ifndef _NGX_HTTP_USAGE_STORE_H_INCLUDED_
#define _NGX_HTTP_USAGE_STORE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#if (NGX_THREADS)
#include <ngx_thread_pool.h>
#endif

#include "ngx_http_usage_siphash.h"


#define NGX_HTTP_USAGE_ENTITY_MAX_BYTES  (255 * 4)
#define NGX_HTTP_USAGE_TYPE_MAX_BYTES    (100 * 4)
#define NGX_HTTP_USAGE_ID_MAX_BYTES      (128 * 4)

#define NGX_HTTP_USAGE_MINUTE            60000
#define NGX_HTTP_USAGE_HOUR              3600000
#define NGX_HTTP_USAGE_DAY               86400000

/* how far in the future a client's event time may be */
#define NGX_HTTP_USAGE_FUTURE_MAX        (5 * NGX_HTTP_USAGE_MINUTE)

/*
 * The key of a name in the entity and type trees.  CRC32 by the byte
 * table (ngx_crc32_long()): half the steps of ngx_crc32_short()'s
 * nibbles, and the same values, so trees and state files are unchanged.
 */
#define ngx_http_usage_name_hash(p, len)  ngx_crc32_long(p, len)

/* the start of the span-long period that holds t (times may be negative) */
#define ngx_http_usage_floor(t, span)                                        \
    ((t) - (((t) % (span) + (span)) % (span)))

/* resolution of a range answer */
#define NGX_HTTP_USAGE_EXACT             0
#define NGX_HTTP_USAGE_BY_MINUTE         1
#define NGX_HTTP_USAGE_BY_HOUR           2

/* tracked traffic: methods, status classes and latency buckets counted */
#define NGX_HTTP_USAGE_METHODS           8
#define NGX_HTTP_USAGE_STATUS_CLASSES    5
#define NGX_HTTP_USAGE_LATENCY_BUCKETS   12     /* the last one is +Inf */

/* insert results beyond NGX_OK */
#define NGX_HTTP_USAGE_DUPLICATE         1
#define NGX_HTTP_USAGE_LIMIT_TYPES       2   /* the entity has entity_types
                                                types already */
#define NGX_HTTP_USAGE_LIMIT_SHARE       3   /* the entity holds its share
                                                of the aggregates */
#define NGX_HTTP_USAGE_TOO_LARGE         4   /* a batch past half the
                                                raw log */
#define NGX_HTTP_USAGE_HELD_TOO_LARGE    5   /* ack=redis: a batch past
                                                what one stream entry
                                                carries */

/* ack=redis: the bytes of a POST's events in the stream, at most (they
 * go in one entry, so that Redis takes all of them or none) */
#define NGX_HTTP_USAGE_HELD_BYTES        (1024 * 1024)

/* what one series or bucket takes of the zone: a 64-byte slab slot */
#define NGX_HTTP_USAGE_AGGREGATE_SLOT    64


/* what /metrics counts of the fleet's snapshots (ngx_http_usage_snapshot.c) */
typedef struct {
    ngx_atomic_t                 written;
    ngx_atomic_t                 failures;     /* writes and loads */
    ngx_atomic_t                 trimmed;      /* stream entries */
} ngx_http_usage_snapshot_shm_t;


/*
 * The sync engine's state of a zone (ngx_http_usage_sync.c), shared by
 * the workers and changed with atomic operations only: which worker talks
 * to Redis, and how that goes.  Not in the state file.
 */
typedef struct {
    ngx_atomic_t                 owner;        /* pid, or 0 */
    ngx_atomic_t                 owner_generation;
    ngx_atomic_t                 beat;         /* the owner's last tick,
                                                  ngx_current_msec */
    ngx_atomic_t                 generation;   /* cycles that took the zone
                                                  over */
    ngx_atomic_t                 state;
    ngx_atomic_t                 rtt;          /* ms, the last check's */
    ngx_atomic_t                 connects;
    ngx_atomic_t                 failures;
    ngx_atomic_t                 since;        /* unix ms of the state */
    ngx_http_usage_snapshot_shm_t  snapshots;
} ngx_http_usage_sync_shm_t;


/* the zone's store: ngx_http_usage_store_internal.h */
typedef struct ngx_http_usage_shctx_s  ngx_http_usage_shctx_t;


/*
 * Counters of the requests that pass the log phase of a tracked location,
 * for usage_metrics.  Every worker adds to them with atomic operations,
 * never under the lock; they are not part of the state file.  Latency
 * buckets are not cumulative here (the exposition sums them).
 */
typedef struct {
    ngx_atomic_t                 requests[NGX_HTTP_USAGE_METHODS]
                                         [NGX_HTTP_USAGE_STATUS_CLASSES];
    ngx_atomic_t                 latency[NGX_HTTP_USAGE_LATENCY_BUCKETS];
    ngx_atomic_t                 latency_ms;   /* the sum */
} ngx_http_usage_traffic_t;


typedef struct {
    ngx_http_usage_shctx_t      *sh;
    ngx_slab_pool_t             *shpool;
    ngx_str_t                    name;
    size_t                       size;

    /* per cycle: a reload may change these on a live zone */
    ngx_uint_t                   max_events;   /* 0: as many as fit */
    ngx_uint_t                   max_ids;
    size_t                       max_id_bytes; /* what the ids may take */
    ngx_uint_t                   entity_types; /* per entity; 0: no bound */
    ngx_uint_t                   entity_slots; /* series and buckets per
                                                  entity; 0: no bound */
    ngx_uint_t                   entity_share; /* percent, for messages */
    int64_t                      retention;    /* ms */
    int64_t                      minute_span;  /* ms */

    /* fixed for the life of the zone */
    ngx_uint_t                   raw_percent;

    void                        *sync;         /* its usage_sync, or NULL
                                                  (ngx_http_usage_sync.h) */
    size_t                       ship_max;     /* usage_sync buffer= */
    ngx_msec_t                   ack_timeout;  /* usage_sync ack=redis:
                                                  how long a POST waits for
                                                  Redis; 0: it does not */

    ngx_str_t                    state_file;   /* full path, or empty */
    ngx_msec_t                   state_interval;
    ngx_event_t                  save_event;
#if (NGX_THREADS)
    ngx_thread_pool_t           *thread_pool;  /* "default", for saves */
    ngx_thread_task_t           *save_task;
#endif
} ngx_http_usage_zone_t;


/* an event as given to insert, or as copied out of the zone */
typedef struct {
    u_char                       uuid[16];
    ngx_str_t                    id;           /* client id, or empty */
    ngx_str_t                    entity;
    ngx_str_t                    type;
    ngx_str_t                    metadata;
    double                       value;
    int64_t                      time;         /* event time */
    int64_t                      created;      /* receipt */
    ngx_uint_t                   has_time;     /* time given by the client */
    ngx_uint_t                   evicted;      /* duplicate of an event no
                                                  longer in the log */
    ngx_uint_t                   duplicate;    /* of a batch: its id was
                                                  stored already */
    uint32_t                     entity_hash;  /* of the names, when the */
    uint32_t                     type_hash;    /* caller knows them; 0: to
                                                  be computed */
    uint64_t                     origin;       /* with usage_sync: the */
    uint64_t                     seq;          /* event's place in its
                                                  origin's sequence, 0:
                                                  none (not shipped) */
} ngx_http_usage_record_t;


/* a stream entry's events, applied by ngx_http_usage_store_apply() */
typedef struct {
    uint64_t                     origin;
    ngx_uint_t                   republished;  /* events published again
                                                  after a loss: taken by
                                                  uuid, not by seq */
    int64_t                      start;        /* its data set's, or 0 */
    ngx_http_usage_record_t     *recs;         /* with their seqs */
    ngx_uint_t                   n;
    uint64_t                    *voids;        /* seqs of withdrawn events
                                                  (ack=redis): no event,
                                                  their window marks them */
    ngx_uint_t                   nvoids;
    uint64_t                     read_ms;      /* the entry's id: the */
    uint64_t                     read_seq;     /* position once applied */
    ngx_uint_t                   refused;      /* its records that were
                                                  not events */

    /* out */
    ngx_uint_t                   applied;
    ngx_uint_t                   duplicates;   /* seen, or a client id
                                                  stored already */
    ngx_uint_t                   dropped;      /* no room */
} ngx_http_usage_apply_t;


/* what a batch insert did */
typedef struct {
    ngx_uint_t                   stored;
    ngx_uint_t                   duplicates;
    ngx_uint_t                   failed;       /* the index of the event
                                                  that was not stored, or n */
} ngx_http_usage_batch_result_t;


/* a copy of the oldest queued records not sent yet: one batch */
typedef struct {
    u_char                      *data;
    size_t                       len;
    ngx_uint_t                   count;
    uint64_t                     origin;
    uint64_t                     first_seq;
    uint64_t                     last_seq;
    int64_t                      start;        /* the data set's start */
    int64_t                      deadline;     /* ack=redis: the earliest
                                                  of its events' (local
                                                  ms), 0: none */
} ngx_http_usage_ship_batch_t;


/* the fleet's counters and positions of a zone, copied out */
typedef struct {
    uint64_t                     origin;
    uint64_t                     seq;
    uint64_t                     acked_seq;
    uint64_t                     queued;
    size_t                       queued_bytes;
    size_t                       queue_max;
    uint64_t                     read_ms;
    uint64_t                     read_seq;
    ngx_uint_t                   read_tail;
    uint64_t                     shipped;
    uint64_t                     applied;
    uint64_t                     duplicates;
    uint64_t                     dropped;
    uint64_t                     refused;
    uint64_t                     foreign;
    uint64_t                     lost;
    uint64_t                     epoch;
    uint64_t                     epochs;
    uint64_t                     republished;
    ngx_uint_t                   republishing;
    uint64_t                     lag;          /* ms */
    ngx_uint_t                   boot;         /* waits for a snapshot */
    uint64_t                     own_upto;
    uint64_t                     snapshots;    /* loaded */
    ngx_uint_t                   partial;      /* lacks trimmed events */
    uint64_t                     ack_voided;
    uint64_t                     ack_ambiguous;
} ngx_http_usage_fleet_status_t;


/* NGX_OK: the zone's store was taken over; NGX_DONE: it is new and empty */
ngx_int_t ngx_http_usage_store_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
ngx_int_t ngx_http_usage_store_insert(ngx_http_usage_zone_t *zone,
    ngx_pool_t *pool, ngx_http_usage_record_t *rec, int64_t now);
ngx_int_t ngx_http_usage_store_insert_batch(ngx_http_usage_zone_t *zone,
    ngx_pool_t *pool, ngx_http_usage_record_t *recs, ngx_uint_t n,
    int64_t now, ngx_http_usage_batch_result_t *res);
size_t ngx_http_usage_store_event_max(ngx_http_usage_zone_t *zone);
size_t ngx_http_usage_store_ring_size(size_t zone_size,
    ngx_uint_t raw_percent);
int64_t ngx_http_usage_store_start_time(ngx_http_usage_zone_t *zone);
void ngx_http_usage_store_count_drop(ngx_http_usage_zone_t *zone);
ngx_uint_t ngx_http_usage_store_ready(ngx_http_usage_zone_t *zone);
ngx_http_usage_traffic_t *ngx_http_usage_store_traffic(
    ngx_http_usage_zone_t *zone);
ngx_http_usage_sync_shm_t *ngx_http_usage_store_sync(
    ngx_http_usage_zone_t *zone);

/*
 * The fleet's part of the zone (ngx_http_usage_fleet.h), made once a
 * usage_sync names the zone: in the master, after the zone was filled.
 */
ngx_int_t ngx_http_usage_store_fleet_init(ngx_http_usage_zone_t *zone,
    ngx_log_t *log);
ngx_int_t ngx_http_usage_store_fleet_status(ngx_http_usage_zone_t *zone,
    ngx_http_usage_fleet_status_t *st);

/* the sync engine's side: batches out, acknowledgements and entries in */
ngx_int_t ngx_http_usage_store_ship_take(ngx_http_usage_zone_t *zone,
    uint64_t after, ngx_uint_t max, u_char *buf, size_t len,
    ngx_http_usage_ship_batch_t *batch);
ngx_uint_t ngx_http_usage_store_ship_pending(ngx_http_usage_zone_t *zone,
    uint64_t after);
void ngx_http_usage_store_ship_ack(ngx_http_usage_zone_t *zone,
    uint64_t seq);
ngx_uint_t ngx_http_usage_store_reached(ngx_http_usage_zone_t *zone,
    uint64_t origin, uint64_t seq);
ngx_int_t ngx_http_usage_store_apply(ngx_http_usage_zone_t *zone,
    ngx_http_usage_apply_t *entry, int64_t now);
ngx_int_t ngx_http_usage_store_hold(ngx_http_usage_zone_t *zone,
    ngx_pool_t *pool, ngx_http_usage_record_t *recs, ngx_uint_t n,
    int64_t now, ngx_http_usage_batch_result_t *res);
ngx_int_t ngx_http_usage_store_held(ngx_http_usage_zone_t *zone,
    ngx_pool_t *pool, ngx_http_usage_record_t *recs, ngx_uint_t n,
    int64_t now, ngx_msec_t margin, ngx_http_usage_batch_result_t *res);
void ngx_http_usage_store_ship_refused(ngx_http_usage_zone_t *zone,
    int64_t now);
ngx_uint_t ngx_http_usage_store_booting(ngx_http_usage_zone_t *zone);
void ngx_http_usage_store_boot_done(ngx_http_usage_zone_t *zone);
ngx_int_t ngx_http_usage_store_boot_again(ngx_http_usage_zone_t *zone);
void ngx_http_usage_store_partial(ngx_http_usage_zone_t *zone);
void ngx_http_usage_store_skip(ngx_http_usage_zone_t *zone,
    uint64_t read_ms, uint64_t read_seq, ngx_uint_t foreign,
    ngx_uint_t refused);

/*
 * The epoch Redis holds for the stream: NGX_OK, the zone's, the first the
 * zone sees, or another over a stream found intact (only the epoch's key
 * was lost); NGX_DONE: another than the zone read the stream under, so
 * Redis lost the stream: the zone reads it again from its start and
 * publishes its recent events again (*previous: its epoch until then).
 */
ngx_int_t ngx_http_usage_store_epoch(ngx_http_usage_zone_t *zone,
    uint64_t epoch, ngx_uint_t intact, int64_t now, uint64_t *previous);

/* bytes of the ring an event takes beyond its metadata and client id */
size_t ngx_http_usage_store_event_overhead(void);
ngx_http_usage_sipkey_t *ngx_http_usage_store_cursor_key(
    ngx_http_usage_zone_t *zone);


#endif /* _NGX_HTTP_USAGE_STORE_H_INCLUDED_ */
