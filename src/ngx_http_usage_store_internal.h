
/*
 * The layout of a usage zone: the trees, queues and the ring that the
 * store's files (store, query, state) share, and the functions they call
 * in each other with the zone's lock held.  No other file includes it.
 */


#ifndef _NGX_HTTP_USAGE_STORE_INTERNAL_H_INCLUDED_
#define _NGX_HTTP_USAGE_STORE_INTERNAL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_store.h"
#include "ngx_http_usage_query.h"
#include "ngx_http_usage_siphash.h"
#include "ngx_http_usage_fleet.h"


/* eventsLastHour: one counter per minute, in a circle */
#define NGX_HTTP_USAGE_MINUTE_SLOTS      128

typedef struct ngx_http_usage_entity_s  ngx_http_usage_entity_t;
typedef struct ngx_http_usage_type_s    ngx_http_usage_type_t;
typedef struct ngx_http_usage_series_s  ngx_http_usage_series_t;
typedef struct ngx_http_usage_idx_s     ngx_http_usage_idx_t;


/* count and value sum of one series' events in one minute or hour */
typedef struct {
    ngx_queue_t                  queue;        /* series', by start */
    ngx_queue_t                  raw;          /* raw events still stored */
    int64_t                      start;        /* ms, aligned to span */
    uint64_t                     count;
    double                       value;
    uint32_t                     raw_count;
    uint32_t                     span;         /* MINUTE or HOUR, in ms */
} ngx_http_usage_bucket_t;


/* one event type of one entity */
struct ngx_http_usage_series_s {
    ngx_queue_t                  queue;        /* entity's series */
    ngx_queue_t                  buckets;
    ngx_http_usage_entity_t     *entity;
    ngx_http_usage_type_t       *type;
    uint32_t                     raw_refs;     /* raw events pointing here */
    uint32_t                     count;        /* the sums of its buckets, */
    double                       value;        /* kept by every change of
                                                  one: a summary of the
                                                  whole window reads them
                                                  instead of the buckets */
};


/*
 * 32 bits of count keep a series in a 64-byte slab slot.  Past them (four
 * billion events of one type of one entity in the window) the sums are
 * given up, and summaries read the buckets, until the series has no
 * bucket left.
 */
#define NGX_HTTP_USAGE_SUMS_LOST         NGX_MAX_UINT32_VALUE

static ngx_inline void
ngx_http_usage_series_add(ngx_http_usage_series_t *s, uint64_t count,
    double value)
{
    if (s->count == NGX_HTTP_USAGE_SUMS_LOST) {
        return;
    }

    if (count >= (uint64_t) (NGX_HTTP_USAGE_SUMS_LOST - s->count)) {
        s->count = NGX_HTTP_USAGE_SUMS_LOST;
        s->value = 0;
        return;
    }

    s->count += count;
    s->value += value;
}


static ngx_inline void
ngx_http_usage_series_sub(ngx_http_usage_series_t *s, uint64_t count,
    double value)
{
    if (s->count == NGX_HTTP_USAGE_SUMS_LOST) {
        return;
    }

    s->count -= ngx_min(s->count, count);
    s->value -= value;

    if (s->count == 0) {
        /* no rounding left over from the additions and subtractions */
        s->value = 0;
    }
}


struct ngx_http_usage_entity_s {
    ngx_rbtree_node_t            node;         /* key: crc32 of the name */
    ngx_queue_t                  lru;          /* least recently updated
                                                  first */
    ngx_queue_t                  series;       /* first seen first */
    ngx_queue_t                  raw;          /* its raw events, oldest
                                                  first */
    ngx_uint_t                   raw_count;
    int64_t                      updated;      /* receipt of its last event */
    int64_t                      compacted;    /* minute of last compaction */
    int64_t                      min_end;      /* the earliest end of its
                                                  buckets (or earlier): once
                                                  the window passes it, one
                                                  has to leave */
    ngx_uint_t                   mark;         /* scratch: state file index */
    uint32_t                     nseries;      /* its event types */
    uint32_t                     nbuckets;     /* of all its series */
    u_short                      len;
    u_char                       data[1];
};


struct ngx_http_usage_type_s {
    ngx_rbtree_node_t            node;
    ngx_queue_t                  order;        /* all types, first seen
                                                  first */
    ngx_queue_t                  buckets;      /* hour buckets: its total */
    uint64_t                     count;        /* events in the window */
    ngx_uint_t                   raw_count;    /* raw events stored */
    ngx_uint_t                   refs;         /* series of this type */
    ngx_uint_t                   mark;
    u_char                       plain;        /* the name needs no JSON
                                                  escape */
    u_short                      len;          /* data follows len: see
                                                  name_lookup() */
    u_char                       data[1];
};


/*
 * A raw event in the ring: 120 bytes, then what only some events need
 * (a retention tree node if back-dated, a pointer to its id's index entry
 * if it has a client id, its levels of the log's skip list), its client
 * id and its metadata, the whole padded to 8 bytes.
 */
typedef struct ngx_http_usage_raw_s  ngx_http_usage_raw_t;

struct ngx_http_usage_raw_s {
    uint32_t                     size;
    uint16_t                     flags;        /* and the levels */
    uint16_t                     id_len;
    uint32_t                     metadata_len;
    uint32_t                     reserved;
    ngx_queue_t                  queue;        /* all, by createdAt */
    ngx_queue_t                  entity_queue;
    ngx_queue_t                  bucket_queue;
    ngx_http_usage_series_t     *series;
    ngx_http_usage_bucket_t     *bucket;       /* NULL once detached */
    int64_t                      time;         /* event time, ms */
    int64_t                      created;      /* receipt, ms */
    double                       value;
    u_char                       uuid[16];
    u_char                       data[1];
};

#define NGX_HTTP_USAGE_RAW_HEADER  offsetof(ngx_http_usage_raw_t, data)

/*
 * An event whose client time is earlier than its receipt leaves the window
 * before the records ahead of it in the ring: it carries a tree node (at
 * the start of its data) that orders it by time for retention.
 */
#define NGX_HTTP_USAGE_RAW_BACKDATED  0x0001

/*
 * A record out of the log whose bytes wait for the ring's head: the head
 * moves over dead records only.  Without usage_sync they are back-dated
 * records that left by their time; with it, also records that left by
 * createdAt order ahead of records stored before them (an event from
 * another instance is linked where its createdAt puts it, section 4.6.3
 * of docs/FLEET-DESIGN.md).
 */
#define NGX_HTTP_USAGE_RAW_DEAD       0x0002

/* bits 8 to 11 of the flags: the record's levels above the log's queue in
 * the skip list that seeks a cursor's place (ngx_http_usage_skip.c) */
#define NGX_HTTP_USAGE_RAW_LEVEL_SHIFT  8
#define NGX_HTTP_USAGE_SKIP_LEVELS      15

#define ngx_http_usage_raw_levels(raw)                                       \
    (((raw)->flags >> NGX_HTTP_USAGE_RAW_LEVEL_SHIFT) & 0x0f)

#define ngx_http_usage_raw_extra(backdated, id_len, levels)                  \
    (((backdated) ? sizeof(ngx_rbtree_node_t) : 0)                           \
     + ((id_len) ? sizeof(ngx_http_usage_idx_t *) : 0)                       \
     + (levels) * sizeof(ngx_http_usage_raw_t *))
#define ngx_http_usage_raw_idx(raw)                                          \
    ((ngx_http_usage_idx_t **)                                               \
     ((raw)->data + (((raw)->flags & NGX_HTTP_USAGE_RAW_BACKDATED)           \
                     ? sizeof(ngx_rbtree_node_t) : 0)))
#define ngx_http_usage_raw_tower(raw)                                        \
    ((ngx_http_usage_raw_t **)                                               \
     ((raw)->data                                                            \
      + ngx_http_usage_raw_extra((raw)->flags & NGX_HTTP_USAGE_RAW_BACKDATED,\
                                 (raw)->id_len, 0)))
#define ngx_http_usage_raw_id(raw)                                           \
    ((raw)->data                                                             \
     + ngx_http_usage_raw_extra((raw)->flags & NGX_HTTP_USAGE_RAW_BACKDATED, \
                                (raw)->id_len, ngx_http_usage_raw_levels(raw)))
#define ngx_http_usage_raw_size(rec, levels)                                 \
    ngx_align(NGX_HTTP_USAGE_RAW_HEADER                                      \
              + ngx_http_usage_raw_extra((rec)->time < (rec)->created,       \
                                         (rec)->id.len, levels)              \
              + (rec)->id.len + (rec)->metadata.len, 8)


/*
 * A client id recorded for an entity: idempotent ingestion.  The entity
 * and the id themselves follow the entry: a hit is a hit only if they are
 * equal, whatever the hash says.
 */
struct ngx_http_usage_idx_s {
    ngx_rbtree_node_t            node;         /* key: the hash, truncated */
    ngx_queue_t                  queue;        /* oldest first */
    uint64_t                     hash;         /* keyed, of entity and id */
    int64_t                      time;         /* event time: retention */
    ngx_http_usage_raw_t        *raw;          /* NULL once out of the log */
    u_short                      entity_len;
    u_short                      id_len;
    u_char                       data[1];      /* entity, then id */
};


/*
 * A build for the tests (-DNGX_HTTP_USAGE_ID_HASH_BITS=4) keeps only a few
 * bits of the hash, so that distinct ids collide all the time.
 */
#ifndef NGX_HTTP_USAGE_ID_HASH_BITS
#define NGX_HTTP_USAGE_ID_HASH_BITS      64
#endif


struct ngx_http_usage_shctx_s {
    ngx_rbtree_t                 entities;
    ngx_rbtree_node_t            entities_sentinel;
    ngx_rbtree_t                 types;
    ngx_rbtree_node_t            types_sentinel;
    ngx_rbtree_t                 ids;
    ngx_rbtree_node_t            ids_sentinel;
    ngx_rbtree_t                 backdated;    /* raw events, by time */
    ngx_rbtree_node_t            backdated_sentinel;

    ngx_queue_t                  types_order;
    ngx_queue_t                 *type_cursor;  /* next type to expire */
    ngx_queue_t                  lru;          /* entities */
    ngx_queue_t                  raw;          /* the log, oldest first */
    ngx_queue_t                  ids_order;

    /* the ring of raw events */
    u_char                      *ring;
    u_char                      *ring_end;
    u_char                      *ring_head;    /* oldest record */
    u_char                      *ring_tail;    /* next record goes here */
    u_char                      *ring_wrap;    /* end of data before the
                                                  wrap, or NULL */
    size_t                       ring_used;
    uint64_t                     ring_laps;    /* times the tail went back
                                                  to the ring's start */

    /* the log's skip list: each level's first and last record */
    ngx_http_usage_raw_t        *skip_head[NGX_HTTP_USAGE_SKIP_LEVELS];
    ngx_http_usage_raw_t        *skip_tail[NGX_HTTP_USAGE_SKIP_LEVELS];
    uint32_t                     log_epoch;    /* random, new with every
                                                  ring built: positions of
                                                  another are not ours */

    ngx_uint_t                   raw_count;
    ngx_uint_t                   entity_count;
    ngx_uint_t                   type_count;
    ngx_uint_t                   bucket_count;
    ngx_uint_t                   id_count;
    size_t                       id_bytes;     /* slab slots of the ids */

    uint64_t                     total;        /* events in the window */
    int64_t                      minute_start[NGX_HTTP_USAGE_MINUTE_SLOTS];
    uint64_t                     minute_count[NGX_HTTP_USAGE_MINUTE_SLOTS];

    int64_t                      start_time;   /* of the data set, ms */
    int64_t                      last_created; /* keeps createdAt monotonic */
    int64_t                      expired_at;   /* the clock of the last
                                                  retention pass */

    uint64_t                     recorded;
    uint64_t                     duplicates;
    uint64_t                     raw_evicted;
    uint64_t                     raw_expired;
    uint64_t                     buckets_evicted;
    uint64_t                     buckets_expired;
    uint64_t                     ids_evicted;
    ngx_atomic_t                 dropped;      /* also counted unlocked */
    uint64_t                     entity_limited; /* refused by an entity's
                                                    bounds (not saved) */

    /* the state file: what changed since it was saved, and who saves */
    uint64_t                     changes;
    uint64_t                     saved_changes;
    int64_t                      saved_at;
    uint64_t                     saves;
    uint64_t                     dataset;      /* random, kept by copies */
    ngx_http_usage_sipkey_t      id_key;       /* of the ids' hash: random,
                                                  never saved (a copy
                                                  hashes anew) */
    ngx_http_usage_sipkey_t      cursor_key;   /* signs cursors without
                                                  usage_cursor_key: random,
                                                  never saved */
    uint32_t                     generation;   /* copies since it began */
    ngx_atomic_t                 saver;        /* pid saving now, or 0 */

    int64_t                      full_warned;  /* rate limit of the warning */
    uint64_t                     full_since_warned;

    ngx_http_usage_traffic_t     traffic;
    ngx_http_usage_sync_shm_t    sync;
    ngx_http_usage_fleet_t      *fleet;        /* with usage_sync only */

    /*
     * The pid of the lock's holder while it may change the store.  Found
     * set by the next holder, it names a process that died in the middle
     * of a change (SIGKILL, a crash), whose lock nginx's master freed.
     */
    ngx_pid_t                    changer;
    uint64_t                     torn;         /* such changes found */
};


/*
 * A live record's place in the ring counted from the ring's first byte
 * ever: the order the records were stored in, which without usage_sync is
 * the log's order inside one millisecond.  A cursor needs it to tell
 * apart the events of a millisecond (a batch's share one createdAt): 32
 * bits of it, in units of 8 bytes, compared as serial numbers.
 */
static ngx_inline uint32_t
ngx_http_usage_raw_seq(ngx_http_usage_shctx_t *sh, ngx_http_usage_raw_t *raw)
{
    uint64_t  lap;

    lap = sh->ring_laps;

    /* [head, wrap) is the lap before the tail's */
    if (sh->ring_wrap && (u_char *) raw >= sh->ring_head) {
        lap--;
    }

    return (uint32_t) ((lap * (uint64_t) (sh->ring_end - sh->ring)
                        + (uint64_t) ((u_char *) raw - sh->ring)) >> 3);
}


/*
 * Two uuids in memcmp()'s order, as two 64-bit integers: with usage_sync
 * the events of one millisecond are ordered by uuid, and an insert
 * compares its way to its place through dozens of them.  The bytes are
 * read most significant first, which compilers turn into one load and a
 * byte swap.
 */

static ngx_inline uint64_t
ngx_http_usage_uuid_half(const u_char *p)
{
    return ((uint64_t) p[0] << 56) | ((uint64_t) p[1] << 48)
           | ((uint64_t) p[2] << 40) | ((uint64_t) p[3] << 32)
           | ((uint64_t) p[4] << 24) | ((uint64_t) p[5] << 16)
           | ((uint64_t) p[6] << 8) | (uint64_t) p[7];
}


static ngx_inline int
ngx_http_usage_uuid_cmp(const u_char *a, const u_char *b)
{
    uint64_t  x, y;

    x = ngx_http_usage_uuid_half(a);
    y = ngx_http_usage_uuid_half(b);

    if (x == y) {
        x = ngx_http_usage_uuid_half(a + 8);
        y = ngx_http_usage_uuid_half(b + 8);
    }

    return (x > y) - (x < y);
}


/* the zone of the same name in the running cycle, if its size differs */
ngx_http_usage_zone_t *ngx_http_usage_store_old_zone(
    ngx_shm_zone_t *shm_zone);

/* the zone lock of every file of the store (see ngx_http_usage_store.c) */
void ngx_http_usage_store_lock(ngx_http_usage_zone_t *zone);
void ngx_http_usage_store_unlock(ngx_http_usage_zone_t *zone);

/* shared with the reading and persisting files, lock held */
void ngx_http_usage_expire_locked(ngx_http_usage_zone_t *zone, int64_t now);
void ngx_http_usage_store_expire_types_locked(ngx_http_usage_zone_t *zone,
    int64_t now);
ngx_http_usage_entity_t *ngx_http_usage_entity_lookup(
    ngx_http_usage_shctx_t *sh, ngx_str_t *name);
ngx_http_usage_type_t *ngx_http_usage_type_lookup(
    ngx_http_usage_shctx_t *sh, ngx_str_t *name);
ngx_uint_t ngx_http_usage_compact_due(ngx_http_usage_zone_t *zone,
    ngx_http_usage_entity_t *entity, int64_t now);
void ngx_http_usage_compact_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_entity_t *entity, int64_t now);
ngx_int_t ngx_http_usage_entity_sum_init(ngx_pool_t *pool,
    ngx_array_t *pieces);
ngx_int_t ngx_http_usage_entity_sum_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_range_t *q, ngx_http_usage_entity_t *entity,
    ngx_array_t *pieces, int64_t now);
ngx_int_t ngx_http_usage_copy_raw(ngx_pool_t *pool,
    ngx_http_usage_record_t *rec, ngx_http_usage_raw_t *raw);

/* used by the state file loader to rebuild a store, lock held */
void ngx_http_usage_store_clear_locked(ngx_http_usage_zone_t *zone);
ngx_http_usage_entity_t *ngx_http_usage_entity_hold_locked(
    ngx_http_usage_zone_t *zone, ngx_str_t *name, int64_t now);
ngx_http_usage_series_t *ngx_http_usage_series_get_locked(
    ngx_http_usage_zone_t *zone, ngx_http_usage_entity_t *entity,
    ngx_str_t *type_name);
ngx_http_usage_bucket_t *ngx_http_usage_bucket_get_locked(
    ngx_http_usage_zone_t *zone, ngx_http_usage_series_t *series,
    int64_t start, uint32_t span);
ngx_http_usage_type_t *ngx_http_usage_type_get_locked(
    ngx_http_usage_zone_t *zone, ngx_str_t *name,
    ngx_http_usage_entity_t *pin);
ngx_int_t ngx_http_usage_type_add_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_type_t *type, int64_t start, uint64_t count);
void ngx_http_usage_store_full(ngx_http_usage_zone_t *zone, ngx_log_t *log);
void ngx_http_usage_series_release_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_series_t *series);
ngx_uint_t ngx_http_usage_entity_release_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_entity_t *entity);
void ngx_http_usage_type_release_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_type_t *type);
ngx_http_usage_bucket_t *ngx_http_usage_bucket_lookup(
    ngx_http_usage_series_t *series, int64_t start, uint32_t span);
ngx_http_usage_raw_t *ngx_http_usage_raw_append_locked(
    ngx_http_usage_zone_t *zone, ngx_http_usage_series_t *series,
    ngx_http_usage_bucket_t *bucket, ngx_http_usage_record_t *rec);
ngx_http_usage_idx_t *ngx_http_usage_idx_add_locked(
    ngx_http_usage_zone_t *zone, uint64_t hash, ngx_str_t *entity,
    ngx_str_t *id, int64_t time, ngx_http_usage_raw_t *raw,
    ngx_http_usage_entity_t *pin);
uint64_t ngx_http_usage_idx_hash(ngx_http_usage_shctx_t *sh,
    ngx_str_t *entity, ngx_str_t *id);


#endif /* _NGX_HTTP_USAGE_STORE_INTERNAL_H_INCLUDED_ */
