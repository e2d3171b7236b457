
/*
 * The usage store in a shared-memory slab zone: creating it, writing to
 * it, and keeping it bounded (retention, eviction).
 *
 * Aggregates live in slab allocations: entities and event types in
 * red-black trees keyed by hash with a memcmp tie-break, as in
 * ngx_http_limit_req_module; per entity, one series per event type, each
 * a short list of time buckets.  Raw events live in a ring carved out of
 * the zone once, appended at the tail and reclaimed at the head, so that
 * the log costs no allocation and never fragments the slab.
 *
 * Retention is exact where it can be: an event whose raw record is still
 * in the ring when its time leaves the window is taken out of its buckets
 * at that moment; an event whose record was evicted earlier leaves with
 * its whole bucket.
 *
 * Locking: everything here runs under shpool->mutex, the only lock the
 * master process knows how to recover when a worker dies holding it.
 * Every loop is bounded: eviction and expiry pop from the head of a
 * queue, bucket searches walk at most one series.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_store.h"
#include "ngx_http_usage_store_internal.h"
#include "ngx_http_usage_wire.h"
#include "ngx_http_usage_skip.h"
#include "ngx_http_usage_text.h"


/* how many least recently updated entities an allocation looks at for a
 * bucket to give up */
#define NGX_HTTP_USAGE_EVICT_SCAN       64

/* what one allocation may give up in a full zone, and for which sizes */
#define NGX_HTTP_USAGE_EVICT_MAX        256
#define NGX_HTTP_USAGE_EVICT_SLOT       256

/* at most one "zone is full" warning per this many ms */
#define NGX_HTTP_USAGE_WARN_INTERVAL    60000

#define NGX_HTTP_USAGE_FULL_RAW         0x01
#define NGX_HTTP_USAGE_FULL_AGGREGATES  0x02
#define NGX_HTTP_USAGE_FULL_DROP        0x04


/* what the steps of one insert share */
typedef struct {
    ngx_http_usage_record_t     *rec;
    int64_t                      now;
    int64_t                      created;
    int64_t                      start;        /* the event's bucket */
    uint32_t                     span;
    uint32_t                     entity_hash;
    uint32_t                     type_hash;
    uint64_t                     id_hash;
    size_t                       size;         /* the raw record's, if
                                                  back-dated: the most */
    ngx_http_usage_entity_t     *entity;       /* pinned */
    ngx_http_usage_series_t     *series;
    ngx_http_usage_bucket_t     *bucket;
    ngx_http_usage_bucket_t     *type_bucket;  /* the type's hour */
    ngx_http_usage_raw_t        *raw;          /* its record, once stored */
    ngx_uint_t                   remote;       /* from another instance */
    ngx_uint_t                   full;         /* NGX_HTTP_USAGE_FULL_* */
} ngx_http_usage_insert_t;


/*
 * The events of a POST held for Redis, as a batch: tables of its first
 * event of each entity, of each of its types, of each of their buckets
 * and of each client id (indexes + 1, 0 free), and at an entity's first
 * event the series and buckets the batch adds, as the bounds count them.
 */
#define NGX_HTTP_USAGE_HOLD_ENTITY   0
#define NGX_HTTP_USAGE_HOLD_TYPE     1
#define NGX_HTTP_USAGE_HOLD_BUCKET   2
#define NGX_HTTP_USAGE_HOLD_ID       3

typedef struct {
    uint32_t                    *table[4];
    ngx_uint_t                   mask;
    ngx_uint_t                  *series;
    ngx_uint_t                  *buckets;
} ngx_http_usage_hold_t;


static ngx_int_t ngx_http_usage_store_create(ngx_shm_zone_t *shm_zone);
static void ngx_http_usage_name_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel, size_t off);
static void ngx_http_usage_entity_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static void ngx_http_usage_type_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_rbtree_node_t *ngx_http_usage_name_lookup(ngx_rbtree_t *tree,
    uint32_t hash, ngx_str_t *name, size_t off);
static void *ngx_http_usage_alloc_locked(ngx_http_usage_zone_t *zone,
    size_t size, ngx_http_usage_entity_t *pin);
static ngx_uint_t ngx_http_usage_evict_aggregate_locked(
    ngx_http_usage_zone_t *zone, ngx_http_usage_entity_t *pin);
static ngx_http_usage_entity_t *ngx_http_usage_entity_get_locked(
    ngx_http_usage_zone_t *zone, ngx_str_t *name, uint32_t hash);
static ngx_http_usage_series_t *ngx_http_usage_series_find(
    ngx_http_usage_entity_t *entity, ngx_http_usage_type_t *type);
static ngx_int_t ngx_http_usage_entity_room(ngx_http_usage_zone_t *zone,
    ngx_http_usage_entity_t *entity, ngx_http_usage_series_t *series,
    int64_t start, uint32_t span);
static ngx_http_usage_series_t *ngx_http_usage_series_create_locked(
    ngx_http_usage_zone_t *zone, ngx_http_usage_entity_t *entity,
    ngx_str_t *type_name, uint32_t hash);
static ngx_http_usage_bucket_t *ngx_http_usage_type_bucket_locked(
    ngx_http_usage_zone_t *zone, ngx_http_usage_type_t *type, int64_t start,
    ngx_uint_t create, ngx_http_usage_entity_t *pin);
static ngx_http_usage_bucket_t *ngx_http_usage_bucket_in_locked(
    ngx_http_usage_zone_t *zone, ngx_queue_t *buckets, int64_t start,
    uint32_t span, ngx_uint_t create, ngx_http_usage_entity_t *pin);
static void ngx_http_usage_bucket_free_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_series_t *series, ngx_http_usage_bucket_t *b);
static void ngx_http_usage_type_expire_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_type_t *type, int64_t now);
static ngx_uint_t ngx_http_usage_raw_pop_locked(ngx_http_usage_zone_t *zone,
    int64_t oldest, ngx_uint_t evict);
static void ngx_http_usage_raw_evict_stored_locked(
    ngx_http_usage_zone_t *zone);
static void ngx_http_usage_ring_advance_locked(ngx_http_usage_shctx_t *sh);
static void ngx_http_usage_raw_link_log_locked(ngx_http_usage_shctx_t *sh,
    ngx_http_usage_raw_t *raw);
static void ngx_http_usage_raw_link_locked(ngx_queue_t *queue,
    ngx_queue_t *link, size_t offset, ngx_http_usage_raw_t *raw);
static ngx_uint_t ngx_http_usage_raw_expire_backdated_locked(
    ngx_http_usage_zone_t *zone, int64_t oldest);
static void ngx_http_usage_raw_remove_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_raw_t *raw, ngx_uint_t expired);
static void ngx_http_usage_idx_free_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_idx_t *idx);
static ngx_uint_t ngx_http_usage_batch_fits(ngx_http_usage_zone_t *zone,
    size_t bytes, ngx_uint_t n);
static void ngx_http_usage_insert_span(ngx_http_usage_zone_t *zone,
    ngx_http_usage_insert_t *ins);
static ngx_int_t ngx_http_usage_hold_bounds_locked(
    ngx_http_usage_zone_t *zone, ngx_http_usage_insert_t *ins, ngx_uint_t i,
    ngx_http_usage_hold_t *hold);
static ngx_uint_t ngx_http_usage_hold_seen(ngx_http_usage_hold_t *hold,
    ngx_http_usage_insert_t *ins, ngx_uint_t i, ngx_uint_t kind);
static ngx_int_t ngx_http_usage_hold_init_bounds(ngx_http_usage_hold_t *hold,
    ngx_pool_t *pool, ngx_uint_t n);
static ngx_int_t ngx_http_usage_hold_init(ngx_http_usage_zone_t *zone,
    ngx_http_usage_record_t *recs, ngx_uint_t n, int64_t now,
    ngx_http_usage_insert_t *ins, ngx_http_usage_hold_t *hold,
    ngx_http_usage_batch_result_t *res);
static ngx_int_t ngx_http_usage_hold_check_locked(
    ngx_http_usage_zone_t *zone, ngx_pool_t *pool,
    ngx_http_usage_insert_t *ins, ngx_uint_t n, ngx_http_usage_hold_t *hold,
    ngx_http_usage_batch_result_t *res);
static ngx_int_t ngx_http_usage_hold_all_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_insert_t *ins, ngx_uint_t n, int64_t now);
static void ngx_http_usage_held_store_locked(ngx_http_usage_zone_t *zone,
    ngx_pool_t *pool, ngx_http_usage_record_t *recs, ngx_uint_t n,
    int64_t now, ngx_http_usage_batch_result_t *res);
static ngx_uint_t ngx_http_usage_apply_own_locked(
    ngx_http_usage_fleet_t *fleet, ngx_http_usage_apply_t *entry);
static ngx_uint_t ngx_http_usage_clear_entity_locked(
    ngx_http_usage_zone_t *zone, ngx_http_usage_entity_t *entity);

static ngx_http_usage_idx_t *ngx_http_usage_idx_lookup(
    ngx_http_usage_shctx_t *sh, uint64_t hash, ngx_str_t *entity,
    ngx_str_t *id);
static ngx_int_t ngx_http_usage_idx_cmp(uint64_t hash, ngx_str_t *entity,
    ngx_str_t *id, ngx_http_usage_idx_t *idx);
static size_t ngx_http_usage_idx_slot(size_t size);
static void ngx_http_usage_idx_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static void ngx_http_usage_minute_add(ngx_http_usage_shctx_t *sh,
    int64_t time, ngx_int_t n);
static ngx_int_t ngx_http_usage_insert_locked(ngx_http_usage_zone_t *zone,
    ngx_pool_t *pool, ngx_http_usage_insert_t *ins);
static ngx_uint_t ngx_http_usage_apply_held_locked(
    ngx_http_usage_zone_t *zone, ngx_http_usage_record_t *rec,
    ngx_uint_t republished, int64_t now);
static void ngx_http_usage_insert_init(ngx_http_usage_zone_t *zone,
    ngx_http_usage_insert_t *ins, ngx_http_usage_record_t *rec, int64_t now);
static ngx_int_t ngx_http_usage_insert_duplicate_locked(
    ngx_http_usage_zone_t *zone, ngx_pool_t *pool,
    ngx_http_usage_insert_t *ins);
static ngx_int_t ngx_http_usage_insert_entity_locked(
    ngx_http_usage_zone_t *zone, ngx_http_usage_insert_t *ins);
static ngx_int_t ngx_http_usage_insert_bounds_locked(
    ngx_http_usage_zone_t *zone, ngx_http_usage_insert_t *ins);
static ngx_int_t ngx_http_usage_insert_buckets_locked(
    ngx_http_usage_zone_t *zone, ngx_http_usage_insert_t *ins);
static void ngx_http_usage_insert_undo_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_insert_t *ins);
static void ngx_http_usage_insert_count_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_insert_t *ins);
static ngx_uint_t ngx_http_usage_insert_raw_locked(
    ngx_http_usage_zone_t *zone, ngx_http_usage_insert_t *ins,
    ngx_http_usage_idx_t *idx);
static ngx_int_t ngx_http_usage_insert_all_locked(ngx_http_usage_zone_t *zone,
    ngx_pool_t *pool, ngx_http_usage_insert_t *ins, ngx_uint_t n,
    ngx_http_usage_batch_result_t *res);
static void ngx_http_usage_insert_revert_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_insert_t *ins);
static void ngx_http_usage_insert_report(ngx_http_usage_zone_t *zone,
    ngx_log_t *log, ngx_uint_t dropped, ngx_uint_t full, ngx_uint_t warn);
static u_char *ngx_http_usage_ring_reserve_locked(
    ngx_http_usage_zone_t *zone, size_t size);
static void ngx_http_usage_compact_series_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_series_t *series, int64_t cutoff, int64_t oldest);
static void ngx_http_usage_bucket_merge_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_series_t *series, ngx_http_usage_bucket_t *prev,
    ngx_http_usage_bucket_t *b);
static void ngx_http_usage_compact_min_end(ngx_http_usage_entity_t *entity);


ngx_int_t
ngx_http_usage_store_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_usage_zone_t  *ozone = data;

    size_t                  ring;
    ngx_http_usage_zone_t  *zone;

    zone = shm_zone->data;

    if (ozone) {
        /*
         * Reload with an unchanged zone: take over the live store.  Old
         * workers are still serving from it, so nothing in it is moved;
         * max_events, retention and the minute span are per cycle and
         * apply from the next operation.  The ring was carved out when
         * the zone was created and cannot be resized in place.
         */
        ring = ngx_http_usage_store_ring_size(zone->size, zone->raw_percent);

        if (ring != (size_t) (ozone->sh->ring_end - ozone->sh->ring)) {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "usage zone \"%V\": raw=%ui%% cannot change "
                          "without a change of the zone's size (it is "
                          "%ui%% now); the running configuration is kept",
                          &shm_zone->shm.name, zone->raw_percent,
                          ozone->raw_percent);
            return NGX_ERROR;
        }

        zone->sh = ozone->sh;
        zone->shpool = ozone->shpool;

        /* the old cycle's sync owner hands over to a worker of this one */
        (void) ngx_atomic_fetch_add(&zone->sh->sync.generation, 1);

        return NGX_OK;
    }

    zone->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        zone->sh = zone->shpool->data;
        return NGX_OK;
    }

    if (ngx_http_usage_store_create(shm_zone) != NGX_OK) {
        return NGX_ERROR;
    }

    /* a fresh zone, empty: the state file's start-up fills it */
    return NGX_DONE;
}


static ngx_int_t
ngx_http_usage_store_create(ngx_shm_zone_t *shm_zone)
{
    size_t                   len, ring;
    ngx_time_t              *tp;
    ngx_http_usage_zone_t   *zone;
    ngx_http_usage_shctx_t  *sh;

    zone = shm_zone->data;

    sh = ngx_slab_alloc(zone->shpool, sizeof(ngx_http_usage_shctx_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(sh, sizeof(ngx_http_usage_shctx_t));

    ngx_rbtree_init(&sh->entities, &sh->entities_sentinel,
                    ngx_http_usage_entity_insert);
    ngx_rbtree_init(&sh->types, &sh->types_sentinel,
                    ngx_http_usage_type_insert);
    ngx_rbtree_init(&sh->ids, &sh->ids_sentinel, ngx_http_usage_idx_insert);
    ngx_rbtree_init(&sh->backdated, &sh->backdated_sentinel,
                    ngx_rbtree_insert_value);
    ngx_queue_init(&sh->types_order);
    ngx_queue_init(&sh->lru);
    ngx_queue_init(&sh->raw);
    ngx_queue_init(&sh->ids_order);

    /*
     * The log context lives in the zone: it must outlive this cycle.  It
     * is taken before the ring, so that a ring too large for the zone
     * fails with the zone's name in every line.
     */
    len = sizeof(" in usage zone \"\"") + shm_zone->shm.name.len;

    zone->shpool->log_ctx = ngx_slab_alloc(zone->shpool, len);
    if (zone->shpool->log_ctx == NULL) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "usage zone \"%V\" is too small", &shm_zone->shm.name);
        return NGX_ERROR;
    }

    ngx_sprintf(zone->shpool->log_ctx, " in usage zone \"%V\"%Z",
                &shm_zone->shm.name);

    ring = ngx_http_usage_store_ring_size(zone->size, zone->raw_percent);

    sh->ring = ngx_slab_alloc(zone->shpool, ring);
    if (sh->ring == NULL) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "usage zone \"%V\" is too small for raw=%ui%%",
                      &shm_zone->shm.name, zone->raw_percent);
        return NGX_ERROR;
    }

    sh->ring_end = sh->ring + ring;
    sh->ring_head = sh->ring;
    sh->ring_tail = sh->ring;

    tp = ngx_timeofday();
    sh->start_time = (int64_t) tp->sec * 1000 + tp->msec;
    sh->dataset = ((uint64_t) ngx_random() << 32) ^ (uint64_t) ngx_random()
                  ^ (uint64_t) ngx_pid ^ (uint64_t) sh->start_time;

    sh->log_epoch = (uint32_t) ngx_random();

    /* nobody outside may know it: colliding ids cannot be made offline */
    if (ngx_http_usage_sipkey_random(&sh->id_key) != NGX_OK
        || ngx_http_usage_sipkey_random(&sh->cursor_key) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, ngx_errno,
                      "usage zone \"%V\": no random key for client ids "
                      "and cursors",
                      &shm_zone->shm.name);
        return NGX_ERROR;
    }

    zone->sh = sh;
    zone->shpool->data = sh;

    /* a full zone is handled by evicting, and reported once a minute */
    zone->shpool->log_nomem = 0;

    return NGX_OK;
}


/* the running cycle's zone of this name, if its size differs */

ngx_http_usage_zone_t *
ngx_http_usage_store_old_zone(ngx_shm_zone_t *shm_zone)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_shm_zone_t   *old;

    if (ngx_cycle == NULL || ngx_cycle->shared_memory.part.elts == NULL) {
        return NULL;
    }

    part = (ngx_list_part_t *) &ngx_cycle->shared_memory.part;
    old = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            old = part->elts;
            i = 0;
        }

        if (old[i].tag == shm_zone->tag
            && old[i].shm.name.len == shm_zone->shm.name.len
            && ngx_strncmp(old[i].shm.name.data, shm_zone->shm.name.data,
                           shm_zone->shm.name.len) == 0
            && old[i].shm.addr != shm_zone->shm.addr
            && old[i].data != NULL
            && ((ngx_http_usage_zone_t *) old[i].data)->sh != NULL)
        {
            return old[i].data;
        }
    }
}


size_t
ngx_http_usage_store_ring_size(size_t zone_size, ngx_uint_t raw_percent)
{
    size_t  ring;

    ring = (size_t) ((uint64_t) zone_size * raw_percent / 100);

    return ring - ring % ngx_pagesize;
}


/*
 * The zone lock, for every hold of the store's files.  A process can die
 * holding it (SIGKILL by an operator or the OOM killer, a crash); nginx's
 * master then frees the lock and logs "shared memory zone ... was locked
 * by", but the change that process was making stays half made.  The mark
 * tells the next holder, which counts it and says so in the error log:
 * an insert is ordered so that the half of it left is at most one event
 * counted and not listed, never one counted twice.
 */

static ngx_pid_t  ngx_http_usage_torn_pid;


void
ngx_http_usage_store_lock(ngx_http_usage_zone_t *zone)
{
    ngx_http_usage_shctx_t  *sh;

    ngx_shmtx_lock(&zone->shpool->mutex);

    sh = zone->sh;

    if (sh->changer) {
        sh->torn++;
        ngx_http_usage_torn_pid = sh->changer;
    }

    sh->changer = ngx_pid;
}


void
ngx_http_usage_store_unlock(ngx_http_usage_zone_t *zone)
{
    ngx_pid_t  pid;

    zone->sh->changer = 0;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    pid = ngx_http_usage_torn_pid;

    if (pid == 0) {
        return;
    }

    /* logged outside the lock: no disk I/O while the workers wait */
    ngx_http_usage_torn_pid = 0;

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "usage zone \"%V\": process %P died while changing it; "
                  "the event it was storing may be counted but not listed "
                  "(usage_store_torn_total)", &zone->name, pid);
}


/*
 * Inserts an event: its aggregates first (they are what must not be
 * lost), then its raw record.  NGX_HTTP_USAGE_DUPLICATE: its client id is
 * already recorded; rec then holds the stored event, copied into pool.
 * A full-zone warning goes to the pool's log: a request's pool logs with
 * the request's context (client, request line, trace id).
 */

ngx_int_t
ngx_http_usage_store_insert(ngx_http_usage_zone_t *zone, ngx_pool_t *pool,
    ngx_http_usage_record_t *rec, int64_t now)
{
    ngx_int_t                 rc;
    ngx_uint_t                warn;
    ngx_slab_pool_t          *shpool;
    ngx_http_usage_fleet_t   *fleet;
    ngx_http_usage_insert_t   ins;

    ngx_http_usage_insert_init(zone, &ins, rec, now);

    shpool = zone->shpool;
    warn = 0;

    ngx_http_usage_store_lock(zone);

    rc = ngx_http_usage_insert_locked(zone, pool, &ins);

    fleet = zone->sh->fleet;

    if (rc == NGX_OK && fleet && zone->sync) {
        /* shipped from the same lock hold: every stored event has its
         * seq, and seqs follow the order of the inserts */
        if (ngx_http_usage_fleet_enqueue_locked(shpool, fleet, rec,
                                                rec->created)
            != NGX_OK)
        {
            warn = ngx_http_usage_fleet_drop_warn(fleet, now);
        }
    }

    ngx_http_usage_store_unlock(zone);

    ngx_http_usage_insert_report(zone, pool->log,
                                 (rc == NGX_DECLINED) ? 1 : 0, ins.full, warn);

    return rc;
}


/*
 * Inserts the events of a batch in one lock hold, all of them or none: an
 * event that cannot be stored (its entity's bounds, no room) takes back
 * those of the batch stored before it, and res->failed is its index.
 * A stored event is shipped only once the whole batch is.  The batch
 * takes at most half the raw log (bytes, and max_events), so that no
 * event of it evicts another while the batch may still be taken back:
 * else NGX_HTTP_USAGE_TOO_LARGE.
 */

ngx_int_t
ngx_http_usage_store_insert_batch(ngx_http_usage_zone_t *zone,
    ngx_pool_t *pool, ngx_http_usage_record_t *recs, ngx_uint_t n,
    int64_t now, ngx_http_usage_batch_result_t *res)
{
    size_t                    bytes;
    ngx_int_t                 rc;
    ngx_uint_t                i, warn, full;
    ngx_http_usage_fleet_t   *fleet;
    ngx_http_usage_insert_t  *ins;

    ins = ngx_palloc(pool, n * sizeof(ngx_http_usage_insert_t));
    if (ins == NULL) {
        return NGX_ERROR;
    }

    bytes = 0;

    for (i = 0; i < n; i++) {
        ngx_http_usage_insert_init(zone, &ins[i], &recs[i], now);
        bytes += ins[i].size;
    }

    if (!ngx_http_usage_batch_fits(zone, bytes, n)) {
        return NGX_HTTP_USAGE_TOO_LARGE;
    }

    warn = 0;
    full = 0;

    ngx_http_usage_store_lock(zone);

    rc = ngx_http_usage_insert_all_locked(zone, pool, ins, n, res);

    fleet = zone->sh->fleet;

    for (i = 0; i < n; i++) {
        full |= ins[i].full;

        if (rc == NGX_OK && fleet && zone->sync && ins[i].raw
            && ngx_http_usage_fleet_enqueue_locked(zone->shpool, fleet,
                                                   &recs[i], recs[i].created)
               != NGX_OK)
        {
            warn = ngx_http_usage_fleet_drop_warn(fleet, now);
        }
    }

    ngx_http_usage_store_unlock(zone);

    ngx_http_usage_insert_report(zone, pool->log,
                                 (rc == NGX_DECLINED) ? n : 0, full, warn);

    return rc;
}


/*
 * A batch takes at most half of the raw log, in bytes and in max_events:
 * inside that bound none of its events can evict another while the batch
 * may still be taken back, or is held for Redis.
 */

static ngx_uint_t
ngx_http_usage_batch_fits(ngx_http_usage_zone_t *zone, size_t bytes,
    ngx_uint_t n)
{
    return bytes <= (size_t) (zone->sh->ring_end - zone->sh->ring) / 2
           && !(zone->max_events && n > zone->max_events / 2);
}


/*
 * After the lock: the events not taken, a full zone's and a full ship
 * queue's warnings (rate-limited where they are counted)
 */

static void
ngx_http_usage_insert_report(ngx_http_usage_zone_t *zone, ngx_log_t *log,
    ngx_uint_t dropped, ngx_uint_t full, ngx_uint_t warn)
{
    if (dropped) {
        (void) ngx_atomic_fetch_add(&zone->sh->dropped, dropped);
    }

    if (full) {
        ngx_http_usage_store_full(zone, log);
    }

    if (warn) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "usage sync: the ship queue of zone \"%V\" is full "
                      "(buffer=%uz): new events are stored here but not "
                      "shared with the fleet until Redis takes the queue",
                      &zone->name, zone->ship_max);
    }
}


static ngx_int_t
ngx_http_usage_insert_all_locked(ngx_http_usage_zone_t *zone,
    ngx_pool_t *pool, ngx_http_usage_insert_t *ins, ngx_uint_t n,
    ngx_http_usage_batch_result_t *res)
{
    ngx_int_t   rc;
    ngx_uint_t  i;

    res->stored = 0;
    res->duplicates = 0;
    res->failed = n;

    for (i = 0; i < n; i++) {
        rc = ngx_http_usage_insert_locked(zone, pool, &ins[i]);
        ins[i].rec->duplicate = (rc == NGX_HTTP_USAGE_DUPLICATE);

        if (rc == NGX_OK) {
            res->stored++;
            continue;
        }

        if (rc == NGX_HTTP_USAGE_DUPLICATE) {
            res->duplicates++;
            continue;
        }

        /* taken back newest first: each leaves the store as it was */
        res->failed = i;

        while (i--) {
            if (ins[i].raw) {
                ngx_http_usage_insert_revert_locked(zone, &ins[i]);
            }
        }

        return rc;
    }

    return NGX_OK;
}


/*
 * Takes a stored event of a batch back out: its client id, its record and
 * its counts, as if it had expired, without counting an expiry.  Its
 * record is still in the ring (see store_insert_batch()); its client id's
 * entry is looked up anew, as a later event of the batch may have evicted
 * it.
 */

static void
ngx_http_usage_insert_revert_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_insert_t *ins)
{
    ngx_http_usage_idx_t     *idx;
    ngx_http_usage_record_t  *rec;
    ngx_http_usage_shctx_t   *sh;

    sh = zone->sh;
    rec = ins->rec;

    if (rec->id.len) {
        idx = ngx_http_usage_idx_lookup(sh, ins->id_hash, &rec->entity,
                                        &rec->id);
        if (idx) {
            ngx_http_usage_idx_free_locked(zone, idx);
        }
    }

    /* the record is its own still (store_insert_batch() sees to it;
     * checked all the same, a stale pointer must never be followed) */
    if (!(ins->raw->flags & NGX_HTTP_USAGE_RAW_DEAD)
        && ngx_memcmp(ins->raw->uuid, rec->uuid, 16) == 0)
    {
        ngx_http_usage_raw_remove_locked(zone, ins->raw, 1);
        sh->raw_expired--;
    }

    sh->recorded--;
    ins->raw = NULL;
}


/*
 * One event into the store, local or from another instance, with the
 * lock held.  NGX_OK: stored; NGX_HTTP_USAGE_DUPLICATE: its client id is
 * stored already (rec then holds the stored event if pool is given);
 * NGX_HTTP_USAGE_LIMIT_*: refused by its entity's bounds (local events
 * only: another instance accepted a remote one, refusing it here would
 * make the instances disagree); NGX_DECLINED: no room; NGX_ERROR.
 */

static ngx_int_t
ngx_http_usage_insert_locked(ngx_http_usage_zone_t *zone, ngx_pool_t *pool,
    ngx_http_usage_insert_t *ins)
{
    ngx_int_t                 rc;
    ngx_http_usage_idx_t     *idx;
    ngx_http_usage_record_t  *rec;
    ngx_http_usage_shctx_t   *sh;

    sh = zone->sh;
    rec = ins->rec;
    ins->full = 0;

    if (ins->size > ngx_http_usage_store_event_max(zone)) {
        return NGX_DECLINED;
    }

    ngx_http_usage_expire_locked(zone, ins->now);

    if (rec->id.len) {
        rc = ngx_http_usage_insert_duplicate_locked(zone, pool, ins);

        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    if (ins->remote) {
        /* its origin's receipt; the local clock is not moved by it */
        ins->created = rec->created;

    } else {
        /*
         * Workers' cached clocks differ by a few milliseconds; clamping
         * keeps the log sorted by createdAt, which listing relies on.
         */
        ins->created = ngx_max(ins->now, sh->last_created);

        if (!rec->has_time) {
            rec->time = ins->created;
        }
    }

    /* everything that can fail comes before anything is counted */

    if (ngx_http_usage_insert_entity_locked(zone, ins) != NGX_OK) {
        ins->full |= NGX_HTTP_USAGE_FULL_DROP;
        return NGX_DECLINED;
    }

    rc = ngx_http_usage_insert_bounds_locked(zone, ins);

    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_usage_insert_buckets_locked(zone, ins) != NGX_OK) {
        ins->full |= NGX_HTTP_USAGE_FULL_DROP;
        ngx_http_usage_insert_undo_locked(zone, ins);
        return NGX_DECLINED;
    }

    /*
     * The client id is indexed before the event is counted: a process
     * killed between the two leaves an id whose event is not counted (its
     * retry is answered as stored), never an event counted that its retry
     * would count again.
     */
    idx = NULL;

    if (rec->id.len) {
        idx = ngx_http_usage_idx_add_locked(zone, ins->id_hash, &rec->entity,
                                            &rec->id, rec->time, NULL,
                                            ins->entity);
        if (idx == NULL) {
            ins->full |= NGX_HTTP_USAGE_FULL_AGGREGATES;
        }
    }

    /* counted: from here on nothing fails */

    ngx_http_usage_insert_count_locked(zone, ins);

    ins->full |= ngx_http_usage_insert_raw_locked(zone, ins, idx);

    sh->recorded++;
    sh->changes++;

    if (sh->full_since_warned) {
        ins->full |= NGX_HTTP_USAGE_FULL_AGGREGATES;
    }

    return NGX_OK;
}


/*
 * What an insert can compute before it takes the lock: the names' hashes
 * (self-tracking brings its own), the client id's, and the size of the
 * raw record.
 */

static void
ngx_http_usage_insert_init(ngx_http_usage_zone_t *zone,
    ngx_http_usage_insert_t *ins, ngx_http_usage_record_t *rec, int64_t now)
{
    ins->rec = rec;
    ins->now = now;
    ins->raw = NULL;
    ins->remote = 0;
    ins->full = 0;

    ins->entity_hash = rec->entity_hash
                       ? rec->entity_hash
                       : ngx_http_usage_name_hash(rec->entity.data,
                                                  rec->entity.len);
    ins->type_hash = rec->type_hash
                     ? rec->type_hash
                     : ngx_http_usage_name_hash(rec->type.data,
                                                rec->type.len);
    ins->id_hash = rec->id.len
                   ? ngx_http_usage_idx_hash(zone->sh, &rec->entity,
                                             &rec->id)
                   : 0;
    ins->size = ngx_align(NGX_HTTP_USAGE_RAW_HEADER
                          + ngx_http_usage_raw_extra(1, rec->id.len,
                                        ngx_http_usage_skip_levels(rec->uuid))
                          + rec->id.len + rec->metadata.len, 8);
}


/*
 * The client id against the index: a repeat inside the window stores
 * nothing and hands back the stored event (NGX_HTTP_USAGE_DUPLICATE, or
 * NGX_ERROR if it cannot be copied); an entry the window left is freed
 * for the new one.  NGX_DECLINED: the event is new.
 */

static ngx_int_t
ngx_http_usage_insert_duplicate_locked(ngx_http_usage_zone_t *zone,
    ngx_pool_t *pool, ngx_http_usage_insert_t *ins)
{
    ngx_http_usage_idx_t     *idx;
    ngx_http_usage_record_t  *rec;
    ngx_http_usage_shctx_t   *sh;

    sh = zone->sh;
    rec = ins->rec;

    idx = ngx_http_usage_idx_lookup(sh, ins->id_hash, &rec->entity,
                                    &rec->id);

    if (idx && idx->time >= ins->now - zone->retention) {
        sh->duplicates++;
        sh->changes++;
        rec->evicted = (idx->raw == NULL);

        if (idx->raw && pool
            && ngx_http_usage_copy_raw(pool, rec, idx->raw) != NGX_OK)
        {
            return NGX_ERROR;
        }

        return NGX_HTTP_USAGE_DUPLICATE;
    }

    if (idx) {
        ngx_http_usage_idx_free_locked(zone, idx);
    }

    return NGX_DECLINED;
}


/*
 * Finds or creates the event's entity and pins it for the rest of the
 * insert, compacting it first when that is due.  NGX_ERROR: no room for
 * a new entity.
 */

static ngx_int_t
ngx_http_usage_insert_entity_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_insert_t *ins)
{
    ngx_http_usage_entity_t  *entity;

    entity = ngx_http_usage_entity_get_locked(zone, &ins->rec->entity,
                                              ins->entity_hash);
    if (entity == NULL) {
        return NGX_ERROR;
    }

    /*
     * Pinned while the event is inserted: making room (aggregates of other
     * entities, the oldest raw events) must not free the entity or the
     * series being written.
     */
    entity->raw_count++;
    ins->entity = entity;
    ins->series = NULL;
    ins->bucket = NULL;

    if (ngx_http_usage_compact_due(zone, entity, ins->now)) {
        ngx_http_usage_compact_locked(zone, entity, ins->now);
    }

    return NGX_OK;
}


/*
 * Finds the event's series in its entity, if the type has one there, and
 * the bucket (start, span) its time falls in, and checks what they would
 * add against the entity's bounds.  A refused event leaves the entity as
 * it was, unpinned; nothing is allocated before the check.
 */

static ngx_int_t
ngx_http_usage_insert_bounds_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_insert_t *ins)
{
    ngx_int_t                 rc;
    ngx_http_usage_type_t    *type;
    ngx_http_usage_record_t  *rec;
    ngx_http_usage_entity_t  *entity;

    rec = ins->rec;
    entity = ins->entity;

    type = (ngx_http_usage_type_t *)
           ngx_http_usage_name_lookup(&zone->sh->types, ins->type_hash,
                                      &rec->type,
                                      offsetof(ngx_http_usage_type_t, len));
    ins->series = type ? ngx_http_usage_series_find(entity, type) : NULL;

    ngx_http_usage_insert_span(zone, ins);

    if (ins->remote) {
        return NGX_OK;
    }

    rc = ngx_http_usage_entity_room(zone, entity, ins->series, ins->start,
                                    ins->span);

    if (rc != NGX_OK) {
        /* the entity's own bound: refused, nothing else is touched */
        zone->sh->entity_limited++;
        entity->raw_count--;
        (void) ngx_http_usage_entity_release_locked(zone, entity);
    }

    return rc;
}


/*
 * Creates what the event is counted in and does not exist yet: its
 * series, its bucket, its type's hour bucket.  Each allocation may make
 * room by eviction; on NGX_ERROR, insert_undo_locked() frees what this
 * left behind.
 */

static ngx_int_t
ngx_http_usage_insert_buckets_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_insert_t *ins)
{
    ngx_http_usage_series_t  *series;

    series = ins->series;

    if (series == NULL) {
        series = ngx_http_usage_series_create_locked(zone, ins->entity,
                                                     &ins->rec->type,
                                                     ins->type_hash);
        if (series == NULL) {
            return NGX_ERROR;
        }

        ins->series = series;
    }

    series->raw_refs++;

    ins->bucket = ngx_http_usage_bucket_get_locked(zone, series, ins->start,
                                                   ins->span);
    if (ins->bucket == NULL) {
        return NGX_ERROR;
    }

    ins->type_bucket = ngx_http_usage_type_bucket_locked(zone, series->type,
                    ngx_http_usage_floor(ins->rec->time, NGX_HTTP_USAGE_HOUR),
                    1, ins->entity);
    if (ins->type_bucket == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * A failed insert_buckets_locked(): frees the bucket it created, the
 * series if it is left empty, and unpins the entity, which goes if the
 * insert created it.
 */

static void
ngx_http_usage_insert_undo_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_insert_t *ins)
{
    ngx_http_usage_bucket_t  *b;
    ngx_http_usage_series_t  *series;

    series = ins->series;
    b = ins->bucket;

    if (series) {
        if (b && b->count == 0 && b->raw_count == 0) {
            ngx_http_usage_bucket_free_locked(zone, series, b);
        }

        series->raw_refs--;
        ngx_http_usage_series_release_locked(zone, series);
    }

    ins->entity->raw_count--;
    (void) ngx_http_usage_entity_release_locked(zone, ins->entity);
}


/*
 * Counts the event in its bucket, its series' sums, its type's total and
 * the store's, and moves its entity to the tail of the least recently
 * updated queue.
 */

static void
ngx_http_usage_insert_count_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_insert_t *ins)
{
    ngx_http_usage_type_t    *type;
    ngx_http_usage_bucket_t  *b;
    ngx_http_usage_record_t  *rec;
    ngx_http_usage_entity_t  *entity;
    ngx_http_usage_shctx_t   *sh;

    sh = zone->sh;
    rec = ins->rec;
    b = ins->bucket;
    type = ins->series->type;
    entity = ins->entity;

    b->count++;
    b->value += rec->value;
    ngx_http_usage_series_add(ins->series, 1, rec->value);
    ins->type_bucket->count++;
    type->count++;
    sh->total++;
    ngx_http_usage_minute_add(sh, rec->time, 1);

    if (!ins->remote) {
        sh->last_created = ins->created;
    }

    rec->created = ins->created;

    entity->updated = ngx_max(entity->updated, ins->created);
    ngx_queue_remove(&entity->lru);
    ngx_queue_insert_tail(&sh->lru, &entity->lru);
}


/*
 * Appends the counted event's raw record, unpins its series and entity,
 * and points its client id's entry, if any, at it.  Returns the
 * NGX_HTTP_USAGE_FULL_* flags of what did not fit: the event stays
 * counted either way, and its id remembered.
 */

static ngx_uint_t
ngx_http_usage_insert_raw_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_insert_t *ins, ngx_http_usage_idx_t *idx)
{
    ngx_http_usage_raw_t  *raw;

    raw = ngx_http_usage_raw_append_locked(zone, ins->series, ins->bucket,
                                           ins->rec);

    ins->series->raw_refs--;
    ins->entity->raw_count--;

    if (raw == NULL) {
        return NGX_HTTP_USAGE_FULL_RAW;
    }

    ins->raw = raw;

    if (idx && idx->raw == NULL && raw->id_len) {
        idx->raw = raw;
        *ngx_http_usage_raw_idx(raw) = idx;
    }

    return 0;
}


/*
 * One warning a minute at most while the zone evicts for lack of room:
 * enough to size it better, never a flood.  Called without the lock; the
 * check is racy on purpose, a second warning in a minute is harmless.
 */

void
ngx_http_usage_store_full(ngx_http_usage_zone_t *zone, ngx_log_t *log)
{
    int64_t                  now;
    uint64_t                 raw, buckets, drops;
    ngx_http_usage_shctx_t  *sh;

    sh = zone->sh;
    now = (int64_t) ngx_time() * 1000;

    if (now - sh->full_warned < NGX_HTTP_USAGE_WARN_INTERVAL) {
        return;
    }

    sh->full_warned = now;
    sh->full_since_warned = 0;

    raw = sh->raw_evicted;
    buckets = sh->buckets_evicted;
    drops = sh->dropped;

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "usage zone \"%V\" is full: the oldest raw events are "
                  "evicted to make room (%uL so far), aggregate buckets "
                  "evicted: %uL, events dropped: %uL; totals stay right "
                  "while no aggregate is evicted", &zone->name, raw, buckets,
                  drops);
}


/*
 * The bounds of one entity, so that one tenant cannot take the aggregate
 * space all entities share (inventing event types would fill the zone,
 * and then the least recently updated entities' totals are given up):
 * at most entity_types event types, and at most its share of the series
 * and buckets the zone can hold.  A bucket that exists costs nothing.
 */

static ngx_int_t
ngx_http_usage_entity_room(ngx_http_usage_zone_t *zone,
    ngx_http_usage_entity_t *entity, ngx_http_usage_series_t *series,
    int64_t start, uint32_t span)
{
    ngx_uint_t  need;

    need = 1;

    if (series == NULL) {
        if (zone->entity_types && entity->nseries >= zone->entity_types) {
            return NGX_HTTP_USAGE_LIMIT_TYPES;
        }

        need = 2;
    }

    if (zone->entity_slots == 0
        || entity->nseries + entity->nbuckets + need <= zone->entity_slots)
    {
        return NGX_OK;
    }

    if (series && ngx_http_usage_bucket_lookup(series, start, span)) {
        return NGX_OK;
    }

    return NGX_HTTP_USAGE_LIMIT_SHARE;
}


size_t
ngx_http_usage_store_event_max(ngx_http_usage_zone_t *zone)
{
    /* the ring always keeps room for a few events of the largest size */
    return (size_t) (zone->sh->ring_end - zone->sh->ring) / 4;
}


int64_t
ngx_http_usage_store_start_time(ngx_http_usage_zone_t *zone)
{
    /* written when the zone is created or restored, before any worker
     * runs: no lock needed to read it */
    return zone->sh->start_time;
}


void
ngx_http_usage_store_count_drop(ngx_http_usage_zone_t *zone)
{
    /* a metered location without its key header drops on every request:
     * no lock for that */
    (void) ngx_atomic_fetch_add(&zone->sh->dropped, 1);
}


/* the zone is mapped and holds a store: it can serve */

ngx_uint_t
ngx_http_usage_store_ready(ngx_http_usage_zone_t *zone)
{
    return zone->sh != NULL && zone->shpool != NULL;
}


/* counted by every worker with atomic operations, never under the lock */

ngx_http_usage_traffic_t *
ngx_http_usage_store_traffic(ngx_http_usage_zone_t *zone)
{
    return &zone->sh->traffic;
}


ngx_http_usage_sync_shm_t *
ngx_http_usage_store_sync(ngx_http_usage_zone_t *zone)
{
    return &zone->sh->sync;
}


/*
 * Made in the master once the zone is filled: a zone that came with
 * events (a state file, a resize copy) has applied the stream before, up
 * to a position it does not keep, so it reads the stream from its end
 * rather than apply those events a second time.
 */

ngx_int_t
ngx_http_usage_store_fleet_init(ngx_http_usage_zone_t *zone, ngx_log_t *log)
{
    ngx_http_usage_fleet_t  *fleet;
    ngx_http_usage_shctx_t  *sh;

    sh = zone->sh;

    if (zone->sync == NULL || sh == NULL) {
        return NGX_OK;
    }

    ngx_http_usage_store_lock(zone);

    fleet = sh->fleet;

    if (fleet) {
        fleet->queue_max = zone->ship_max;

    } else {
        fleet = ngx_http_usage_fleet_create_locked(zone->shpool,
                                                   zone->ship_max);
        if (fleet) {
            fleet->read_tail = (sh->recorded != 0 || sh->total != 0);
            fleet->boot = !fleet->read_tail;
            sh->fleet = fleet;
        }
    }

    /* ack=redis, also turned on by a reload: kept once made (a slot may
     * still be held when it is turned off again) */
    if (fleet && zone->ack_timeout && fleet->held == NULL) {
        fleet->held = ngx_slab_calloc_locked(zone->shpool,
                                             NGX_HTTP_USAGE_PENDING
                                             * sizeof(ngx_http_usage_held_t));
        if (fleet->held == NULL) {
            fleet = NULL;
        }
    }

    ngx_http_usage_store_unlock(zone);

    if (fleet == NULL) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "usage zone \"%V\" is too small for usage_sync",
                      &zone->name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_usage_store_fleet_status(ngx_http_usage_zone_t *zone,
    ngx_http_usage_fleet_status_t *st)
{
    ngx_http_usage_fleet_t  *f;

    f = zone->sh->fleet;

    if (f == NULL) {
        return NGX_DECLINED;
    }

    ngx_http_usage_store_lock(zone);

    st->origin = f->origin;
    st->seq = f->seq;
    st->acked_seq = f->acked_seq;
    st->queued = f->queued;
    st->queued_bytes = f->queued_bytes;
    st->queue_max = f->queue_max;
    st->read_ms = f->read_ms;
    st->read_seq = f->read_seq;
    st->read_tail = f->read_tail;
    st->shipped = f->shipped;
    st->applied = f->applied;
    st->duplicates = f->duplicates;
    st->dropped = f->dropped;
    st->refused = f->refused;
    st->foreign = f->foreign;
    st->lost = f->lost;
    st->epoch = f->epoch;
    st->epochs = f->epochs;
    st->republished = f->republished;
    st->republishing = (f->republish_to != 0);
    st->lag = f->lag;
    st->boot = f->boot;
    st->own_upto = f->own_upto;
    st->snapshots = f->snapshots;
    st->partial = f->partial;
    st->ack_voided = f->ack_voided;
    st->ack_ambiguous = f->ack_ambiguous;

    ngx_http_usage_store_unlock(zone);

    return NGX_OK;
}


/*
 * ack=redis: the events of one POST (one, or a batch's) queued for Redis,
 * not stored, until Redis has them (ngx_http_usage_store_held()), all in
 * one stream entry.  Each client id is checked first: a repeat, of the
 * store or of an earlier event of the batch, is answered as stored
 * (recs[i].duplicate, with the stored event where the store has it).
 * Their createdAt is fixed now.  NGX_OK: res counts them; the bounds'
 * codes (res->failed: the event refused), NGX_HTTP_USAGE_TOO_LARGE and
 * NGX_DECLINED as an insert's; NGX_BUSY: no room to hold them (the
 * queue, or too many waiting).  Nothing is held unless all are.
 */

ngx_int_t
ngx_http_usage_store_hold(ngx_http_usage_zone_t *zone, ngx_pool_t *pool,
    ngx_http_usage_record_t *recs, ngx_uint_t n, int64_t now,
    ngx_http_usage_batch_result_t *res)
{
    ngx_int_t                 rc;
    ngx_uint_t                i;
    ngx_http_usage_hold_t     hold;
    ngx_http_usage_insert_t  *ins;

    if (zone->sh->fleet == NULL || zone->sh->fleet->held == NULL) {
        return NGX_ERROR;
    }

    ins = ngx_palloc(pool, n * sizeof(ngx_http_usage_insert_t));
    if (ins == NULL || ngx_http_usage_hold_init_bounds(&hold, pool, n)
                       != NGX_OK)
    {
        return NGX_ERROR;
    }

    res->stored = 0;
    res->duplicates = 0;
    res->failed = n;

    rc = ngx_http_usage_hold_init(zone, recs, n, now, ins, &hold, res);
    if (rc != NGX_OK) {
        return rc;
    }

    ngx_http_usage_store_lock(zone);

    ngx_http_usage_expire_locked(zone, now);

    rc = ngx_http_usage_hold_check_locked(zone, pool, ins, n, &hold, res);

    if (rc == NGX_OK) {
        rc = ngx_http_usage_hold_all_locked(zone, ins, n, now);
    }

    ngx_http_usage_store_unlock(zone);

    for (i = 0; rc == NGX_OK && i < n; i++) {
        res->stored += !recs[i].duplicate;
        res->duplicates += recs[i].duplicate;
    }

    return rc;
}


/*
 * Outside the lock: the sizes (a batch's bound, as an insert's, and what
 * one stream entry carries), and the client ids repeated in the batch,
 * whose first carries them.
 */

static ngx_int_t
ngx_http_usage_hold_init(ngx_http_usage_zone_t *zone,
    ngx_http_usage_record_t *recs, ngx_uint_t n, int64_t now,
    ngx_http_usage_insert_t *ins, ngx_http_usage_hold_t *hold,
    ngx_http_usage_batch_result_t *res)
{
    size_t      bytes, wire;
    ngx_uint_t  i, j;

    bytes = 0;
    wire = 0;

    for (i = 0; i < n; i++) {
        ngx_http_usage_insert_init(zone, &ins[i], &recs[i], now);
        bytes += ins[i].size;
        wire += ngx_http_usage_wire_size(&recs[i]);
        recs[i].duplicate = 0;
        recs[i].seq = 0;

        if (ins[i].size > ngx_http_usage_store_event_max(zone)) {
            res->failed = i;
            return NGX_DECLINED;
        }
    }

    if (n > 1 && !ngx_http_usage_batch_fits(zone, bytes, n)) {
        return NGX_HTTP_USAGE_TOO_LARGE;
    }

    if (wire > NGX_HTTP_USAGE_HELD_BYTES) {
        return NGX_HTTP_USAGE_HELD_TOO_LARGE;
    }

    for (i = 0; i < n; i++) {
        j = recs[i].id.len
            ? ngx_http_usage_hold_seen(hold, ins, i,
                                       NGX_HTTP_USAGE_HOLD_ID)
            : i;

        if (j != i) {
            recs[i].duplicate = 1;
            recs[i].evicted = 0;
            ngx_memcpy(recs[i].uuid, recs[j].uuid, 16);
        }
    }

    return NGX_OK;
}


/* the bounds' tables for n events, in the pool, outside the lock */

static ngx_int_t
ngx_http_usage_hold_init_bounds(ngx_http_usage_hold_t *hold,
    ngx_pool_t *pool, ngx_uint_t n)
{
    ngx_uint_t  k, size;

    for (size = 4; size < 2 * n; size <<= 1) { /* void */ }

    hold->mask = size - 1;

    for (k = 0; k < 4; k++) {
        hold->table[k] = ngx_pcalloc(pool, size * sizeof(uint32_t));
        if (hold->table[k] == NULL) {
            return NGX_ERROR;
        }
    }

    hold->series = ngx_pcalloc(pool, n * sizeof(ngx_uint_t));
    hold->buckets = ngx_pcalloc(pool, n * sizeof(ngx_uint_t));

    return (hold->series && hold->buckets) ? NGX_OK : NGX_ERROR;
}


/* the client ids against the store, the createdAt, the entities' bounds */

static ngx_int_t
ngx_http_usage_hold_check_locked(ngx_http_usage_zone_t *zone,
    ngx_pool_t *pool, ngx_http_usage_insert_t *ins, ngx_uint_t n,
    ngx_http_usage_hold_t *hold, ngx_http_usage_batch_result_t *res)
{
    int64_t                   created;
    ngx_int_t                 rc;
    ngx_uint_t                i;
    ngx_http_usage_record_t  *rec;

    created = ngx_max(ins[0].now, zone->sh->last_created);

    for (i = 0; i < n; i++) {
        rec = ins[i].rec;

        if (rec->duplicate) {
            /* a repeat inside the batch: its first's receipt */
            rec->created = created;
            continue;
        }

        rc = rec->id.len
             ? ngx_http_usage_insert_duplicate_locked(zone, pool, &ins[i])
             : NGX_DECLINED;

        if (rc == NGX_HTTP_USAGE_DUPLICATE) {
            rec->duplicate = 1;
            continue;
        }

        if (rc != NGX_DECLINED) {
            return rc;
        }

        rec->created = created;

        if (!rec->has_time) {
            rec->time = created;
        }

        rc = ngx_http_usage_hold_bounds_locked(zone, ins, i, hold);

        if (rc != NGX_OK) {
            res->failed = i;
            return rc;
        }
    }

    return NGX_OK;
}


/* into the queue, each with a slot, one group: all, or none */

static ngx_int_t
ngx_http_usage_hold_all_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_insert_t *ins, ngx_uint_t n, int64_t now)
{
    uint64_t                  first, seq;
    ngx_uint_t                i;
    ngx_http_usage_held_t    *h;
    ngx_http_usage_fleet_t   *fleet;
    ngx_http_usage_record_t  *rec;

    fleet = zone->sh->fleet;
    first = fleet->seq + 1;

    for (i = 0; i < n; i++) {
        rec = ins[i].rec;

        if (rec->duplicate) {
            continue;
        }

        if (ngx_http_usage_fleet_hold_locked(zone->shpool, fleet, rec,
                                             rec->created,
                                             now + zone->ack_timeout, now)
            != NGX_OK)
        {
            /* those held already are withdrawn: they ship as void */
            for (seq = first; seq <= fleet->seq; seq++) {
                h = ngx_http_usage_fleet_held_locked(fleet, seq);

                if (h) {
                    h->state = NGX_HTTP_USAGE_HELD_VOID;
                    h->answered = 1;
                }
            }

            return NGX_BUSY;
        }

        zone->sh->last_created = rec->created;
    }

    if (fleet->seq >= first) {
        ngx_http_usage_fleet_group_locked(fleet, first, fleet->seq);
    }

    return NGX_OK;
}


/*
 * Where the events of a POST held for Redis stand (they share their
 * fate: one entry).  NGX_AGAIN: Redis has not answered yet.  NGX_OK:
 * stored, now that Redis has them, or by the reader that saw them come
 * back first; res counts them, and an event whose client id the zone
 * stored meanwhile is a duplicate.  NGX_DECLINED: withdrawn, stored
 * nowhere: the deadline passed (margin ms after it) or Redis refused.
 */

ngx_int_t
ngx_http_usage_store_held(ngx_http_usage_zone_t *zone, ngx_pool_t *pool,
    ngx_http_usage_record_t *recs, ngx_uint_t n, int64_t now,
    ngx_msec_t margin, ngx_http_usage_batch_result_t *res)
{
    ngx_int_t                 rc;
    ngx_uint_t                i;
    ngx_http_usage_held_t    *h, *last;
    ngx_http_usage_fleet_t   *fleet;

    fleet = zone->sh->fleet;
    last = NULL;

    ngx_http_usage_store_lock(zone);

    for (i = 0; i < n; i++) {
        if (recs[i].seq) {
            last = ngx_http_usage_fleet_held_locked(fleet, recs[i].seq);
        }
    }

    if (last == NULL) {
        rc = NGX_OK;                /* every one was a repeat */

    } else if (last->state == NGX_HTTP_USAGE_HELD_VOID) {
        rc = NGX_DECLINED;

    } else if (last->state == NGX_HTTP_USAGE_HELD_STORED
               || fleet->acked_seq >= last->seq)
    {
        ngx_http_usage_held_store_locked(zone, pool, recs, n, now, res);
        rc = NGX_OK;

    } else if (now < last->deadline + (int64_t) margin) {
        rc = NGX_AGAIN;

    } else {
        rc = NGX_DECLINED;
    }

    for (i = 0; rc != NGX_AGAIN && i < n; i++) {
        h = recs[i].seq ? ngx_http_usage_fleet_held_locked(fleet, recs[i].seq)
                        : NULL;

        if (h) {
            if (rc == NGX_DECLINED) {
                h->state = NGX_HTTP_USAGE_HELD_VOID;
            }

            h->answered = 1;
        }
    }

    if (rc == NGX_DECLINED) {
        fleet->ack_voided++;
    }

    ngx_http_usage_store_unlock(zone);

    return rc;
}


/*
 * Redis has them: each is stored as it was held (its createdAt), unless
 * the reader did so first.  Redis and the fleet have them: stored here
 * or not (a zone too full), they are the POST's 201.
 */

static void
ngx_http_usage_held_store_locked(ngx_http_usage_zone_t *zone,
    ngx_pool_t *pool, ngx_http_usage_record_t *recs, ngx_uint_t n,
    int64_t now, ngx_http_usage_batch_result_t *res)
{
    ngx_int_t                 rc;
    ngx_uint_t                i;
    ngx_http_usage_held_t    *h;
    ngx_http_usage_insert_t   ins;

    for (i = 0; i < n; i++) {
        h = recs[i].seq
            ? ngx_http_usage_fleet_held_locked(zone->sh->fleet, recs[i].seq)
            : NULL;

        if (h == NULL || h->state != NGX_HTTP_USAGE_HELD) {
            continue;
        }

        ngx_http_usage_insert_init(zone, &ins, &recs[i], now);
        ins.remote = 1;             /* its createdAt, fixed when held */

        rc = ngx_http_usage_insert_locked(zone, pool, &ins);

        if (rc == NGX_HTTP_USAGE_DUPLICATE) {
            recs[i].duplicate = 1;
            res->stored--;
            res->duplicates++;
        }

        h->state = NGX_HTTP_USAGE_HELD_STORED;
    }
}


/* Redis refused a batch past its deadline; now: Redis's time, local ms */

void
ngx_http_usage_store_ship_refused(ngx_http_usage_zone_t *zone, int64_t now)
{
    if (zone->sh->fleet == NULL) {
        return;
    }

    ngx_http_usage_store_lock(zone);
    ngx_http_usage_fleet_refused_locked(zone->sh->fleet, now);
    ngx_http_usage_store_unlock(zone);
}


/* the bucket an event's time falls in: a minute, or an hour if older */

static void
ngx_http_usage_insert_span(ngx_http_usage_zone_t *zone,
    ngx_http_usage_insert_t *ins)
{
    if (ins->rec->time
        >= ngx_http_usage_floor(ins->now, NGX_HTTP_USAGE_MINUTE)
           - zone->minute_span)
    {
        ins->span = NGX_HTTP_USAGE_MINUTE;

    } else {
        ins->span = NGX_HTTP_USAGE_HOUR;
    }

    ins->start = ngx_http_usage_floor(ins->rec->time, (int64_t) ins->span);
}


/*
 * The entities' bounds for the events of a POST held for Redis, as
 * inserts would check them one after the other, with nothing changed:
 * what the store holds of the entity, and what the batch's earlier
 * events would add to it (a type new to the entity, a bucket new to its
 * series), found through hashes of the batch's entities, types and
 * buckets.  Once Redis has the events the fleet stores them whatever
 * the bounds say then, so a batch must not pass them here.
 */

static ngx_int_t
ngx_http_usage_hold_bounds_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_insert_t *ins, ngx_uint_t i, ngx_http_usage_hold_t *hold)
{
    ngx_uint_t                first, nseries, nbuckets, series, bucket;
    ngx_http_usage_type_t    *type;
    ngx_http_usage_entity_t  *entity;

    ngx_http_usage_insert_span(zone, &ins[i]);

    first = ngx_http_usage_hold_seen(hold, ins, i, NGX_HTTP_USAGE_HOLD_ENTITY);
    series = (ngx_http_usage_hold_seen(hold, ins, i, NGX_HTTP_USAGE_HOLD_TYPE)
              == i);
    bucket = (ngx_http_usage_hold_seen(hold, ins, i,
                                       NGX_HTTP_USAGE_HOLD_BUCKET)
              == i);

    entity = ngx_http_usage_entity_lookup(zone->sh, &ins[i].rec->entity);
    nseries = 0;
    nbuckets = 0;

    if (entity) {
        type = ngx_http_usage_type_lookup(zone->sh, &ins[i].rec->type);
        ins[i].series = type ? ngx_http_usage_series_find(entity, type)
                             : NULL;
        nseries = entity->nseries;
        nbuckets = entity->nbuckets;

        if (ins[i].series) {
            series = 0;
            bucket &= (ngx_http_usage_bucket_lookup(ins[i].series,
                                                    ins[i].start,
                                                    ins[i].span)
                       == NULL);
        }
    }

    nseries += hold->series[first];
    nbuckets += hold->buckets[first];

    if (series && zone->entity_types && nseries >= zone->entity_types) {
        zone->sh->entity_limited++;
        return NGX_HTTP_USAGE_LIMIT_TYPES;
    }

    if (zone->entity_slots && series + bucket
        && nseries + nbuckets + series + bucket > zone->entity_slots)
    {
        zone->sh->entity_limited++;
        return NGX_HTTP_USAGE_LIMIT_SHARE;
    }

    hold->series[first] += series;
    hold->buckets[first] += bucket;

    return NGX_OK;
}


/*
 * The batch's first event before or at i with i's entity, its entity and
 * type, those and its bucket, or its entity and client id (kind): an
 * open-addressing table of event indexes for each kind, i added when it
 * is the first.
 */

static ngx_uint_t
ngx_http_usage_hold_seen(ngx_http_usage_hold_t *hold,
    ngx_http_usage_insert_t *ins, ngx_uint_t i, ngx_uint_t kind)
{
    uint32_t                *table;
    ngx_uint_t               h, j;
    ngx_http_usage_record_t *a, *b;

    a = ins[i].rec;

    switch (kind) {
    case NGX_HTTP_USAGE_HOLD_ID:
        h = (ngx_uint_t) ins[i].id_hash;
        break;
    case NGX_HTTP_USAGE_HOLD_BUCKET:
        h = (ins[i].entity_hash * 31 + ins[i].type_hash) * 31
            + (ngx_uint_t) ins[i].start + ins[i].span;
        break;
    case NGX_HTTP_USAGE_HOLD_TYPE:
        h = ins[i].entity_hash * 31 + ins[i].type_hash;
        break;
    default:
        h = ins[i].entity_hash;
    }

    table = hold->table[kind];

    for (h &= hold->mask; table[h]; h = (h + 1) & hold->mask) {
        j = table[h] - 1;
        b = ins[j].rec;

        if (a->entity.len != b->entity.len
            || ngx_memcmp(a->entity.data, b->entity.data, a->entity.len) != 0)
        {
            continue;
        }

        if (kind == NGX_HTTP_USAGE_HOLD_ID) {
            if (a->id.len == b->id.len
                && ngx_memcmp(a->id.data, b->id.data, a->id.len) == 0)
            {
                return j;
            }

            continue;
        }

        if (kind != NGX_HTTP_USAGE_HOLD_ENTITY
            && (a->type.len != b->type.len
                || ngx_memcmp(a->type.data, b->type.data, a->type.len) != 0))
        {
            continue;
        }

        if (kind != NGX_HTTP_USAGE_HOLD_BUCKET
            || (ins[i].start == ins[j].start && ins[i].span == ins[j].span))
        {
            return j;
        }
    }

    table[h] = (uint32_t) i + 1;

    return i;
}


/* read without the lock: a status, which the next read may change */

ngx_uint_t
ngx_http_usage_store_booting(ngx_http_usage_zone_t *zone)
{
    ngx_http_usage_fleet_t  *fleet;

    fleet = zone->sh->fleet;

    return fleet && fleet->boot;
}


/*
 * The stream lost entries after the zone's position (trimmed while the
 * instance was away): the zone waits for the fleet's snapshot again, as a
 * new one.  NGX_DECLINED: it waits already.
 */

ngx_int_t
ngx_http_usage_store_boot_again(ngx_http_usage_zone_t *zone)
{
    ngx_int_t                rc;
    ngx_http_usage_fleet_t  *fleet;

    fleet = zone->sh->fleet;

    if (fleet == NULL) {
        return NGX_DECLINED;
    }

    ngx_http_usage_store_lock(zone);

    rc = fleet->boot ? NGX_DECLINED : NGX_OK;
    fleet->boot = 1;

    ngx_http_usage_store_unlock(zone);

    return rc;
}


/* the zone knows it lacks events of the fleet: it writes no snapshot */

void
ngx_http_usage_store_partial(ngx_http_usage_zone_t *zone)
{
    ngx_http_usage_fleet_t  *fleet;

    fleet = zone->sh->fleet;

    if (fleet == NULL) {
        return;
    }

    ngx_http_usage_store_lock(zone);
    fleet->partial = 1;
    ngx_http_usage_store_unlock(zone);
}


/* the fleet has no snapshot for a new zone: it reads the whole stream */

void
ngx_http_usage_store_boot_done(ngx_http_usage_zone_t *zone)
{
    ngx_http_usage_fleet_t  *fleet;

    fleet = zone->sh->fleet;

    if (fleet == NULL) {
        return;
    }

    ngx_http_usage_store_lock(zone);
    fleet->boot = 0;
    ngx_http_usage_store_unlock(zone);
}


ngx_int_t
ngx_http_usage_store_ship_take(ngx_http_usage_zone_t *zone, uint64_t after,
    ngx_uint_t max, u_char *buf, size_t len, ngx_http_usage_ship_batch_t *batch)
{
    if (zone->sh->fleet == NULL) {
        return NGX_DECLINED;
    }

    ngx_http_usage_store_lock(zone);
    ngx_http_usage_fleet_take_locked(zone->sh->fleet, after, max, buf, len,
                                     batch);
    batch->start = zone->sh->start_time;
    ngx_http_usage_store_unlock(zone);

    return NGX_OK;
}


/*
 * Whether the queue holds events after seq "after": read without the
 * lock, every tick of the shipper; a stale answer costs one tick
 */

ngx_uint_t
ngx_http_usage_store_ship_pending(ngx_http_usage_zone_t *zone,
    uint64_t after)
{
    volatile ngx_http_usage_fleet_t  *fleet;

    fleet = zone->sh->fleet;

    return fleet && fleet->queued && fleet->seq > after;
}


void
ngx_http_usage_store_ship_ack(ngx_http_usage_zone_t *zone, uint64_t seq)
{
    if (zone->sh->fleet == NULL) {
        return;
    }

    ngx_http_usage_store_lock(zone);
    ngx_http_usage_fleet_ack_locked(zone->shpool, zone->sh->fleet, seq);
    ngx_http_usage_store_unlock(zone);
}


/*
 * Whether the zone holds event seq of origin: its own from their insert,
 * another's once applied (or older than its window: applied or lost,
 * nothing to wait for).
 */

ngx_uint_t
ngx_http_usage_store_reached(ngx_http_usage_zone_t *zone, uint64_t origin,
    uint64_t seq)
{
    ngx_uint_t                reached;
    ngx_http_usage_fleet_t   *fleet;
    ngx_http_usage_window_t  *w;

    fleet = zone->sh->fleet;

    if (fleet == NULL) {
        return 1;
    }

    ngx_http_usage_store_lock(zone);

    if (origin == fleet->origin) {
        reached = (seq <= fleet->seq);

    } else {
        w = ngx_http_usage_fleet_find_locked(fleet, origin);
        reached = (w && ngx_http_usage_window_seen(w, seq));
    }

    ngx_http_usage_store_unlock(zone);

    return reached;
}


/*
 * The events of one stream entry of another instance, in one lock hold
 * with the window of their origin (a copy that came already, through a
 * retry or a handover, is dropped by it) and the read position, which
 * moves past the entry only with its events (I3 and I5 of the design).
 */

ngx_int_t
ngx_http_usage_store_apply(ngx_http_usage_zone_t *zone,
    ngx_http_usage_apply_t *entry, int64_t now)
{
    ngx_int_t                 rc;
    ngx_uint_t                i, n, full;
    ngx_http_usage_fleet_t   *fleet;
    ngx_http_usage_window_t  *w;
    ngx_http_usage_insert_t   ins;
    ngx_http_usage_record_t  *rec;

    fleet = zone->sh->fleet;

    if (fleet == NULL) {
        return NGX_DECLINED;
    }

    full = 0;
    n = entry->n;

    ngx_http_usage_store_lock(zone);

    if (entry->republished) {
        /* their originals may come after them: look for those too */
        w = NULL;
        fleet->recheck_until = now + NGX_HTTP_USAGE_REPUBLISH_RECHECK;

    } else if (entry->origin == fleet->origin) {
        w = NULL;
        n = ngx_http_usage_apply_own_locked(fleet, entry);

    } else {
        w = ngx_http_usage_fleet_window_locked(fleet, entry->origin, now);

        if (w == NULL) {
            n = 0;                  /* origin 0 names none */
        }
    }

    /* a withdrawn event's seq is no hole in its origin's sequence */
    for (i = 0; w && i < entry->nvoids; i++) {
        ngx_http_usage_window_mark(w, entry->voids[i]);
    }

    for (i = 0; i < n; i++) {
        rec = &entry->recs[i];

        if (w) {
            if (ngx_http_usage_window_seen(w, rec->seq)) {
                entry->duplicates++;
                continue;
            }

            ngx_http_usage_window_mark(w, rec->seq);
        }

        if (ngx_http_usage_apply_held_locked(zone, rec, entry->republished,
                                             now))
        {
            entry->duplicates++;
            continue;
        }

        ngx_http_usage_insert_init(zone, &ins, rec, now);
        ins.remote = 1;

        rc = ngx_http_usage_insert_locked(zone, NULL, &ins);
        full |= ins.full;

        if (rc == NGX_OK) {
            entry->applied++;

        } else if (rc == NGX_HTTP_USAGE_DUPLICATE) {
            /* two instances took the same client id at once */
            entry->duplicates++;

        } else {
            entry->dropped++;
        }
    }

    /* the fleet's data set began with its oldest member's: "since" is
     * the same on every instance */
    if (entry->start > 0 && entry->start < zone->sh->start_time) {
        zone->sh->start_time = entry->start;
    }

    fleet->applied += entry->applied;
    fleet->duplicates += entry->duplicates;
    fleet->refused += entry->refused;
    fleet->read_ms = entry->read_ms;
    fleet->read_seq = entry->read_seq;

    /* the entry's id is Redis's clock at its XADD: on hosts whose clocks
     * agree (NTP), the time the event took to get here once shipped */
    fleet->lag = (now > (int64_t) entry->read_ms)
                 ? (uint64_t) (now - (int64_t) entry->read_ms) : 0;

    ngx_http_usage_store_unlock(zone);

    if (entry->dropped) {
        (void) ngx_atomic_fetch_add(&zone->sh->dropped, entry->dropped);
    }

    if (full) {
        ngx_http_usage_store_full(zone, ngx_cycle->log);
    }

    return NGX_OK;
}


/*
 * This zone's own events, as the stream brings them back: those it has
 * not stored, sorted first.  An ack=redis event whose POST did not store
 * it (Redis answered after the deadline of the POST, or it was
 * withdrawn, 503, while Redis had it after all: counted); or, after a
 * snapshot replaced the store, one up to own_upto that the snapshot did
 * not have.  Its events come in the order of their seqs, so one past
 * own_upto means that every earlier one has come.
 */

static ngx_uint_t
ngx_http_usage_apply_own_locked(ngx_http_usage_fleet_t *fleet,
    ngx_http_usage_apply_t *entry)
{
    uint64_t                seq;
    ngx_uint_t              i, n, keep;
    ngx_http_usage_held_t  *h;

    n = 0;

    for (i = 0; i < entry->n; i++) {
        seq = entry->recs[i].seq;
        h = ngx_http_usage_fleet_held_locked(fleet, seq);
        keep = 0;

        if (h && h->state != NGX_HTTP_USAGE_HELD_STORED) {
            if (h->state == NGX_HTTP_USAGE_HELD_VOID) {
                fleet->ack_ambiguous++;
            }

            h->state = NGX_HTTP_USAGE_HELD_STORED;
            keep = 1;

        } else if (seq <= fleet->own_upto
                   && !ngx_http_usage_window_seen(&fleet->own_window, seq))
        {
            ngx_http_usage_window_mark(&fleet->own_window, seq);
            keep = 1;
        }

        if (seq > fleet->own_upto) {
            fleet->own_upto = 0;
        }

        if (keep) {
            entry->recs[n++] = entry->recs[i];
        }
    }

    return n;
}


/*
 * Whether an event that came again after a loss of the stream is here
 * already: found in the log by its receipt and uuid, or no later than an
 * event that left the log but not the aggregates (it may be one of
 * those).  Only while re-published copies may come, as an original then
 * may follow its copy: other events are told by their window alone.
 */

static ngx_uint_t
ngx_http_usage_apply_held_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_record_t *rec, ngx_uint_t republished, int64_t now)
{
    ngx_http_usage_fleet_t  *fleet;

    fleet = zone->sh->fleet;

    if (!republished && now >= fleet->recheck_until) {
        return 0;
    }

    if (ngx_http_usage_skip_find_locked(zone->sh, rec->created, rec->uuid)) {
        return 1;
    }

    return republished && rec->created <= fleet->evicted_created;
}


/*
 * Redis answered the stream's epoch.  One the zone had not seen before,
 * when it had one: Redis is not the one the zone read, its stream is
 * gone or another (docs/FLEET.md, "Redis lost the stream").
 */

ngx_int_t
ngx_http_usage_store_epoch(ngx_http_usage_zone_t *zone, uint64_t epoch,
    ngx_uint_t intact, int64_t now, uint64_t *previous)
{
    ngx_int_t                rc;
    ngx_http_usage_fleet_t  *fleet;

    fleet = zone->sh->fleet;

    if (fleet == NULL) {
        return NGX_DECLINED;
    }

    rc = NGX_OK;

    ngx_http_usage_store_lock(zone);

    *previous = fleet->epoch;

    if (fleet->epoch != epoch) {
        if (fleet->epoch && !intact) {
            ngx_http_usage_fleet_lost_locked(fleet, now);
            rc = NGX_DONE;
        }

        fleet->epoch = epoch;
    }

    ngx_http_usage_store_unlock(zone);

    return rc;
}


/*
 * An entry not applied (not events, or this zone's own): the position
 * moves on.  Also where a zone that came with events starts: the stream's
 * last entry, from then on a position like any other.
 */

void
ngx_http_usage_store_skip(ngx_http_usage_zone_t *zone, uint64_t read_ms,
    uint64_t read_seq, ngx_uint_t foreign, ngx_uint_t refused)
{
    ngx_http_usage_fleet_t  *fleet;

    fleet = zone->sh->fleet;

    if (fleet == NULL) {
        return;
    }

    ngx_http_usage_store_lock(zone);

    fleet->read_ms = read_ms;
    fleet->read_seq = read_seq;
    fleet->read_tail = 0;
    fleet->foreign += foreign;
    fleet->refused += refused;

    ngx_http_usage_store_unlock(zone);
}


/*
 * Empties the store, for a snapshot of the fleet to take its place: the
 * raw events leave as an eviction takes them, then the buckets, series,
 * entities, types and client ids, and the ring starts over with a new
 * log epoch (no cursor of the old log is taken for one of the new).  The
 * fleet's part (origin, seq, ship queue) stays as it is.
 */

void
ngx_http_usage_store_clear_locked(ngx_http_usage_zone_t *zone)
{
    ngx_queue_t              *q;
    ngx_http_usage_shctx_t   *sh;

    sh = zone->sh;

    while (!ngx_queue_empty(&sh->raw)) {
        q = ngx_queue_head(&sh->raw);
        ngx_http_usage_raw_remove_locked(zone,
                          ngx_queue_data(q, ngx_http_usage_raw_t, queue), 0);
    }

    while (!ngx_queue_empty(&sh->lru)) {
        q = ngx_queue_head(&sh->lru);

        if (!ngx_http_usage_clear_entity_locked(zone,
                          ngx_queue_data(q, ngx_http_usage_entity_t, lru)))
        {
            break;                  /* never: nothing holds it any more */
        }
    }

    while (!ngx_queue_empty(&sh->types_order)) {
        q = ngx_queue_head(&sh->types_order);

        /* every hour of its total is past a window that ends then */
        ngx_http_usage_type_expire_locked(zone,
                          ngx_queue_data(q, ngx_http_usage_type_t, order),
                          INT64_MAX);

        if (ngx_queue_head(&sh->types_order) == q) {
            break;
        }
    }

    while (!ngx_queue_empty(&sh->ids_order)) {
        q = ngx_queue_head(&sh->ids_order);
        ngx_http_usage_idx_free_locked(zone,
                          ngx_queue_data(q, ngx_http_usage_idx_t, queue));
    }

    sh->ring_head = sh->ring;
    sh->ring_tail = sh->ring;
    sh->ring_wrap = NULL;
    sh->ring_used = 0;
    sh->log_epoch = (uint32_t) ngx_random();
    ngx_memzero(sh->skip_head, sizeof(sh->skip_head));
    ngx_memzero(sh->skip_tail, sizeof(sh->skip_tail));

    sh->total = 0;
    sh->type_cursor = NULL;
    ngx_memzero(sh->minute_start, sizeof(sh->minute_start));
    ngx_memzero(sh->minute_count, sizeof(sh->minute_count));

    if (sh->fleet) {
        sh->fleet->evicted_created = 0;
    }
}


/* an entity without raw events: its buckets, series and itself go */

static ngx_uint_t
ngx_http_usage_clear_entity_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_entity_t *entity)
{
    ngx_queue_t              *q;
    ngx_http_usage_series_t  *series;

    while (!ngx_queue_empty(&entity->series)) {
        q = ngx_queue_head(&entity->series);
        series = ngx_queue_data(q, ngx_http_usage_series_t, queue);

        while (!ngx_queue_empty(&series->buckets)) {
            ngx_http_usage_bucket_free_locked(zone, series,
                          ngx_queue_data(ngx_queue_head(&series->buckets),
                                         ngx_http_usage_bucket_t, queue));
        }

        ngx_http_usage_series_release_locked(zone, series);

        if (ngx_queue_head(&entity->series) == q) {
            return 0;
        }
    }

    return ngx_http_usage_entity_release_locked(zone, entity);
}


/* written when the zone is created, read without the lock */

ngx_http_usage_sipkey_t *
ngx_http_usage_store_cursor_key(ngx_http_usage_zone_t *zone)
{
    return &zone->sh->cursor_key;
}


size_t
ngx_http_usage_store_event_overhead(void)
{
    /* the record's header, its largest extras, and its padding */
    return NGX_HTTP_USAGE_RAW_HEADER
           + ngx_http_usage_raw_extra(1, 1, NGX_HTTP_USAGE_SKIP_LEVELS) + 8;
}


/*
 * Retention and max_events, applied at the start of every locked
 * operation.  Each event, entity and id leaves once, from the head of its
 * queue, so the cost is amortized O(1) per insert.
 */

void
ngx_http_usage_expire_locked(ngx_http_usage_zone_t *zone, int64_t now)
{
    int64_t                   oldest;
    ngx_uint_t                n;
    ngx_queue_t              *q, *next;
    ngx_http_usage_idx_t     *idx;
    ngx_http_usage_entity_t  *entity;
    ngx_http_usage_shctx_t   *sh;

    sh = zone->sh;
    oldest = now - zone->retention;

    /* a reload may have lowered max_events: every operation applies it */
    while (zone->max_events && sh->raw_count > zone->max_events) {
        (void) ngx_http_usage_raw_pop_locked(zone, oldest, 1);
    }

    /*
     * Nothing ages within a millisecond: the rest is done once for each
     * value of the clock, whatever the request rate (inserts apply
     * max_events and max_ids themselves).  Equality, not order: a clock
     * set back must not stop expiry.
     */
    if (now == sh->expired_at) {
        return;
    }

    sh->expired_at = now;

    while (ngx_http_usage_raw_pop_locked(zone, oldest, 0)) { /* void */ }
    while (ngx_http_usage_raw_expire_backdated_locked(zone, oldest)) {
        /* void */
    }

    /*
     * An entity not updated for a retention window plus the longest a
     * bucket can reach past its last receipt has nothing left in it.
     */
    while (!ngx_queue_empty(&sh->lru)) {
        q = ngx_queue_head(&sh->lru);
        entity = ngx_queue_data(q, ngx_http_usage_entity_t, lru);

        if (entity->updated >= oldest - NGX_HTTP_USAGE_HOUR
                               - NGX_HTTP_USAGE_FUTURE_MAX)
        {
            break;
        }

        ngx_http_usage_compact_locked(zone, entity, now);

        if (!ngx_http_usage_entity_release_locked(zone, entity)) {
            /* cannot happen; never loop on it */
            entity->updated = now;
            ngx_queue_remove(&entity->lru);
            ngx_queue_insert_tail(&sh->lru, &entity->lru);
            break;
        }
    }

    /*
     * The store-wide totals of types no event comes for any more: two
     * types per operation, in turn, so that stale hours never pile up.
     */
    for (n = 0; n < 2 && !ngx_queue_empty(&sh->types_order); n++) {
        q = sh->type_cursor ? sh->type_cursor
                            : ngx_queue_head(&sh->types_order);
        next = ngx_queue_next(q);
        sh->type_cursor = (next == ngx_queue_sentinel(&sh->types_order))
                          ? NULL : next;

        ngx_http_usage_type_expire_locked(zone,
                           ngx_queue_data(q, ngx_http_usage_type_t, order),
                           now);
    }

    while (!ngx_queue_empty(&sh->ids_order)) {
        q = ngx_queue_head(&sh->ids_order);
        idx = ngx_queue_data(q, ngx_http_usage_idx_t, queue);

        if (idx->time >= oldest && sh->id_count <= zone->max_ids) {
            break;
        }

        if (idx->time >= oldest) {
            sh->ids_evicted++;
        }

        ngx_http_usage_idx_free_locked(zone, idx);
    }
}


/*
 * Takes the oldest raw event out of the log if it is past "oldest" (by
 * receipt or by event time), or unconditionally ("evict"), for a count of
 * events or the slab's room.  Its bytes go when the ring's head passes.
 * An event whose own time left the window also leaves its aggregates now:
 * that is what keeps retention exact to the millisecond.
 */

static ngx_uint_t
ngx_http_usage_raw_pop_locked(ngx_http_usage_zone_t *zone, int64_t oldest,
    ngx_uint_t evict)
{
    ngx_queue_t             *q;
    ngx_http_usage_raw_t    *raw;
    ngx_http_usage_shctx_t  *sh;

    sh = zone->sh;

    if (ngx_queue_empty(&sh->raw)) {
        return 0;
    }

    q = ngx_queue_head(&sh->raw);
    raw = ngx_queue_data(q, ngx_http_usage_raw_t, queue);

    if (!evict && raw->created >= oldest && raw->time >= oldest) {
        return 0;
    }

    ngx_http_usage_raw_remove_locked(zone, raw, raw->time < oldest);

    return 1;
}


/*
 * Makes room in the ring: the record at its head goes, wherever it is in
 * the log's order (the head is live: it never rests on a dead record).
 */

static void
ngx_http_usage_raw_evict_stored_locked(ngx_http_usage_zone_t *zone)
{
    ngx_http_usage_raw_remove_locked(zone,
                           (ngx_http_usage_raw_t *) zone->sh->ring_head, 0);
}


/*
 * Records leave the ring in the order they were stored: the head moves
 * over the dead ones, which also left the log, to the oldest live one.
 * Each record is passed once: amortized O(1) per insert.
 */

static void
ngx_http_usage_ring_advance_locked(ngx_http_usage_shctx_t *sh)
{
    ngx_http_usage_raw_t  *raw;

    while (sh->raw_count) {
        if (sh->ring_wrap && sh->ring_head >= sh->ring_wrap) {
            sh->ring_head = sh->ring;
            sh->ring_wrap = NULL;
        }

        raw = (ngx_http_usage_raw_t *) sh->ring_head;

        if (!(raw->flags & NGX_HTTP_USAGE_RAW_DEAD)) {
            return;
        }

        sh->ring_head += raw->size;
    }
}


/*
 * A back-dated event whose time left the window, wherever it is in the
 * ring: it leaves the log and its aggregates now; its bytes are reclaimed
 * when the ring's head passes them.
 */

static ngx_uint_t
ngx_http_usage_raw_expire_backdated_locked(ngx_http_usage_zone_t *zone,
    int64_t oldest)
{
    ngx_rbtree_node_t     *node;
    ngx_http_usage_raw_t  *raw;

    if (zone->sh->backdated.root == zone->sh->backdated.sentinel) {
        return 0;
    }

    node = ngx_rbtree_min(zone->sh->backdated.root,
                          zone->sh->backdated.sentinel);

    if ((int64_t) node->key >= oldest) {
        return 0;
    }

    raw = (ngx_http_usage_raw_t *)
          ((u_char *) node - offsetof(ngx_http_usage_raw_t, data));

    ngx_http_usage_raw_remove_locked(zone, raw, 1);

    return 1;
}


/*
 * Takes a raw event out of the log: out of its queues, out of its bucket's
 * raw list and, if its time left the window ("expired"), out of the
 * aggregates, which is what keeps retention exact to the millisecond.
 */

static void
ngx_http_usage_raw_remove_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_raw_t *raw, ngx_uint_t expired)
{
    ngx_http_usage_type_t    *type;
    ngx_http_usage_entity_t  *entity;
    ngx_http_usage_bucket_t  *b, *tb;
    ngx_http_usage_series_t  *series;
    ngx_http_usage_shctx_t   *sh;

    sh = zone->sh;
    series = raw->series;
    type = series->type;
    b = raw->bucket;

    if (b) {
        ngx_queue_remove(&raw->bucket_queue);
        b->raw_count--;

        if (expired && b->count) {
            b->count--;
            b->value -= raw->value;
            ngx_http_usage_series_sub(series, 1, raw->value);
        }
    }

    if (expired) {
        /* the type's total: its hour bucket is near the head */
        tb = ngx_http_usage_type_bucket_locked(zone, type,
                         ngx_http_usage_floor(raw->time, NGX_HTTP_USAGE_HOUR),
                         0, NULL);
        if (tb && tb->count) {
            tb->count--;
            type->count -= ngx_min(type->count, 1);
            sh->total -= ngx_min(sh->total, 1);
            ngx_http_usage_minute_add(sh, raw->time, -1);

            if (tb->count == 0) {
                ngx_queue_remove(&tb->queue);
                ngx_slab_free_locked(zone->shpool, tb);
                sh->bucket_count--;
            }
        }

        sh->raw_expired++;

    } else {
        sh->raw_evicted++;

        if (sh->fleet && raw->created > sh->fleet->evicted_created) {
            sh->fleet->evicted_created = raw->created;
        }
    }

    if (raw->id_len && *ngx_http_usage_raw_idx(raw)) {
        (*ngx_http_usage_raw_idx(raw))->raw = NULL;
    }

    if (raw->flags & NGX_HTTP_USAGE_RAW_BACKDATED) {
        ngx_rbtree_delete(&sh->backdated, (ngx_rbtree_node_t *) raw->data);
    }

    ngx_http_usage_skip_unlink_locked(sh, raw);
    ngx_queue_remove(&raw->queue);
    ngx_queue_remove(&raw->entity_queue);

    series->entity->raw_count--;
    type->raw_count--;
    series->raw_refs--;
    sh->raw_count--;
    sh->ring_used -= raw->size;

    raw->flags |= NGX_HTTP_USAGE_RAW_DEAD;

    if ((u_char *) raw == sh->ring_head) {
        ngx_http_usage_ring_advance_locked(sh);
    }

    if (b && b->count == 0 && b->raw_count == 0) {
        ngx_http_usage_bucket_free_locked(zone, series, b);
    }

    entity = series->entity;

    ngx_http_usage_series_release_locked(zone, series);
    (void) ngx_http_usage_entity_release_locked(zone, entity);
}


/*
 * Appends a raw record at the ring's tail, taking the oldest records out
 * until it fits.  Returns NULL only for a record larger than the ring.
 */

ngx_http_usage_raw_t *
ngx_http_usage_raw_append_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_series_t *series, ngx_http_usage_bucket_t *bucket,
    ngx_http_usage_record_t *rec)
{
    u_char                  *p;
    size_t                   size;
    ngx_uint_t               levels;
    ngx_http_usage_raw_t    *raw;
    ngx_http_usage_shctx_t  *sh;

    sh = zone->sh;

    /* its levels come from its uuid: the same in every copy of the store */
    levels = ngx_http_usage_skip_levels(rec->uuid);
    size = ngx_http_usage_raw_size(rec, levels);

    if (size > (size_t) (sh->ring_end - sh->ring)) {
        return NULL;
    }

    p = ngx_http_usage_ring_reserve_locked(zone, size);

    raw = (ngx_http_usage_raw_t *) p;

    raw->size = (uint32_t) size;
    raw->flags = (uint16_t) (levels << NGX_HTTP_USAGE_RAW_LEVEL_SHIFT);

    if (rec->time < rec->created) {
        raw->flags |= NGX_HTTP_USAGE_RAW_BACKDATED;
    }

    raw->id_len = (uint16_t) rec->id.len;
    raw->metadata_len = (uint32_t) rec->metadata.len;
    raw->reserved = 0;
    raw->series = series;
    raw->bucket = bucket;
    raw->time = rec->time;
    raw->created = rec->created;
    raw->value = rec->value;
    ngx_memcpy(raw->uuid, rec->uuid, 16);

    p = ngx_http_usage_raw_id(raw);

    if (raw->id_len) {
        *ngx_http_usage_raw_idx(raw) = NULL;
    }

    if (raw->flags & NGX_HTTP_USAGE_RAW_BACKDATED) {
        ((ngx_rbtree_node_t *) raw->data)->key = (ngx_rbtree_key_t) raw->time;
        ngx_rbtree_insert(&sh->backdated, (ngx_rbtree_node_t *) raw->data);
    }

    /* memcpy() from a NULL pointer is undefined even for 0 bytes */
    if (rec->id.len) {
        p = ngx_cpymem(p, rec->id.data, rec->id.len);
    }

    if (rec->metadata.len) {
        ngx_memcpy(p, rec->metadata.data, rec->metadata.len);
    }

    if (sh->fleet == NULL) {
        ngx_queue_insert_tail(&sh->raw, &raw->queue);
        ngx_queue_insert_tail(&series->entity->raw, &raw->entity_queue);

    } else {
        ngx_http_usage_raw_link_log_locked(sh, raw);
        ngx_http_usage_raw_link_locked(&series->entity->raw,
                                   &raw->entity_queue,
                                   offsetof(ngx_http_usage_raw_t,
                                            entity_queue), raw);
    }

    ngx_http_usage_skip_link_locked(sh, raw);

    if (bucket) {
        ngx_queue_insert_tail(&bucket->raw, &raw->bucket_queue);
        bucket->raw_count++;

    } else {
        ngx_queue_init(&raw->bucket_queue);
    }

    series->entity->raw_count++;
    series->type->raw_count++;
    series->raw_refs++;
    sh->raw_count++;

    return raw;
}


/*
 * In a fleet every instance lists the same events in the same order: by
 * createdAt, the receipt at their origin, then by uuid, which is random
 * and the same everywhere.  An event from another instance comes a little
 * late, so it walks back from the tail past the later ones; the walk is
 * as long as what arrived during the lag, and bounded: past the bound the
 * order is given up for that event, never the time of an insert.
 */

#define NGX_HTTP_USAGE_LINK_STEPS  4096

/* the fleet's order: by createdAt, then by uuid */
#define ngx_http_usage_raw_before(a, b)                                      \
    ((a)->created < (b)->created                                             \
     || ((a)->created == (b)->created                                        \
         && ngx_http_usage_uuid_cmp((a)->uuid, (b)->uuid) < 0))

/* the log's own queue: a few steps from the tail, else by the skip list */
#define NGX_HTTP_USAGE_LINK_NEAR   64

static void
ngx_http_usage_raw_link_locked(ngx_queue_t *queue, ngx_queue_t *link,
    size_t offset, ngx_http_usage_raw_t *raw)
{
    ngx_uint_t             n;
    ngx_queue_t           *q;
    ngx_http_usage_raw_t  *prev;

    q = ngx_queue_last(queue);

    for (n = 0; q != ngx_queue_sentinel(queue); n++) {
        prev = (ngx_http_usage_raw_t *) ((u_char *) q - offset);

        if (n == NGX_HTTP_USAGE_LINK_STEPS
            || ngx_http_usage_raw_before(prev, raw))
        {
            break;
        }

        q = ngx_queue_prev(q);
    }

    ngx_queue_insert_after(q, link);
}


/*
 * The log itself is never out of order, however late an event comes (one
 * published again after a loss of the stream may be a minute old): the
 * skip list, which cursors and the lookups of events published again
 * rely on, needs it sorted.  Near the tail, a few steps back; farther,
 * the skip list finds the place in O(log n).
 */

static void
ngx_http_usage_raw_link_log_locked(ngx_http_usage_shctx_t *sh,
    ngx_http_usage_raw_t *raw)
{
    ngx_uint_t             n;
    ngx_queue_t           *q;
    ngx_http_usage_raw_t  *prev;

    q = ngx_queue_last(&sh->raw);

    for (n = 0; n < NGX_HTTP_USAGE_LINK_NEAR; n++) {
        if (q == ngx_queue_sentinel(&sh->raw)) {
            break;
        }

        prev = ngx_queue_data(q, ngx_http_usage_raw_t, queue);

        if (ngx_http_usage_raw_before(prev, raw)) {
            break;
        }

        q = ngx_queue_prev(q);
    }

    if (n == NGX_HTTP_USAGE_LINK_NEAR) {
        prev = ngx_http_usage_skip_seek_event_locked(sh, raw->created,
                                                     raw->uuid);

        q = prev ? &prev->queue : ngx_queue_sentinel(&sh->raw);
    }

    ngx_queue_insert_after(q, &raw->queue);
}


/*
 * Takes size bytes at the ring's tail, evicting the oldest records until
 * max_events leaves room for one more and the bytes are free.  The caller
 * has checked that the ring can hold them at all.
 */

static u_char *
ngx_http_usage_ring_reserve_locked(ngx_http_usage_zone_t *zone, size_t size)
{
    u_char                  *p;
    ngx_http_usage_shctx_t  *sh;

    sh = zone->sh;

    while (zone->max_events && sh->raw_count >= zone->max_events) {
        (void) ngx_http_usage_raw_pop_locked(zone, INT64_MIN, 1);
    }

    for ( ;; ) {
        p = NULL;

        if (sh->raw_count == 0) {
            /* an empty ring starts over, whatever its positions were */
            sh->ring_head = sh->ring;
            sh->ring_wrap = NULL;
            sh->ring_laps++;
            p = sh->ring;

        } else if (sh->ring_wrap == NULL) {
            /* records in [head, tail): room after the tail, or before
             * the head once the ring wraps */
            if ((size_t) (sh->ring_end - sh->ring_tail) >= size) {
                p = sh->ring_tail;

            } else if ((size_t) (sh->ring_head - sh->ring) >= size) {
                sh->ring_wrap = sh->ring_tail;
                sh->ring_laps++;
                p = sh->ring;
            }

        } else if ((size_t) (sh->ring_head - sh->ring_tail) >= size) {
            /* records in [head, wrap) and [ring, tail) */
            p = sh->ring_tail;
        }

        if (p) {
            break;
        }

        ngx_http_usage_raw_evict_stored_locked(zone);
        sh->full_since_warned++;
    }

    sh->ring_tail = p + size;
    sh->ring_used += size;

    return p;
}


/*
 * Rolls an entity's minute buckets older than the minute span into hour
 * buckets and frees the buckets past the window.  Runs at most once a
 * minute per entity; each bucket is rolled once.  It never frees the
 * entity itself: the caller may be about to use it.
 */

void
ngx_http_usage_compact_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_entity_t *entity, int64_t now)
{
    int64_t                   cutoff, oldest;
    ngx_queue_t              *sq, *next_s;
    ngx_http_usage_series_t  *series;

    cutoff = ngx_http_usage_floor(now, NGX_HTTP_USAGE_MINUTE)
             - zone->minute_span;
    oldest = now - zone->retention;

    for (sq = ngx_queue_head(&entity->series);
         sq != ngx_queue_sentinel(&entity->series);
         sq = next_s)
    {
        next_s = ngx_queue_next(sq);
        series = ngx_queue_data(sq, ngx_http_usage_series_t, queue);

        ngx_http_usage_compact_series_locked(zone, series, cutoff, oldest);

        ngx_http_usage_series_release_locked(zone, series);
    }

    entity->compacted = ngx_http_usage_floor(now, NGX_HTTP_USAGE_MINUTE);

    ngx_http_usage_compact_min_end(entity);
}


/*
 * One series of compact_locked(): its buckets past the window ("oldest")
 * go, its minute buckets before "cutoff" become or join their hours.
 */

static void
ngx_http_usage_compact_series_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_series_t *series, int64_t cutoff, int64_t oldest)
{
    int64_t                   hour;
    ngx_queue_t              *q, *next;
    ngx_http_usage_bucket_t  *b, *prev;

    for (q = ngx_queue_head(&series->buckets);
         q != ngx_queue_sentinel(&series->buckets);
         q = next)
    {
        next = ngx_queue_next(q);
        b = ngx_queue_data(q, ngx_http_usage_bucket_t, queue);

        if (b->start + b->span <= oldest) {
            zone->sh->buckets_expired++;
            ngx_http_usage_bucket_free_locked(zone, series, b);
            continue;
        }

        if (b->start >= cutoff) {
            break;
        }

        if (b->span == NGX_HTTP_USAGE_HOUR) {
            continue;
        }

        hour = ngx_http_usage_floor(b->start, NGX_HTTP_USAGE_HOUR);

        prev = (ngx_queue_prev(q) != ngx_queue_sentinel(&series->buckets))
               ? ngx_queue_data(ngx_queue_prev(q),
                                ngx_http_usage_bucket_t, queue)
               : NULL;

        if (prev == NULL || prev->span != NGX_HTTP_USAGE_HOUR
            || prev->start != hour)
        {
            /* the first minute of its hour becomes the hour */
            b->start = hour;
            b->span = NGX_HTTP_USAGE_HOUR;
            continue;
        }

        ngx_http_usage_bucket_merge_locked(zone, series, prev, b);
    }
}


/*
 * A minute bucket joins the hour bucket before it: counts, sums and raw
 * events move to the hour, the minute is freed.
 */

static void
ngx_http_usage_bucket_merge_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_series_t *series, ngx_http_usage_bucket_t *prev,
    ngx_http_usage_bucket_t *b)
{
    ngx_queue_t           *rq;
    ngx_http_usage_raw_t  *raw;

    prev->count += b->count;
    prev->value += b->value;
    prev->raw_count += b->raw_count;

    if (!ngx_queue_empty(&b->raw)) {
        for (rq = ngx_queue_head(&b->raw);
             rq != ngx_queue_sentinel(&b->raw);
             rq = ngx_queue_next(rq))
        {
            raw = ngx_queue_data(rq, ngx_http_usage_raw_t, bucket_queue);
            raw->bucket = prev;
        }

        ngx_queue_add(&prev->raw, &b->raw);
        ngx_queue_init(&b->raw);
    }

    /* merged: the series' sums stay as they are */
    b->count = 0;
    b->value = 0;
    b->raw_count = 0;
    ngx_http_usage_bucket_free_locked(zone, series, b);
}


/* what is left, newest minutes included, for compact_due() */

static void
ngx_http_usage_compact_min_end(ngx_http_usage_entity_t *entity)
{
    ngx_queue_t              *q, *sq;
    ngx_http_usage_bucket_t  *b;
    ngx_http_usage_series_t  *series;

    entity->min_end = INT64_MAX;

    for (sq = ngx_queue_head(&entity->series);
         sq != ngx_queue_sentinel(&entity->series);
         sq = ngx_queue_next(sq))
    {
        series = ngx_queue_data(sq, ngx_http_usage_series_t, queue);

        for (q = ngx_queue_head(&series->buckets);
             q != ngx_queue_sentinel(&series->buckets);
             q = ngx_queue_next(q))
        {
            b = ngx_queue_data(q, ngx_http_usage_bucket_t, queue);
            entity->min_end = ngx_min(entity->min_end, b->start + b->span);
        }
    }
}


/*
 * Whether compact_locked() has work: once a minute the minute buckets
 * past "minutes" roll up into hours; at any time a bucket that the window
 * passed must leave before a total is read.  Otherwise a read or an insert
 * skips the walk over the entity's buckets.
 */

ngx_uint_t
ngx_http_usage_compact_due(ngx_http_usage_zone_t *zone,
    ngx_http_usage_entity_t *entity, int64_t now)
{
    return entity->compacted != ngx_http_usage_floor(now, NGX_HTTP_USAGE_MINUTE)
           || entity->min_end <= now - zone->retention;
}


/* the bucket (start, span) of a series, if it exists */

ngx_http_usage_bucket_t *
ngx_http_usage_bucket_lookup(ngx_http_usage_series_t *series, int64_t start,
    uint32_t span)
{
    return ngx_http_usage_bucket_in_locked(NULL, &series->buckets, start,
                                           span, 0, NULL);
}


/*
 * Finds or creates the bucket (start, span) of a series, kept in order of
 * start.  New events almost always land in the last bucket; a client's
 * earlier event time walks back at most the series' length, which the
 * retention window and the minute span bound.
 */

ngx_http_usage_bucket_t *
ngx_http_usage_bucket_get_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_series_t *series, int64_t start, uint32_t span)
{
    ngx_http_usage_bucket_t  *b;

    b = ngx_http_usage_bucket_lookup(series, start, span);
    if (b) {
        return b;
    }

    b = ngx_http_usage_bucket_in_locked(zone, &series->buckets, start, span,
                                        1, series->entity);

    if (b) {
        series->entity->nbuckets++;
        series->entity->min_end = ngx_min(series->entity->min_end,
                                          b->start + b->span);
    }

    return b;
}


/* a type's hour bucket for its store-wide total */

static ngx_http_usage_bucket_t *
ngx_http_usage_type_bucket_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_type_t *type, int64_t start, ngx_uint_t create,
    ngx_http_usage_entity_t *pin)
{
    return ngx_http_usage_bucket_in_locked(zone, &type->buckets, start,
                                           NGX_HTTP_USAGE_HOUR, create, pin);
}


static ngx_http_usage_bucket_t *
ngx_http_usage_bucket_in_locked(ngx_http_usage_zone_t *zone,
    ngx_queue_t *buckets, int64_t start, uint32_t span, ngx_uint_t create,
    ngx_http_usage_entity_t *pin)
{
    ngx_queue_t              *q;
    ngx_http_usage_bucket_t  *b, *nb;

    for (q = ngx_queue_last(buckets);
         q != ngx_queue_sentinel(buckets);
         q = ngx_queue_prev(q))
    {
        b = ngx_queue_data(q, ngx_http_usage_bucket_t, queue);

        if (b->start == start && b->span == span) {
            return b;
        }

        if (b->start < start) {
            break;
        }
    }

    if (!create) {
        return NULL;
    }

    nb = ngx_http_usage_alloc_locked(zone, sizeof(ngx_http_usage_bucket_t),
                                     pin);
    if (nb == NULL) {
        return NULL;
    }

    nb->start = start;
    nb->span = span;
    nb->count = 0;
    nb->value = 0;
    nb->raw_count = 0;
    ngx_queue_init(&nb->raw);

    /* after q: the last bucket that starts earlier, or the sentinel */
    ngx_queue_insert_after(q, &nb->queue);

    zone->sh->bucket_count++;

    return nb;
}


ngx_http_usage_type_t *
ngx_http_usage_type_get_locked(ngx_http_usage_zone_t *zone, ngx_str_t *name,
    ngx_http_usage_entity_t *pin)
{
    size_t                  i;
    ngx_http_usage_type_t  *t;

    t = ngx_http_usage_type_lookup(zone->sh, name);
    if (t) {
        return t;
    }

    t = ngx_http_usage_alloc_locked(zone, offsetof(ngx_http_usage_type_t, data)
                                          + name->len, pin);
    if (t == NULL) {
        return NULL;
    }

    ngx_memzero(t, offsetof(ngx_http_usage_type_t, data));
    t->node.key = ngx_http_usage_name_hash(name->data, name->len);
    ngx_queue_init(&t->buckets);
    t->len = (u_short) name->len;
    ngx_memcpy(t->data, name->data, name->len);

    /* answers copy the name as it is when it needs no escape */
    t->plain = 1;

    for (i = 0; i < name->len; i++) {
        if (!ngx_http_usage_json_plain(name->data[i])) {
            t->plain = 0;
            break;
        }
    }

    ngx_rbtree_insert(&zone->sh->types, &t->node);
    ngx_queue_insert_tail(&zone->sh->types_order, &t->order);
    zone->sh->type_count++;

    return t;
}


ngx_int_t
ngx_http_usage_type_add_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_type_t *type, int64_t start, uint64_t count)
{
    ngx_http_usage_bucket_t  *tb;

    tb = ngx_http_usage_type_bucket_locked(zone, type, start, 1, NULL);
    if (tb == NULL) {
        return NGX_ERROR;
    }

    tb->count += count;
    type->count += count;
    zone->sh->total += count;

    return NGX_OK;
}


/* the store-wide total of a type loses its hours past the window */

static void
ngx_http_usage_type_expire_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_type_t *type, int64_t now)
{
    ngx_queue_t              *q;
    ngx_http_usage_bucket_t  *b;

    while (!ngx_queue_empty(&type->buckets)) {
        q = ngx_queue_head(&type->buckets);
        b = ngx_queue_data(q, ngx_http_usage_bucket_t, queue);

        if (b->start + NGX_HTTP_USAGE_HOUR > now - zone->retention) {
            break;
        }

        type->count -= ngx_min(type->count, b->count);
        zone->sh->total -= ngx_min(zone->sh->total, b->count);

        ngx_queue_remove(&b->queue);
        ngx_slab_free_locked(zone->shpool, b);
        zone->sh->bucket_count--;
    }

    ngx_http_usage_type_release_locked(zone, type);
}


void
ngx_http_usage_store_expire_types_locked(ngx_http_usage_zone_t *zone,
    int64_t now)
{
    ngx_queue_t            *q, *next;
    ngx_http_usage_type_t  *type;

    for (q = ngx_queue_head(&zone->sh->types_order);
         q != ngx_queue_sentinel(&zone->sh->types_order);
         q = next)
    {
        next = ngx_queue_next(q);
        type = ngx_queue_data(q, ngx_http_usage_type_t, order);

        ngx_http_usage_type_expire_locked(zone, type, now);
    }
}


/* frees a series bucket; its raw events stay in the log, detached, and
 * what it still counts leaves the series' sums */

static void
ngx_http_usage_bucket_free_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_series_t *series, ngx_http_usage_bucket_t *b)
{
    ngx_queue_t           *q;
    ngx_http_usage_raw_t  *raw;

    ngx_http_usage_series_sub(series, b->count, b->value);

    while (!ngx_queue_empty(&b->raw)) {
        q = ngx_queue_head(&b->raw);
        raw = ngx_queue_data(q, ngx_http_usage_raw_t, bucket_queue);

        ngx_queue_remove(q);
        ngx_queue_init(q);
        raw->bucket = NULL;
    }

    ngx_queue_remove(&b->queue);
    ngx_slab_free_locked(zone->shpool, b);
    zone->sh->bucket_count--;
    series->entity->nbuckets--;

    if (ngx_queue_empty(&series->buckets)) {
        /* nothing left to count: exact again, even after lost sums */
        series->count = 0;
        series->value = 0;
    }
}


/*
 * Allocates from the slab, giving up aggregates of the least recently
 * updated entities while it is full.  "pin" is the entity being written:
 * its buckets are not taken.
 */

static void *
ngx_http_usage_alloc_locked(ngx_http_usage_zone_t *zone, size_t size,
    ngx_http_usage_entity_t *pin)
{
    void                  *p;
    ngx_uint_t             buckets, raws;
    ngx_http_usage_raw_t  *raw;

    buckets = 0;
    raws = 0;

    for ( ;; ) {
        p = ngx_slab_alloc_locked(zone->shpool, size);

        if (p != NULL) {
            return p;
        }

        zone->sh->full_since_warned++;

        /*
         * Aggregates of the least recently updated entities first, a
         * bounded number: a large slot (a very long name) needs whole free
         * pages, which takes giving up more small buckets, so it may give
         * up more, and is refused past that rather than wipe the totals.
         */
        if (buckets < ((size <= NGX_HTTP_USAGE_EVICT_SLOT)
                       ? NGX_HTTP_USAGE_EVICT_MAX
                       : 8 * NGX_HTTP_USAGE_EVICT_MAX)
            && ngx_http_usage_evict_aggregate_locked(zone, pin))
        {
            buckets++;
            continue;
        }

        /*
         * Then the oldest raw event, if that frees something: it holds
         * the series (and maybe the entity) of buckets already given up.
         */
        if (raws < 4 * NGX_HTTP_USAGE_EVICT_MAX
            && !ngx_queue_empty(&zone->sh->raw))
        {
            raw = ngx_queue_data(ngx_queue_head(&zone->sh->raw),
                                 ngx_http_usage_raw_t, queue);

            if (ngx_queue_empty(&raw->series->buckets)
                && raw->series->entity != pin
                && ngx_http_usage_raw_pop_locked(zone, INT64_MIN, 1))
            {
                raws++;
                continue;
            }
        }

        return NULL;
    }
}


static ngx_uint_t
ngx_http_usage_evict_aggregate_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_entity_t *pin)
{
    ngx_uint_t                n;
    ngx_queue_t              *q, *sq, *next;
    ngx_http_usage_idx_t     *idx;
    ngx_http_usage_entity_t  *entity;
    ngx_http_usage_series_t  *series;
    ngx_http_usage_bucket_t  *b, *oldest;
    ngx_http_usage_shctx_t   *sh;

    sh = zone->sh;
    n = 0;

    for (q = ngx_queue_head(&sh->lru);
         q != ngx_queue_sentinel(&sh->lru) && n < NGX_HTTP_USAGE_EVICT_SCAN;
         q = ngx_queue_next(q), n++)
    {
        entity = ngx_queue_data(q, ngx_http_usage_entity_t, lru);

        if (entity == pin) {
            continue;
        }

        oldest = NULL;
        series = NULL;

        for (sq = ngx_queue_head(&entity->series);
             sq != ngx_queue_sentinel(&entity->series);
             sq = ngx_queue_next(sq))
        {
            ngx_http_usage_series_t  *s;

            s = ngx_queue_data(sq, ngx_http_usage_series_t, queue);

            if (ngx_queue_empty(&s->buckets)) {
                continue;
            }

            b = ngx_queue_data(ngx_queue_head(&s->buckets),
                               ngx_http_usage_bucket_t, queue);

            if (oldest == NULL || b->start < oldest->start) {
                oldest = b;
                series = s;
            }
        }

        if (oldest == NULL) {
            /* held only by raw events: out of the way of the next scan */
            next = ngx_queue_prev(q);
            ngx_queue_remove(q);
            ngx_queue_insert_tail(&sh->lru, q);
            q = next;
            continue;
        }

        ngx_http_usage_bucket_free_locked(zone, series, oldest);
        sh->buckets_evicted++;

        ngx_http_usage_series_release_locked(zone, series);
        (void) ngx_http_usage_entity_release_locked(zone, entity);

        return 1;
    }

    /* last, the oldest client ids: duplicates may then be stored again */
    if (!ngx_queue_empty(&sh->ids_order)) {
        q = ngx_queue_head(&sh->ids_order);
        idx = ngx_queue_data(q, ngx_http_usage_idx_t, queue);

        ngx_http_usage_idx_free_locked(zone, idx);
        sh->ids_evicted++;

        return 1;
    }

    return 0;
}


/* red-black trees of names: entities and types, whose names sit at the
 * given offset past the node */

static void
ngx_http_usage_name_insert(ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel, size_t off)
{
    u_char              *d1, *d2;
    u_short              l1, l2;
    ngx_rbtree_node_t  **p;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            l1 = *(u_short *) ((u_char *) node + off);
            l2 = *(u_short *) ((u_char *) temp + off);
            d1 = (u_char *) node + off + sizeof(u_short);
            d2 = (u_char *) temp + off + sizeof(u_short);

            p = (ngx_memn2cmp(d1, d2, l1, l2) < 0) ? &temp->left
                                                   : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static void
ngx_http_usage_entity_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_http_usage_name_insert(temp, node, sentinel,
                               offsetof(ngx_http_usage_entity_t, len));
}


static void
ngx_http_usage_type_insert(ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel)
{
    ngx_http_usage_name_insert(temp, node, sentinel,
                               offsetof(ngx_http_usage_type_t, len));
}


static ngx_rbtree_node_t *
ngx_http_usage_name_lookup(ngx_rbtree_t *tree, uint32_t hash, ngx_str_t *name,
    size_t off)
{
    u_char             *data;
    u_short             len;
    ngx_int_t           rc;
    ngx_rbtree_node_t  *node, *sentinel;

    node = tree->root;
    sentinel = tree->sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        len = *(u_short *) ((u_char *) node + off);
        data = (u_char *) node + off + sizeof(u_short);

        rc = ngx_memn2cmp(name->data, data, name->len, len);

        if (rc == 0) {
            return node;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


ngx_http_usage_entity_t *
ngx_http_usage_entity_lookup(ngx_http_usage_shctx_t *sh, ngx_str_t *name)
{
    return (ngx_http_usage_entity_t *)
        ngx_http_usage_name_lookup(&sh->entities,
                                   ngx_http_usage_name_hash(name->data,
                                                            name->len),
                                   name,
                                   offsetof(ngx_http_usage_entity_t, len));
}


ngx_http_usage_type_t *
ngx_http_usage_type_lookup(ngx_http_usage_shctx_t *sh, ngx_str_t *name)
{
    return (ngx_http_usage_type_t *)
        ngx_http_usage_name_lookup(&sh->types,
                                   ngx_http_usage_name_hash(name->data,
                                                            name->len),
                                   name,
                                   offsetof(ngx_http_usage_type_t, len));
}


static ngx_http_usage_entity_t *
ngx_http_usage_entity_get_locked(ngx_http_usage_zone_t *zone,
    ngx_str_t *name, uint32_t hash)
{
    ngx_http_usage_entity_t  *e;
    ngx_http_usage_shctx_t   *sh;

    sh = zone->sh;

    e = (ngx_http_usage_entity_t *)
        ngx_http_usage_name_lookup(&sh->entities, hash, name,
                                   offsetof(ngx_http_usage_entity_t, len));
    if (e) {
        return e;
    }

    e = ngx_http_usage_alloc_locked(zone,
                                    offsetof(ngx_http_usage_entity_t, data)
                                    + name->len, NULL);
    if (e == NULL) {
        return NULL;
    }

    /* eviction inside the allocation never adds names: no re-lookup */

    ngx_memzero(e, offsetof(ngx_http_usage_entity_t, data));
    e->min_end = INT64_MAX;
    e->node.key = hash;
    ngx_queue_init(&e->series);
    ngx_queue_init(&e->raw);
    e->len = (u_short) name->len;
    ngx_memcpy(e->data, name->data, name->len);

    ngx_rbtree_insert(&sh->entities, &e->node);
    ngx_queue_insert_tail(&sh->lru, &e->lru);
    sh->entity_count++;

    return e;
}


ngx_http_usage_entity_t *
ngx_http_usage_entity_hold_locked(ngx_http_usage_zone_t *zone,
    ngx_str_t *name, int64_t updated)
{
    ngx_http_usage_entity_t  *e;

    e = ngx_http_usage_entity_get_locked(zone, name,
                            ngx_http_usage_name_hash(name->data, name->len));
    if (e) {
        e->updated = ngx_max(e->updated, updated);
    }

    return e;
}


static ngx_http_usage_series_t *
ngx_http_usage_series_find(ngx_http_usage_entity_t *entity,
    ngx_http_usage_type_t *type)
{
    ngx_queue_t              *q;
    ngx_http_usage_series_t  *s;

    for (q = ngx_queue_head(&entity->series);
         q != ngx_queue_sentinel(&entity->series);
         q = ngx_queue_next(q))
    {
        s = ngx_queue_data(q, ngx_http_usage_series_t, queue);

        if (s->type == type) {
            return s;
        }
    }

    return NULL;
}


static ngx_http_usage_series_t *
ngx_http_usage_series_create_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_entity_t *entity, ngx_str_t *type_name, uint32_t hash)
{
    ngx_http_usage_type_t    *t;
    ngx_http_usage_series_t  *s;
    ngx_http_usage_shctx_t   *sh;

    sh = zone->sh;

    t = (ngx_http_usage_type_t *)
        ngx_http_usage_name_lookup(&sh->types, hash, type_name,
                                   offsetof(ngx_http_usage_type_t, len));

    if (t == NULL) {
        t = ngx_http_usage_type_get_locked(zone, type_name, entity);
        if (t == NULL) {
            return NULL;
        }
    }

    /* the type is held while the series is allocated */
    t->refs++;

    s = ngx_http_usage_alloc_locked(zone, sizeof(ngx_http_usage_series_t),
                                    entity);
    if (s == NULL) {
        t->refs--;
        ngx_http_usage_type_release_locked(zone, t);
        return NULL;
    }

    ngx_queue_init(&s->buckets);
    s->entity = entity;
    s->type = t;
    s->raw_refs = 0;
    s->count = 0;
    s->value = 0;
    ngx_queue_insert_tail(&entity->series, &s->queue);
    entity->nseries++;

    return s;
}


ngx_http_usage_series_t *
ngx_http_usage_series_get_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_entity_t *entity, ngx_str_t *type_name)
{
    ngx_http_usage_type_t    *t;
    ngx_http_usage_series_t  *s;

    t = ngx_http_usage_type_lookup(zone->sh, type_name);

    if (t) {
        s = ngx_http_usage_series_find(entity, t);
        if (s) {
            return s;
        }
    }

    return ngx_http_usage_series_create_locked(zone, entity, type_name,
                  ngx_http_usage_name_hash(type_name->data, type_name->len));
}


/* a series with no bucket and no raw event left goes */

void
ngx_http_usage_series_release_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_series_t *series)
{
    ngx_http_usage_type_t  *type;

    if (!ngx_queue_empty(&series->buckets) || series->raw_refs) {
        return;
    }

    type = series->type;

    ngx_queue_remove(&series->queue);
    series->entity->nseries--;
    ngx_slab_free_locked(zone->shpool, series);

    type->refs--;
    ngx_http_usage_type_release_locked(zone, type);
}


/* an entity with no series and no raw event left goes; 1 if it went */

ngx_uint_t
ngx_http_usage_entity_release_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_entity_t *entity)
{
    if (!ngx_queue_empty(&entity->series) || entity->raw_count) {
        return 0;
    }

    ngx_rbtree_delete(&zone->sh->entities, &entity->node);
    ngx_queue_remove(&entity->lru);
    ngx_slab_free_locked(zone->shpool, entity);
    zone->sh->entity_count--;

    return 1;
}


void
ngx_http_usage_type_release_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_type_t *type)
{
    if (type->refs || type->raw_count || !ngx_queue_empty(&type->buckets)) {
        return;
    }

    if (zone->sh->type_cursor == &type->order) {
        zone->sh->type_cursor = ngx_queue_next(&type->order);

        if (zone->sh->type_cursor == ngx_queue_sentinel(&zone->sh->types_order))
        {
            zone->sh->type_cursor = NULL;
        }
    }

    ngx_rbtree_delete(&zone->sh->types, &type->node);
    ngx_queue_remove(&type->order);
    ngx_slab_free_locked(zone->shpool, type);
    zone->sh->type_count--;
}


/*
 * Client ids: a tree keyed by a hash of entity and id, and a queue in the
 * order they came, which bounds them (max_ids) and ages them out.  The
 * hash is SipHash under the zone's secret key, so that a client cannot
 * choose ids that share one; and an entry is found only by its entity and
 * id, compared byte for byte: equal hashes of distinct ids are two
 * entries, ordered by their bytes.
 */

uint64_t
ngx_http_usage_idx_hash(ngx_http_usage_shctx_t *sh, ngx_str_t *entity,
    ngx_str_t *id)
{
    u_char                    len[2];
    uint64_t                  h;
    ngx_http_usage_siphash_t  sip;

    /* the entity's length first: no two pairs give one message */
    len[0] = (u_char) (entity->len & 0xff);
    len[1] = (u_char) (entity->len >> 8);

    ngx_http_usage_siphash_init(&sip, &sh->id_key);
    ngx_http_usage_siphash_update(&sip, len, 2);
    ngx_http_usage_siphash_update(&sip, entity->data, entity->len);
    ngx_http_usage_siphash_update(&sip, id->data, id->len);

    h = ngx_http_usage_siphash_final(&sip);

#if (NGX_HTTP_USAGE_ID_HASH_BITS < 64)
    h &= ((uint64_t) 1 << NGX_HTTP_USAGE_ID_HASH_BITS) - 1;
#endif

    return h;
}


/* the order of the tree: hash, then entity, then id */

static ngx_int_t
ngx_http_usage_idx_cmp(uint64_t hash, ngx_str_t *entity, ngx_str_t *id,
    ngx_http_usage_idx_t *idx)
{
    ngx_int_t  rc;

    if (hash != idx->hash) {
        return (hash < idx->hash) ? -1 : 1;
    }

    if (entity->len != idx->entity_len) {
        return (entity->len < idx->entity_len) ? -1 : 1;
    }

    rc = ngx_memcmp(entity->data, idx->data, entity->len);
    if (rc != 0) {
        return rc;
    }

    if (id->len != idx->id_len) {
        return (id->len < idx->id_len) ? -1 : 1;
    }

    return ngx_memcmp(id->data, idx->data + idx->entity_len, id->len);
}


static ngx_http_usage_idx_t *
ngx_http_usage_idx_lookup(ngx_http_usage_shctx_t *sh, uint64_t hash,
    ngx_str_t *entity, ngx_str_t *id)
{
    ngx_int_t              rc;
    ngx_rbtree_key_t       key;
    ngx_rbtree_node_t     *node, *sentinel;

    key = (ngx_rbtree_key_t) hash;
    node = sh->ids.root;
    sentinel = sh->ids.sentinel;

    while (node != sentinel) {

        if (key != node->key) {
            node = (key < node->key) ? node->left : node->right;
            continue;
        }

        rc = ngx_http_usage_idx_cmp(hash, entity, id,
                                    (ngx_http_usage_idx_t *) node);

        if (rc == 0) {
            return (ngx_http_usage_idx_t *) node;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_http_usage_idx_insert(ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel)
{
    ngx_str_t              entity, id;
    ngx_rbtree_node_t    **p;
    ngx_http_usage_idx_t  *idx;

    idx = (ngx_http_usage_idx_t *) node;

    entity.len = idx->entity_len;
    entity.data = idx->data;
    id.len = idx->id_len;
    id.data = idx->data + idx->entity_len;

    for ( ;; ) {

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            p = (ngx_http_usage_idx_cmp(idx->hash, &entity, &id,
                                        (ngx_http_usage_idx_t *) temp)
                 < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/* what the slab takes for size bytes: a power of two, or whole pages */

static size_t
ngx_http_usage_idx_slot(size_t size)
{
    size_t  slot;

    if (size > ngx_pagesize / 2) {
        return ngx_align(size, ngx_pagesize);
    }

    for (slot = 8; slot < size; slot <<= 1) { /* void */ }

    return slot;
}


/* hash: ngx_http_usage_idx_hash() of entity and id */

ngx_http_usage_idx_t *
ngx_http_usage_idx_add_locked(ngx_http_usage_zone_t *zone, uint64_t hash,
    ngx_str_t *entity, ngx_str_t *id, int64_t time, ngx_http_usage_raw_t *raw,
    ngx_http_usage_entity_t *pin)
{
    size_t                   size, slot;
    ngx_queue_t             *q;
    ngx_http_usage_idx_t    *idx;
    ngx_http_usage_shctx_t  *sh;

    sh = zone->sh;

    idx = ngx_http_usage_idx_lookup(sh, hash, entity, id);

    if (idx) {
        return idx;
    }

    size = offsetof(ngx_http_usage_idx_t, data) + entity->len + id->len;
    slot = ngx_http_usage_idx_slot(size);

    /*
     * Bounded in number and in bytes: long ids make large entries, and the
     * oldest ids go first, never other entities' totals.
     */
    while ((sh->id_count >= zone->max_ids
            || sh->id_bytes + slot > zone->max_id_bytes)
           && !ngx_queue_empty(&sh->ids_order))
    {
        q = ngx_queue_head(&sh->ids_order);
        ngx_http_usage_idx_free_locked(zone,
                              ngx_queue_data(q, ngx_http_usage_idx_t, queue));
        sh->ids_evicted++;
    }

    if (raw && (raw->id_len == 0 || *ngx_http_usage_raw_idx(raw))) {
        /* a snapshot's entry for an event without an id, or a second
         * entry for one: it must not point at the event */
        raw = NULL;
    }

    /* room from aggregates only: evicting raw events could take "raw";
     * the entity being written is pinned */
    for ( ;; ) {
        idx = ngx_slab_alloc_locked(zone->shpool, size);
        if (idx) {
            break;
        }

        if (!ngx_http_usage_evict_aggregate_locked(zone, pin)) {
            return NULL;
        }
    }

    idx->node.key = (ngx_rbtree_key_t) hash;
    idx->hash = hash;
    idx->time = time;
    idx->raw = raw;
    idx->entity_len = (u_short) entity->len;
    idx->id_len = (u_short) id->len;
    ngx_memcpy(ngx_cpymem(idx->data, entity->data, entity->len),
               id->data, id->len);

    if (raw) {
        *ngx_http_usage_raw_idx(raw) = idx;
    }

    ngx_rbtree_insert(&sh->ids, &idx->node);
    ngx_queue_insert_tail(&sh->ids_order, &idx->queue);
    sh->id_count++;
    sh->id_bytes += slot;

    return idx;
}


static void
ngx_http_usage_idx_free_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_idx_t *idx)
{
    if (idx->raw) {
        *ngx_http_usage_raw_idx(idx->raw) = NULL;
    }

    zone->sh->id_bytes -= ngx_http_usage_idx_slot(
                              offsetof(ngx_http_usage_idx_t, data)
                              + idx->entity_len + idx->id_len);

    ngx_rbtree_delete(&zone->sh->ids, &idx->node);
    ngx_queue_remove(&idx->queue);
    ngx_slab_free_locked(zone->shpool, idx);
    zone->sh->id_count--;
}


/* eventsLastHour: per-minute counts in a circle of slots */

static void
ngx_http_usage_minute_add(ngx_http_usage_shctx_t *sh, int64_t time,
    ngx_int_t n)
{
    int64_t     minute;
    ngx_uint_t  i;

    minute = ngx_http_usage_floor(time, NGX_HTTP_USAGE_MINUTE);
    i = (ngx_uint_t) (minute / NGX_HTTP_USAGE_MINUTE)
        % NGX_HTTP_USAGE_MINUTE_SLOTS;

    if (sh->minute_start[i] != minute) {
        if (n < 0 || sh->minute_start[i] > minute) {
            return;     /* a slot already reused for a later minute */
        }

        sh->minute_start[i] = minute;
        sh->minute_count[i] = 0;
    }

    if (n < 0 && sh->minute_count[i] == 0) {
        return;
    }

    sh->minute_count[i] += n;
}


ngx_int_t
ngx_http_usage_copy_raw(ngx_pool_t *pool, ngx_http_usage_record_t *rec,
    ngx_http_usage_raw_t *raw)
{
    u_char                   *p;
    ngx_http_usage_type_t    *type;
    ngx_http_usage_entity_t  *entity;

    entity = raw->series->entity;
    type = raw->series->type;

    p = ngx_pnalloc(pool, entity->len + type->len + raw->id_len
                          + raw->metadata_len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(rec->uuid, raw->uuid, 16);
    rec->time = raw->time;
    rec->created = raw->created;
    rec->value = raw->value;

    rec->entity.data = p;
    rec->entity.len = entity->len;
    p = ngx_cpymem(p, entity->data, entity->len);

    rec->type.data = p;
    rec->type.len = type->len;
    p = ngx_cpymem(p, type->data, type->len);

    rec->id.data = p;
    rec->id.len = raw->id_len;
    p = ngx_cpymem(p, ngx_http_usage_raw_id(raw), raw->id_len);

    rec->metadata.data = p;
    rec->metadata.len = raw->metadata_len;
    ngx_memcpy(p, ngx_http_usage_raw_id(raw) + raw->id_len,
               raw->metadata_len);

    return NGX_OK;
}
