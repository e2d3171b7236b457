
/*
 * The store outside shared memory: a versioned binary snapshot, used for
 *
 *   - the state file: saved atomically (a temporary file, then rename)
 *     at an interval by whichever worker's timer fires first, by workers
 *     as they exit and by the master last; loaded when a fresh zone is
 *     created (start, binary upgrade);
 *
 *   - a zone resized by a reload: the old zone is still mapped while the
 *     new cycle is initialized, so its snapshot is loaded into the new
 *     one at once, with nothing written to disk.
 *
 * The snapshot is taken under the zone's lock into process memory; files
 * are written and read without it.  A snapshot that is truncated, from
 * another format version or another machine's byte order, or fails its
 * checksum is reported and ignored: nginx starts with an empty store.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <math.h>

#include "ngx_http_usage_store.h"
#include "ngx_http_usage_store_internal.h"
#include "ngx_http_usage_state.h"
#include "ngx_http_usage_json.h"
#include "ngx_http_usage_text.h"
#include "ngx_http_usage_time.h"


#define NGX_HTTP_USAGE_STATE_MAGIC    "NGXUSAGE"
/*
 * 2: client ids are saved with their entity and id (1 had a hash only);
 * a file of version 1 is still read, and its ids that no longer had their
 * event in the log are left out.
 * 3: the fleet's part of the zone follows the ids (usage_sync: the
 * origin, its seq, the read position and the origins' windows); files of
 * versions 1 and 2 have none.
 * 4: the fleet's part also has, after the read position, the stream's
 * epoch (a file of version 3: none, the zone takes Redis's) and the
 * receipt of the oldest event Redis did not have (0: none).
 */
#define NGX_HTTP_USAGE_STATE_VERSION  4
#define NGX_HTTP_USAGE_STATE_ORDER    0x01020304
#define NGX_HTTP_USAGE_STATE_NONE     0xffffffff


typedef struct {
    u_char                       magic[8];
    uint32_t                     version;
    uint32_t                     order;       /* byte order of the writer */
    uint64_t                     length;      /* of the payload */
    uint32_t                     crc;         /* of the payload */
    uint32_t                     generation;  /* copies of the data set */
    uint64_t                     dataset;     /* which data set */
    int64_t                      saved_at;
    int64_t                      start_time;
    int64_t                      last_created;
} ngx_http_usage_state_header_t;


/* a growing output buffer in process memory */
typedef struct {
    u_char                      *start;
    u_char                      *pos;
    u_char                      *end;
    ngx_uint_t                   failed;
} ngx_http_usage_wbuf_t;


/* a bounds-checked reader */
typedef struct {
    u_char                      *pos;
    u_char                      *end;
    ngx_uint_t                   failed;
    uint32_t                     version;     /* of the snapshot */
    ngx_uint_t                   skipped;     /* records left out: names
                                                 or metadata that the API
                                                 would have refused */
} ngx_http_usage_rbuf_t;


/* the store's counters of what this instance did */
typedef struct {
    uint64_t                     recorded;
    uint64_t                     duplicates;
    uint64_t                     raw_evicted;
    uint64_t                     raw_expired;
    uint64_t                     buckets_evicted;
    uint64_t                     buckets_expired;
    uint64_t                     ids_evicted;
    ngx_atomic_uint_t            dropped;
} ngx_http_usage_state_counters_t;


/* what the sections of one walk of a snapshot share */
typedef struct {
    ngx_http_usage_zone_t       *zone;
    ngx_http_usage_rbuf_t       *r;
    ngx_uint_t                   apply;
    ngx_pool_t                  *pool;        /* of the metadata's JSON
                                                 checks in a worker; NULL
                                                 in the master */

    /* with "apply", the records loaded, by their place in the snapshot */
    ngx_http_usage_type_t      **types;
    ngx_http_usage_entity_t    **entities;
    ngx_http_usage_raw_t       **raws;

    uint32_t                     ntypes;
    uint32_t                     nentities;
    uint32_t                     nraw;
    ngx_uint_t                   first;       /* the first raw event that
                                                 a smaller ring kept */
} ngx_http_usage_state_ctx_t;


static ngx_int_t ngx_http_usage_state_restore(ngx_shm_zone_t *shm_zone,
    ngx_http_usage_zone_t *old);
static u_char *ngx_http_usage_state_dump(ngx_http_usage_zone_t *zone,
    int64_t now, size_t *len, ngx_msec_t *locked,
    ngx_http_usage_state_snapshot_t *snap);
static void ngx_http_usage_state_dump_counters(ngx_http_usage_wbuf_t *w,
    ngx_http_usage_shctx_t *sh);
static void ngx_http_usage_state_dump_types(ngx_http_usage_wbuf_t *w,
    ngx_http_usage_shctx_t *sh);
static void ngx_http_usage_state_dump_entities(ngx_http_usage_wbuf_t *w,
    ngx_http_usage_shctx_t *sh);
static void ngx_http_usage_state_dump_series(ngx_http_usage_wbuf_t *w,
    ngx_http_usage_series_t *series);
static void ngx_http_usage_state_dump_raw(ngx_http_usage_wbuf_t *w,
    ngx_http_usage_shctx_t *sh);
static void ngx_http_usage_state_dump_ids(ngx_http_usage_wbuf_t *w,
    ngx_http_usage_shctx_t *sh);
static void ngx_http_usage_state_dump_fleet(ngx_http_usage_wbuf_t *w,
    ngx_http_usage_shctx_t *sh, ngx_http_usage_state_snapshot_t *snap);
static ngx_int_t ngx_http_usage_state_walk_fleet(
    ngx_http_usage_state_ctx_t *ctx);
static void ngx_http_usage_state_dump_header(ngx_http_usage_wbuf_t *w,
    int64_t now);
static uint32_t ngx_http_usage_state_count(ngx_queue_t *queue);
static void ngx_http_usage_wput(ngx_http_usage_wbuf_t *w, void *data,
    size_t len);
static void ngx_http_usage_wreserve(ngx_http_usage_wbuf_t *w, size_t len);
static ngx_int_t ngx_http_usage_state_load(ngx_http_usage_zone_t *zone,
    u_char *data, size_t len, ngx_log_t *log, const char *from);
static ngx_int_t ngx_http_usage_state_check(ngx_http_usage_zone_t *zone,
    u_char *data, size_t len, ngx_log_t *log, const char *from,
    ngx_http_usage_rbuf_t *r);
static void ngx_http_usage_state_loaded(ngx_http_usage_zone_t *zone,
    ngx_http_usage_rbuf_t *r, ngx_log_t *log, const char *from);
static void ngx_http_usage_state_counters_save(ngx_http_usage_shctx_t *sh,
    ngx_http_usage_state_counters_t *c);
static void ngx_http_usage_state_counters_restore(
    ngx_http_usage_shctx_t *sh, ngx_http_usage_state_counters_t *c);
static ngx_int_t ngx_http_usage_state_walk(ngx_http_usage_zone_t *zone,
    ngx_http_usage_rbuf_t *r, ngx_uint_t apply, ngx_pool_t *pool);
static void ngx_http_usage_state_walk_counters(
    ngx_http_usage_state_ctx_t *ctx);
static ngx_int_t ngx_http_usage_state_walk_types(
    ngx_http_usage_state_ctx_t *ctx);
static ngx_int_t ngx_http_usage_state_walk_entities(
    ngx_http_usage_state_ctx_t *ctx);
static ngx_int_t ngx_http_usage_state_walk_entity(
    ngx_http_usage_state_ctx_t *ctx, uint32_t i);
static ngx_int_t ngx_http_usage_state_walk_series(
    ngx_http_usage_state_ctx_t *ctx, ngx_http_usage_entity_t *entity);
static ngx_int_t ngx_http_usage_state_walk_raw(
    ngx_http_usage_state_ctx_t *ctx);
static ngx_int_t ngx_http_usage_state_walk_event(
    ngx_http_usage_state_ctx_t *ctx, uint32_t i);
static ngx_int_t ngx_http_usage_state_walk_ids(ngx_http_usage_zone_t *zone,
    ngx_http_usage_rbuf_t *r, ngx_uint_t apply, ngx_http_usage_raw_t **raws,
    uint32_t nraw, ngx_uint_t first);
static ngx_int_t ngx_http_usage_state_id_entry(ngx_http_usage_rbuf_t *r,
    ngx_http_usage_raw_t **raws, uint32_t nraw, ngx_uint_t first,
    ngx_str_t *entity, ngx_str_t *id, ngx_http_usage_raw_t **raw);
static ngx_uint_t ngx_http_usage_state_name_ok(ngx_str_t *name);
static void ngx_http_usage_state_unpin(ngx_http_usage_zone_t *zone,
    ngx_http_usage_type_t **types, ngx_uint_t ntypes,
    ngx_http_usage_entity_t **entities, ngx_uint_t nentities);
static ngx_uint_t ngx_http_usage_state_time(int64_t t);
static void ngx_http_usage_rget(ngx_http_usage_rbuf_t *r, void *data,
    size_t len);
static u_char *ngx_http_usage_rskip(ngx_http_usage_rbuf_t *r, size_t len);
static u_char *ngx_http_usage_state_read(ngx_http_usage_zone_t *zone,
    ngx_log_t *log, size_t *len);
static ngx_int_t ngx_http_usage_state_write(ngx_http_usage_zone_t *zone,
    u_char *data, size_t len, ngx_log_t *log);
static ngx_uint_t ngx_http_usage_state_taken_over(ngx_http_usage_zone_t *zone,
    ngx_log_t *log);
static void ngx_http_usage_state_timer(ngx_event_t *ev);
static ngx_int_t ngx_http_usage_state_claim(ngx_http_usage_zone_t *zone,
    ngx_log_t *log);
static void ngx_http_usage_state_release(ngx_http_usage_zone_t *zone);
static void ngx_http_usage_state_write_out(ngx_http_usage_zone_t *zone,
    ngx_log_t *log);
#if (NGX_THREADS)
static void ngx_http_usage_state_thread(void *data, ngx_log_t *log);
static void ngx_http_usage_state_saved(ngx_event_t *ev);
#endif
static ngx_msec_t ngx_http_usage_elapsed(struct timeval *from,
    struct timeval *to);


#define ngx_http_usage_wval(w, v)  ngx_http_usage_wput(w, &(v), sizeof(v))
#define ngx_http_usage_rval(r, v)  ngx_http_usage_rget(r, &(v), sizeof(v))


/*
 * The zone's init callback.  A zone taken over on reload keeps its store
 * as it is; a fresh one (nginx maps a zone whose size changed anew) is
 * filled from the old cycle's zone, which is still mapped while its
 * workers serve, or else from the state file.
 */

ngx_int_t
ngx_http_usage_state_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_int_t  rc;

    rc = ngx_http_usage_store_init_zone(shm_zone, data);

    if (rc == NGX_DONE) {
        rc = ngx_http_usage_state_restore(shm_zone,
                                       ngx_http_usage_store_old_zone(shm_zone));
    }

    if (rc != NGX_OK) {
        return rc;
    }

    /* after the restore: the fleet's part knows whether the zone is new */
    return ngx_http_usage_store_fleet_init(shm_zone->data, shm_zone->shm.log);
}


/* called from init_zone for a fresh zone, in the master */

static ngx_int_t
ngx_http_usage_state_restore(ngx_shm_zone_t *shm_zone,
    ngx_http_usage_zone_t *old)
{
    u_char                 *data;
    size_t                  len;
    ngx_time_t             *tp;
    ngx_http_usage_zone_t  *zone;

    zone = shm_zone->data;

    /* "nginx -t" and "nginx -s" map the zones too: they load nothing */
    if (ngx_test_config || ngx_process == NGX_PROCESS_SIGNALLER) {
        return NGX_OK;
    }

    tp = ngx_timeofday();

    if (old) {
        /* the old workers keep writing until they exit: what they take
         * after this copy stays in the old zone (and its last save) */
        data = ngx_http_usage_state_dump(old,
                                   (int64_t) tp->sec * 1000 + tp->msec, &len,
                                   NULL, NULL);
        if (data == NULL) {
            ngx_log_error(NGX_LOG_ALERT, shm_zone->shm.log, 0,
                          "usage zone \"%V\" was resized and its events "
                          "could not be copied: out of memory",
                          &shm_zone->shm.name);
            return NGX_OK;
        }

        (void) ngx_http_usage_state_load(zone, data, len, shm_zone->shm.log,
                                         "the resized zone");
        ngx_free(data);

        /*
         * The traffic counters are not in a snapshot (nor in the state
         * file): a resized zone takes them as they are, so that they do
         * not start over on a reload.
         */
        ngx_memcpy((void *) &zone->sh->traffic, (void *) &old->sh->traffic,
                   sizeof(ngx_http_usage_traffic_t));

        return NGX_OK;
    }

    if (zone->state_file.len == 0) {
        return NGX_OK;
    }

    data = ngx_http_usage_state_read(zone, shm_zone->shm.log, &len);
    if (data == NULL) {
        return NGX_OK;
    }

    (void) ngx_http_usage_state_load(zone, data, len, shm_zone->shm.log,
                                     (char *) zone->state_file.data);
    ngx_free(data);

    return NGX_OK;
}


void
ngx_http_usage_state_init_worker(ngx_cycle_t *cycle,
    ngx_http_usage_zone_t *zone)
{
    if (zone->state_file.len == 0 || zone->sh == NULL) {
        return;
    }

    zone->save_event.handler = ngx_http_usage_state_timer;
    zone->save_event.data = zone;
    zone->save_event.log = cycle->log;

    /* a pending save never holds a worker back from exiting */
    zone->save_event.cancelable = 1;

#if (NGX_THREADS)

    if (zone->thread_pool) {
        zone->save_task = ngx_thread_task_alloc(cycle->pool,
                                              sizeof(ngx_http_usage_zone_t *));
        if (zone->save_task) {
            *(ngx_http_usage_zone_t **) zone->save_task->ctx = zone;
            zone->save_task->handler = ngx_http_usage_state_thread;
            zone->save_task->event.handler = ngx_http_usage_state_saved;
            zone->save_task->event.data = zone;
            zone->save_task->event.log = cycle->log;
        }
    }

#endif

    ngx_add_timer(&zone->save_event, zone->state_interval);
}


/*
 * The periodic save.  With nginx's thread pools, the snapshot and the
 * write run in a thread of the "default" pool, so that the worker's event
 * loop never waits for the disk; without, in the worker itself.
 */

static void
ngx_http_usage_state_timer(ngx_event_t *ev)
{
    ngx_http_usage_zone_t  *zone = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

#if (NGX_THREADS)

    if (zone->save_task) {
        if (ngx_http_usage_state_claim(zone, ev->log) != NGX_OK) {
            ngx_add_timer(ev, zone->state_interval);
            return;
        }

        if (ngx_thread_task_post(zone->thread_pool, zone->save_task)
            == NGX_OK)
        {
            /* the timer is set again when the save is done */
            return;
        }

        ngx_http_usage_state_write_out(zone, ev->log);
        ngx_http_usage_state_release(zone);

        ngx_add_timer(ev, zone->state_interval);
        return;
    }

#endif

    ngx_http_usage_state_save(zone, ev->log);

    ngx_add_timer(ev, zone->state_interval);
}


#if (NGX_THREADS)

static void
ngx_http_usage_state_thread(void *data, ngx_log_t *log)
{
    ngx_http_usage_zone_t  *zone = *(ngx_http_usage_zone_t **) data;

    ngx_http_usage_state_write_out(zone, log);
}


static void
ngx_http_usage_state_saved(ngx_event_t *ev)
{
    ngx_http_usage_zone_t  *zone = ev->data;

    ngx_http_usage_state_release(zone);

    if (!(ngx_exiting || ngx_quit || ngx_terminate)) {
        ngx_add_timer(&zone->save_event, zone->state_interval);
    }
}

#endif


/*
 * Saves the store now if it changed since the last save: the timer
 * without threads, exiting workers and the master.
 */

void
ngx_http_usage_state_save(ngx_http_usage_zone_t *zone, ngx_log_t *log)
{
    if (ngx_http_usage_state_claim(zone, log) != NGX_OK) {
        return;
    }

    ngx_http_usage_state_write_out(zone, log);
    ngx_http_usage_state_release(zone);
}


/*
 * One process saves at a time: the zone's "saver" holds its pid, and one
 * that died saving is recognized by its pid and replaced.  NGX_OK: this
 * process is the saver and there is something to save.
 */

static ngx_int_t
ngx_http_usage_state_claim(ngx_http_usage_zone_t *zone, ngx_log_t *log)
{
    ngx_pid_t                pid;
    ngx_http_usage_shctx_t  *sh;

    sh = zone->sh;

    if (sh->changes == sh->saved_changes) {
        return NGX_DECLINED;
    }

    pid = (ngx_pid_t) sh->saver;

    if (pid && pid != ngx_pid && kill(pid, 0) == -1 && ngx_errno == NGX_ESRCH)
    {
        (void) ngx_atomic_cmp_set(&sh->saver, pid, 0);
    }

    if (!ngx_atomic_cmp_set(&sh->saver, 0, ngx_pid)) {
        return NGX_DECLINED;    /* another process is saving this store */
    }

    /*
     * A process of an older binary or configuration must not overwrite a
     * file that a newer copy of the same store has written.
     */
    if (ngx_http_usage_state_taken_over(zone, log)) {
        ngx_http_usage_state_release(zone);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static void
ngx_http_usage_state_release(ngx_http_usage_zone_t *zone)
{
    (void) ngx_atomic_cmp_set(&zone->sh->saver, ngx_pid, 0);
}


/* the snapshot and the file: in a worker, the master or a thread */

static void
ngx_http_usage_state_write_out(ngx_http_usage_zone_t *zone, ngx_log_t *log)
{
    u_char                  *data;
    size_t                   len;
    int64_t                  now;
    uint64_t                 changes;
    ngx_time_t              *tp;
    ngx_msec_t               locked;
    struct timeval           t0, t1, t2;
    ngx_http_usage_shctx_t  *sh;

    sh = zone->sh;

    tp = ngx_timeofday();
    now = (int64_t) tp->sec * 1000 + tp->msec;

    changes = sh->changes;

    ngx_gettimeofday(&t0);

    data = ngx_http_usage_state_dump(zone, now, &len, &locked, NULL);
    if (data == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "usage zone \"%V\": no memory to save state to \"%V\"",
                      &zone->name, &zone->state_file);
        return;
    }

    ngx_gettimeofday(&t1);

    if (ngx_http_usage_state_write(zone, data, len, log) == NGX_OK) {
        sh->saved_changes = changes;
        sh->saved_at = now;
        sh->saves++;

        ngx_gettimeofday(&t2);

        /* what a save costs: the snapshot holds the lock, the write not */
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "usage zone \"%V\": saved %uz bytes to \"%V\": "
                      "snapshot %M ms (%M ms of it under the lock), "
                      "write %M ms", &zone->name, len, &zone->state_file,
                      ngx_http_usage_elapsed(&t0, &t1), locked,
                      ngx_http_usage_elapsed(&t1, &t2));
    }

    ngx_free(data);
}


static ngx_msec_t
ngx_http_usage_elapsed(struct timeval *from, struct timeval *to)
{
    return (ngx_msec_t) ((to->tv_sec - from->tv_sec) * 1000
                         + (to->tv_usec - from->tv_usec) / 1000);
}


static ngx_uint_t
ngx_http_usage_state_taken_over(ngx_http_usage_zone_t *zone, ngx_log_t *log)
{
    ssize_t                         n;
    ngx_fd_t                        fd;
    ngx_http_usage_state_header_t   h;

    fd = ngx_open_file(zone->state_file.data, NGX_FILE_RDONLY,
                       NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        return 0;
    }

    n = read(fd, &h, sizeof(h));
    (void) ngx_close_file(fd);

    if (n == (ssize_t) sizeof(h)
        && ngx_memcmp(h.magic, NGX_HTTP_USAGE_STATE_MAGIC, 8) == 0
        && h.order == NGX_HTTP_USAGE_STATE_ORDER
        && h.dataset == zone->sh->dataset
        && h.generation > zone->sh->generation)
    {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "usage zone \"%V\": \"%V\" was saved by a newer copy "
                      "of this store, not overwritten", &zone->name,
                      &zone->state_file);
        return 1;
    }

    return 0;
}


/*
 * The snapshot, taken under the lock: header, counters, types with their
 * totals, entities (least recently updated first) with their buckets, the
 * raw log oldest first, and the client ids oldest first.  Each section has
 * its own function, called here in the order of the file; the header is
 * completed last, once the length and checksum of the rest are known.
 */

static u_char *
ngx_http_usage_state_dump(ngx_http_usage_zone_t *zone, int64_t now,
    size_t *len, ngx_msec_t *locked, ngx_http_usage_state_snapshot_t *snap)
{
    size_t                          size;
    struct timeval                  t0, t1;
    ngx_http_usage_wbuf_t           w;
    ngx_http_usage_shctx_t         *sh;
    ngx_http_usage_state_header_t  *h;

    sh = zone->sh;

    /*
     * An estimate with a margin, and touched before the lock is taken: the
     * page faults of a large fresh buffer are not paid under it.
     */
    size = sizeof(ngx_http_usage_state_header_t) + 65536 + sh->ring_used
           + sh->bucket_count * 32 + sh->entity_count * 64
           + sh->type_count * 512 + sh->id_count * 64;
    size += size / 4;

    w.start = ngx_alloc(size, ngx_cycle->log);
    if (w.start == NULL) {
        return NULL;
    }

    ngx_memzero(w.start, size);

    w.end = w.start + size;
    w.pos = w.start + sizeof(ngx_http_usage_state_header_t);
    w.failed = 0;

    ngx_http_usage_store_lock(zone);

    ngx_gettimeofday(&t0);

    ngx_http_usage_expire_locked(zone, now);

    ngx_http_usage_state_dump_counters(&w, sh);
    ngx_http_usage_state_dump_types(&w, sh);
    ngx_http_usage_state_dump_entities(&w, sh);
    ngx_http_usage_state_dump_raw(&w, sh);
    ngx_http_usage_state_dump_ids(&w, sh);
    ngx_http_usage_state_dump_fleet(&w, sh, snap);

    h = (ngx_http_usage_state_header_t *) w.start;

    h->dataset = sh->dataset;
    h->generation = sh->generation;
    h->start_time = sh->start_time;
    h->last_created = sh->last_created;

    ngx_gettimeofday(&t1);

    ngx_http_usage_store_unlock(zone);

    if (locked) {
        *locked = ngx_http_usage_elapsed(&t0, &t1);
    }

    if (w.failed) {
        ngx_free(w.start);
        return NULL;
    }

    ngx_http_usage_state_dump_header(&w, now);

    *len = w.pos - w.start;

    return w.start;
}


/* the store's counters and its per-minute event counts */

static void
ngx_http_usage_state_dump_counters(ngx_http_usage_wbuf_t *w,
    ngx_http_usage_shctx_t *sh)
{
    uint64_t    v;
    ngx_uint_t  i;

    ngx_http_usage_wval(w, sh->recorded);
    ngx_http_usage_wval(w, sh->duplicates);
    ngx_http_usage_wval(w, sh->raw_evicted);
    ngx_http_usage_wval(w, sh->raw_expired);
    ngx_http_usage_wval(w, sh->buckets_evicted);
    ngx_http_usage_wval(w, sh->buckets_expired);
    ngx_http_usage_wval(w, sh->ids_evicted);
    v = sh->dropped;
    ngx_http_usage_wval(w, v);

    for (i = 0; i < NGX_HTTP_USAGE_MINUTE_SLOTS; i++) {
        ngx_http_usage_wval(w, sh->minute_start[i]);
        ngx_http_usage_wval(w, sh->minute_count[i]);
    }
}


/*
 * The types with their hourly totals.  Each type is marked with its place
 * in the file: the series and raw events refer to it by that number.
 */

static void
ngx_http_usage_state_dump_types(ngx_http_usage_wbuf_t *w,
    ngx_http_usage_shctx_t *sh)
{
    uint16_t                  nlen;
    uint32_t                  n, ti;
    ngx_queue_t              *q, *bq;
    ngx_http_usage_type_t    *type;
    ngx_http_usage_bucket_t  *b;

    n = (uint32_t) sh->type_count;
    ngx_http_usage_wval(w, n);
    ti = 0;

    for (q = ngx_queue_head(&sh->types_order);
         q != ngx_queue_sentinel(&sh->types_order);
         q = ngx_queue_next(q))
    {
        type = ngx_queue_data(q, ngx_http_usage_type_t, order);
        type->mark = ti++;

        nlen = type->len;
        ngx_http_usage_wval(w, nlen);
        ngx_http_usage_wput(w, type->data, nlen);

        n = ngx_http_usage_state_count(&type->buckets);
        ngx_http_usage_wval(w, n);

        for (bq = ngx_queue_head(&type->buckets);
             bq != ngx_queue_sentinel(&type->buckets);
             bq = ngx_queue_next(bq))
        {
            b = ngx_queue_data(bq, ngx_http_usage_bucket_t, queue);
            ngx_http_usage_wval(w, b->start);
            ngx_http_usage_wval(w, b->count);
        }
    }
}


/*
 * The entities, least recently updated first, each with its series.  Each
 * entity is marked with its place in the file, as the raw events refer to
 * it by that number.
 */

static void
ngx_http_usage_state_dump_entities(ngx_http_usage_wbuf_t *w,
    ngx_http_usage_shctx_t *sh)
{
    uint16_t                  nlen;
    uint32_t                  n, ei;
    ngx_queue_t              *q, *sq;
    ngx_http_usage_entity_t  *entity;
    ngx_http_usage_series_t  *series;

    n = (uint32_t) sh->entity_count;
    ngx_http_usage_wval(w, n);
    ei = 0;

    for (q = ngx_queue_head(&sh->lru);
         q != ngx_queue_sentinel(&sh->lru);
         q = ngx_queue_next(q))
    {
        entity = ngx_queue_data(q, ngx_http_usage_entity_t, lru);
        entity->mark = ei++;

        nlen = entity->len;
        ngx_http_usage_wval(w, nlen);
        ngx_http_usage_wput(w, entity->data, nlen);
        ngx_http_usage_wval(w, entity->updated);

        n = ngx_http_usage_state_count(&entity->series);
        ngx_http_usage_wval(w, n);

        for (sq = ngx_queue_head(&entity->series);
             sq != ngx_queue_sentinel(&entity->series);
             sq = ngx_queue_next(sq))
        {
            series = ngx_queue_data(sq, ngx_http_usage_series_t, queue);
            ngx_http_usage_state_dump_series(w, series);
        }
    }
}


/* one series of an entity: its type's number, then its buckets */

static void
ngx_http_usage_state_dump_series(ngx_http_usage_wbuf_t *w,
    ngx_http_usage_series_t *series)
{
    uint32_t                  n, ti, span;
    ngx_queue_t              *bq;
    ngx_http_usage_bucket_t  *b;

    ti = (uint32_t) series->type->mark;
    ngx_http_usage_wval(w, ti);

    n = ngx_http_usage_state_count(&series->buckets);
    ngx_http_usage_wval(w, n);

    for (bq = ngx_queue_head(&series->buckets);
         bq != ngx_queue_sentinel(&series->buckets);
         bq = ngx_queue_next(bq))
    {
        b = ngx_queue_data(bq, ngx_http_usage_bucket_t, queue);
        span = b->span;
        ngx_http_usage_wval(w, b->start);
        ngx_http_usage_wval(w, span);
        ngx_http_usage_wval(w, b->count);
        ngx_http_usage_wval(w, b->value);
    }
}


/*
 * The raw log, oldest first.  Each event is numbered with its place in the
 * log, as the id section refers to it by that number, and refers to its
 * entity and type by theirs.
 */

static void
ngx_http_usage_state_dump_raw(ngx_http_usage_wbuf_t *w,
    ngx_http_usage_shctx_t *sh)
{
    u_char                *p;
    uint8_t                attached;
    uint16_t               idl;
    uint32_t               n, ei, ti, ml;
    ngx_queue_t           *q;
    ngx_http_usage_raw_t  *raw;

    n = (uint32_t) sh->raw_count;
    ngx_http_usage_wval(w, n);
    n = 0;

    /*
     * The raw log is most of the snapshot and of the time under the lock:
     * room for all of it is made once (a record of the file is smaller
     * than its record in the ring), then each record is stored without
     * further checks.
     */
    ngx_http_usage_wreserve(w, sh->ring_used + 64);
    p = w->pos;

    for (q = ngx_queue_head(&sh->raw);
         q != ngx_queue_sentinel(&sh->raw) && !w->failed;
         q = ngx_queue_next(q))
    {
        raw = ngx_queue_data(q, ngx_http_usage_raw_t, queue);

        /* the id section refers to raw events by their place in the log */
        raw->reserved = n++;

        ei = (uint32_t) raw->series->entity->mark;
        ti = (uint32_t) raw->series->type->mark;
        /* the span of the bucket that counted it: a minute and an hour
         * bucket may both cover its time */
        attached = (raw->bucket == NULL) ? 0
                   : (raw->bucket->span == NGX_HTTP_USAGE_MINUTE) ? 1 : 2;
        idl = raw->id_len;
        ml = raw->metadata_len;

        p = ngx_cpymem(p, &ei, sizeof(ei));
        p = ngx_cpymem(p, &ti, sizeof(ti));
        p = ngx_cpymem(p, &raw->time, sizeof(raw->time));
        p = ngx_cpymem(p, &raw->created, sizeof(raw->created));
        p = ngx_cpymem(p, &raw->value, sizeof(raw->value));
        p = ngx_cpymem(p, raw->uuid, 16);
        p = ngx_cpymem(p, &attached, sizeof(attached));
        p = ngx_cpymem(p, &idl, sizeof(idl));
        p = ngx_cpymem(p, &ml, sizeof(ml));
        p = ngx_cpymem(p, ngx_http_usage_raw_id(raw), idl + ml);
    }

    if (!w->failed) {
        w->pos = p;
    }
}


/*
 * The client ids, oldest first: time, the index of their event in the raw
 * log (or NONE), and their entity and id.  Every entry holds its bytes,
 * also where its event does: an id outlives its event in the log.
 */

static void
ngx_http_usage_state_dump_ids(ngx_http_usage_wbuf_t *w,
    ngx_http_usage_shctx_t *sh)
{
    uint16_t               len;
    uint32_t               n, ei;
    ngx_queue_t           *q;
    ngx_http_usage_idx_t  *idx;

    n = (uint32_t) sh->id_count;
    ngx_http_usage_wval(w, n);

    for (q = ngx_queue_head(&sh->ids_order);
         q != ngx_queue_sentinel(&sh->ids_order);
         q = ngx_queue_next(q))
    {
        idx = ngx_queue_data(q, ngx_http_usage_idx_t, queue);

        ei = idx->raw ? idx->raw->reserved : NGX_HTTP_USAGE_STATE_NONE;
        ngx_http_usage_wval(w, idx->time);
        ngx_http_usage_wval(w, ei);
        len = idx->entity_len;
        ngx_http_usage_wval(w, len);
        len = idx->id_len;
        ngx_http_usage_wval(w, len);
        ngx_http_usage_wput(w, idx->data, idx->entity_len + idx->id_len);
    }
}


/*
 * The rest of the header, after the lock is released: the checksum reads
 * the whole payload and needs nothing of the store.
 */

/*
 * usage_sync: the origin of the zone's events and its last seq, how far
 * the stream was read, the stream's epoch, and the windows of the
 * origins applied.  Of the queue, only where it starts: its events are
 * in the log, and a restart publishes them again from there (the saved
 * seqs belong to an origin that goes on no more).
 */

static void
ngx_http_usage_state_dump_fleet(ngx_http_usage_wbuf_t *w,
    ngx_http_usage_shctx_t *sh, ngx_http_usage_state_snapshot_t *snap)
{
    int64_t                  queued_from;
    uint32_t                 present, n;
    ngx_http_usage_fleet_t  *fleet;

    fleet = sh->fleet;
    present = (fleet != NULL);
    ngx_http_usage_wval(w, present);

    if (fleet == NULL) {
        return;
    }

    n = NGX_HTTP_USAGE_ORIGINS;

    if (snap) {
        /* the queue is the writer's to ship, not a newcomer's */
        queued_from = 0;
        snap->origin = fleet->origin;
        snap->read_ms = fleet->read_ms;
        snap->read_seq = fleet->read_seq;
        snap->epoch = fleet->epoch;
        snap->events = sh->total;

    } else {
        queued_from = ngx_http_usage_fleet_queued_from_locked(fleet);
    }

    ngx_http_usage_wval(w, fleet->origin);
    ngx_http_usage_wval(w, fleet->seq);
    ngx_http_usage_wval(w, fleet->read_ms);
    ngx_http_usage_wval(w, fleet->read_seq);
    ngx_http_usage_wval(w, fleet->epoch);
    ngx_http_usage_wval(w, queued_from);
    ngx_http_usage_wval(w, n);
    ngx_http_usage_wput(w, fleet->origins, sizeof(fleet->origins));
}


/*
 * The zone goes on as a new origin (its contents may lack events that the
 * saved one took after the save, and shipped): the saved origin becomes
 * one like the others, with every seq up to the saved one held, so that
 * what the stream brings of it later is applied once, and the reader
 * resumes where the save left it.
 */

static ngx_int_t
ngx_http_usage_state_walk_fleet(ngx_http_usage_state_ctx_t *ctx)
{
    u_char                   *origins;
    uint32_t                  present, n;
    int64_t                   queued_from;
    uint64_t                  origin, seq, read_ms, read_seq, epoch;
    ngx_http_usage_zone_t    *zone;
    ngx_http_usage_rbuf_t    *r;
    ngx_http_usage_fleet_t   *fleet;

    r = ctx->r;
    zone = ctx->zone;

    if (r->version < 3) {
        return NGX_OK;
    }

    ngx_http_usage_rval(r, present);

    if (r->failed || present > 1) {
        return NGX_ERROR;
    }

    if (!present) {
        return NGX_OK;
    }

    ngx_http_usage_rval(r, origin);
    ngx_http_usage_rval(r, seq);
    ngx_http_usage_rval(r, read_ms);
    ngx_http_usage_rval(r, read_seq);

    epoch = 0;
    queued_from = 0;

    if (r->version >= 4) {
        ngx_http_usage_rval(r, epoch);
        ngx_http_usage_rval(r, queued_from);
    }

    ngx_http_usage_rval(r, n);

    if (r->failed || n > NGX_HTTP_USAGE_ORIGINS) {
        return NGX_ERROR;
    }

    origins = ngx_http_usage_rskip(r, n * sizeof(ngx_http_usage_origin_t));

    if (origins == NULL) {
        return NGX_ERROR;
    }

    /* a zone without usage_sync now: nothing to go on with */
    if (!ctx->apply || zone->sync == NULL) {
        return NGX_OK;
    }

    fleet = zone->sh->fleet;

    if (fleet == NULL) {
        fleet = ngx_http_usage_fleet_create_locked(zone->shpool,
                                                   zone->ship_max);
        if (fleet == NULL) {
            return NGX_OK;          /* fleet_init() reports it */
        }

        zone->sh->fleet = fleet;
    }

    ngx_http_usage_fleet_restore_locked(fleet, origins, n, origin, seq,
                                        read_ms, read_seq, epoch,
                                        ngx_max(queued_from, 0),
                                        ngx_http_usage_now());

    return NGX_OK;
}


static void
ngx_http_usage_state_dump_header(ngx_http_usage_wbuf_t *w, int64_t now)
{
    ngx_http_usage_state_header_t  *h;

    h = (ngx_http_usage_state_header_t *) w->start;

    ngx_memcpy(h->magic, NGX_HTTP_USAGE_STATE_MAGIC, 8);
    h->version = NGX_HTTP_USAGE_STATE_VERSION;
    h->order = NGX_HTTP_USAGE_STATE_ORDER;
    h->length = w->pos - w->start - sizeof(ngx_http_usage_state_header_t);
    h->crc = ngx_crc32_long(w->start + sizeof(ngx_http_usage_state_header_t),
                            h->length);
    h->saved_at = now;
}


/* the length of a queue: the file gives each list's count before it */

static uint32_t
ngx_http_usage_state_count(ngx_queue_t *queue)
{
    uint32_t      n;
    ngx_queue_t  *q;

    n = 0;

    for (q = ngx_queue_head(queue);
         q != ngx_queue_sentinel(queue);
         q = ngx_queue_next(q))
    {
        n++;
    }

    return n;
}


static void
ngx_http_usage_wput(ngx_http_usage_wbuf_t *w, void *data, size_t len)
{
    ngx_http_usage_wreserve(w, len);

    if (w->failed) {
        return;
    }

    w->pos = ngx_cpymem(w->pos, data, len);
}


/* makes room for len more bytes: the estimate was short (long names) */

static void
ngx_http_usage_wreserve(ngx_http_usage_wbuf_t *w, size_t len)
{
    size_t   size, used;
    u_char  *p;

    if (w->failed || (size_t) (w->end - w->pos) >= len) {
        return;
    }

    /* in process memory only: no disk I/O under the lock */
    size = 2 * (w->end - w->start) + len;
    used = w->pos - w->start;

    p = realloc(w->start, size);
    if (p == NULL) {
        w->failed = 1;
        return;
    }

    w->start = p;
    w->pos = p + used;
    w->end = p + size;
}


/*
 * Checks the whole snapshot first, then loads it into the (fresh) zone:
 * a bad file never leaves half a store behind.
 */

static ngx_int_t
ngx_http_usage_state_load(ngx_http_usage_zone_t *zone, u_char *data,
    size_t len, ngx_log_t *log, const char *from)
{
    ngx_http_usage_rbuf_t           r;
    ngx_http_usage_shctx_t         *sh;
    ngx_http_usage_state_header_t  *h;

    if (ngx_http_usage_state_check(zone, data, len, log, from, &r)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    h = (ngx_http_usage_state_header_t *) data;
    sh = zone->sh;

    ngx_http_usage_store_lock(zone);

    (void) ngx_http_usage_state_walk(zone, &r, 1, NULL);

    /*
     * The data set goes on, one generation later: its id, its start time
     * and its createdAt order.  An older generation still running (the
     * old workers of a resize, the old binary of an upgrade) then never
     * overwrites what this one saves.
     */
    sh->dataset = h->dataset;
    sh->generation = h->generation + 1;
    sh->start_time = h->start_time;
    sh->last_created = h->last_created;
    sh->saved_changes = sh->changes;

    if (zone->state_file.len) {
        sh->saved_at = h->saved_at;
    }

    ngx_http_usage_store_unlock(zone);

    ngx_http_usage_state_loaded(zone, &r, log, from);

    return NGX_OK;
}


/*
 * The header, then a walk that only checks every record: NGX_OK leaves r
 * at the first section, for the walk that applies them.
 */

static ngx_int_t
ngx_http_usage_state_check(ngx_http_usage_zone_t *zone, u_char *data,
    size_t len, ngx_log_t *log, const char *from, ngx_http_usage_rbuf_t *r)
{
    ngx_http_usage_state_header_t  *h;

    h = (ngx_http_usage_state_header_t *) data;

    if (len < sizeof(ngx_http_usage_state_header_t)
        || ngx_memcmp(h->magic, NGX_HTTP_USAGE_STATE_MAGIC, 8) != 0)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "usage zone \"%V\": \"%s\" is not a usage state file, "
                      "ignored: the store starts empty", &zone->name, from);
        return NGX_DECLINED;
    }

    if (h->order != NGX_HTTP_USAGE_STATE_ORDER) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "usage zone \"%V\": \"%s\" was written on a machine "
                      "of another byte order, ignored: the store starts "
                      "empty", &zone->name, from);
        return NGX_DECLINED;
    }

    if (h->version > NGX_HTTP_USAGE_STATE_VERSION || h->version == 0) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "usage zone \"%V\": \"%s\" has format version %uD, "
                      "this module reads versions 1 to %d; ignored: the "
                      "store starts empty", &zone->name, from, h->version,
                      NGX_HTTP_USAGE_STATE_VERSION);
        return NGX_DECLINED;
    }

    if (h->length != len - sizeof(ngx_http_usage_state_header_t)
        || h->crc != ngx_crc32_long(data
                                    + sizeof(ngx_http_usage_state_header_t),
                                    h->length))
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "usage zone \"%V\": \"%s\" is truncated or corrupted "
                      "(length or checksum mismatch), ignored: the store "
                      "starts empty", &zone->name, from);
        return NGX_DECLINED;
    }

    r->pos = data + sizeof(ngx_http_usage_state_header_t);
    r->end = data + len;
    r->failed = 0;
    r->version = h->version;
    r->skipped = 0;

    if (ngx_http_usage_state_walk(zone, r, 0, NULL) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "usage zone \"%V\": \"%s\" has an invalid record, "
                      "ignored: the store starts empty", &zone->name, from);
        return NGX_DECLINED;
    }

    r->pos = data + sizeof(ngx_http_usage_state_header_t);
    r->failed = 0;

    return NGX_OK;
}


static void
ngx_http_usage_state_loaded(ngx_http_usage_zone_t *zone,
    ngx_http_usage_rbuf_t *r, ngx_log_t *log, const char *from)
{
    ngx_http_usage_shctx_t  *sh;

    sh = zone->sh;

    if (r->skipped) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "usage zone \"%V\": %s: %ui records left out, their "
                      "names or metadata are not valid UTF-8 or JSON",
                      &zone->name, from, r->skipped);
    }

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "usage zone \"%V\": loaded from %s: %uL events in the "
                  "window, %ui raw events, %ui entities, %ui buckets",
                  &zone->name, from, sh->total, sh->raw_count,
                  sh->entity_count, sh->bucket_count);
}


/*
 * The fleet's snapshot of this zone, for Redis: the state file's format,
 * without the ship queue, and where it stands in the stream.
 */

ngx_int_t
ngx_http_usage_state_snapshot(ngx_http_usage_zone_t *zone,
    ngx_http_usage_state_snapshot_t *snap)
{
    if (zone->sh->fleet == NULL) {
        return NGX_DECLINED;
    }

    snap->data = ngx_http_usage_state_dump(zone, ngx_http_usage_now(),
                                           &snap->len, &snap->locked, snap);

    return snap->data ? NGX_OK : NGX_ERROR;
}


/*
 * A new zone takes the fleet's snapshot in place of what it holds, which
 * can only be its own events (it has read nothing yet): those the
 * snapshot lacks come back with the stream, read from where the snapshot
 * stands (ngx_http_usage_store_apply()).  The data set stays this zone's,
 * and so do the counters of what this instance did.  NGX_DECLINED: a bad
 * snapshot, or the zone started reading meanwhile.
 */

ngx_int_t
ngx_http_usage_state_bootstrap(ngx_http_usage_zone_t *zone, u_char *data,
    size_t len, ngx_log_t *log)
{
    uint64_t                        own_seq;
    ngx_pool_t                     *pool;
    ngx_http_usage_raw_t           *raw;
    ngx_http_usage_rbuf_t           r;
    ngx_http_usage_fleet_t         *fleet;
    ngx_http_usage_shctx_t         *sh;
    ngx_http_usage_state_header_t  *h;
    ngx_http_usage_state_counters_t counters;

    if (ngx_http_usage_state_check(zone, data, len, log, "the fleet's "
                                   "snapshot", &r)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    h = (ngx_http_usage_state_header_t *) data;
    sh = zone->sh;
    fleet = sh->fleet;

    if (h->version < 4 || fleet == NULL) {
        return NGX_DECLINED;
    }

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    ngx_http_usage_store_lock(zone);

    if (!fleet->boot) {
        ngx_http_usage_store_unlock(zone);
        ngx_destroy_pool(pool);
        return NGX_DECLINED;
    }

    own_seq = fleet->seq;
    ngx_http_usage_state_counters_save(sh, &counters);

    ngx_http_usage_store_clear_locked(zone);
    (void) ngx_http_usage_state_walk(zone, &r, 1, pool);

    ngx_http_usage_state_counters_restore(sh, &counters);
    ngx_http_usage_fleet_bootstrapped_locked(fleet, own_seq);

    /* a new store: the state file has to be written again */
    sh->changes++;

    if (h->start_time < sh->start_time) {
        sh->start_time = h->start_time;
    }

    sh->last_created = ngx_max(sh->last_created, h->last_created);

    /* a re-published event older than the log may be in the aggregates */
    if (ngx_queue_empty(&sh->raw)) {
        fleet->evicted_created = sh->last_created;

    } else {
        raw = ngx_queue_data(ngx_queue_head(&sh->raw), ngx_http_usage_raw_t,
                             queue);
        fleet->evicted_created = raw->created - 1;
    }

    ngx_http_usage_store_unlock(zone);

    ngx_destroy_pool(pool);

    ngx_http_usage_state_loaded(zone, &r, log, "the fleet's snapshot");

    return NGX_OK;
}


/* what this instance did, which a snapshot of another does not change */

static void
ngx_http_usage_state_counters_save(ngx_http_usage_shctx_t *sh,
    ngx_http_usage_state_counters_t *c)
{
    c->recorded = sh->recorded;
    c->duplicates = sh->duplicates;
    c->raw_evicted = sh->raw_evicted;
    c->raw_expired = sh->raw_expired;
    c->buckets_evicted = sh->buckets_evicted;
    c->buckets_expired = sh->buckets_expired;
    c->ids_evicted = sh->ids_evicted;
    c->dropped = sh->dropped;
}


static void
ngx_http_usage_state_counters_restore(ngx_http_usage_shctx_t *sh,
    ngx_http_usage_state_counters_t *c)
{
    sh->recorded = c->recorded;
    sh->duplicates = c->duplicates;
    sh->raw_evicted = c->raw_evicted;
    sh->raw_expired = c->raw_expired;
    sh->buckets_evicted = c->buckets_evicted;
    sh->buckets_expired = c->buckets_expired;
    sh->ids_evicted = c->ids_evicted;
    sh->dropped = c->dropped;
}


/*
 * Reads the snapshot's sections; with "apply", builds the store from them
 * (lock held).  Without it, only checks that every length and reference
 * is in bounds.  Whatever no longer fits a smaller zone is evicted as the
 * store always does: raw events oldest first, aggregates least recently
 * updated first.  Each section has its own function, called here in the
 * order of the file; the walk stops at the first one that fails.
 */

static ngx_int_t
ngx_http_usage_state_walk(ngx_http_usage_zone_t *zone,
    ngx_http_usage_rbuf_t *r, ngx_uint_t apply, ngx_pool_t *pool)
{
    ngx_int_t                   rc;
    ngx_http_usage_state_ctx_t  ctx;

    ngx_memzero(&ctx, sizeof(ngx_http_usage_state_ctx_t));

    ctx.zone = zone;
    ctx.r = r;
    ctx.apply = apply;
    ctx.pool = pool;

    ngx_http_usage_state_walk_counters(&ctx);

    if (ngx_http_usage_state_walk_types(&ctx) != NGX_OK
        || ngx_http_usage_state_walk_entities(&ctx) != NGX_OK
        || ngx_http_usage_state_walk_raw(&ctx) != NGX_OK
        || ngx_http_usage_state_walk_ids(zone, r, apply, ctx.raws, ctx.nraw,
                                         ctx.first)
           != NGX_OK
        || ngx_http_usage_state_walk_fleet(&ctx) != NGX_OK
        || r->pos != r->end)
    {
        rc = NGX_ERROR;

    } else {
        rc = NGX_OK;
    }

    /* loaded or not, what the walk pinned is let go */
    if (apply) {
        ngx_http_usage_state_unpin(zone, ctx.types,
                                   ctx.types ? ctx.ntypes : 0, ctx.entities,
                                   ctx.entities ? ctx.nentities : 0);
        ngx_free(ctx.raws);
    }

    return rc;
}


/*
 * The counters are of a fixed size: a check only steps over them, and
 * whether they were all there is known at the next section's count.
 */

static void
ngx_http_usage_state_walk_counters(ngx_http_usage_state_ctx_t *ctx)
{
    uint32_t                 i;
    uint64_t                 v;
    ngx_http_usage_rbuf_t   *r;
    ngx_http_usage_shctx_t  *sh;

    r = ctx->r;
    sh = ctx->zone->sh;

    if (ctx->apply) {
        ngx_http_usage_rval(r, sh->recorded);
        ngx_http_usage_rval(r, sh->duplicates);
        ngx_http_usage_rval(r, sh->raw_evicted);
        ngx_http_usage_rval(r, sh->raw_expired);
        ngx_http_usage_rval(r, sh->buckets_evicted);
        ngx_http_usage_rval(r, sh->buckets_expired);
        ngx_http_usage_rval(r, sh->ids_evicted);
        ngx_http_usage_rval(r, v);
        sh->dropped = v;

        for (i = 0; i < NGX_HTTP_USAGE_MINUTE_SLOTS; i++) {
            ngx_http_usage_rval(r, sh->minute_start[i]);
            ngx_http_usage_rval(r, sh->minute_count[i]);
        }

    } else {
        (void) ngx_http_usage_rskip(r, 8 * sizeof(uint64_t)
                                       + NGX_HTTP_USAGE_MINUTE_SLOTS * 16);
    }
}


/*
 * The types with their hourly totals.  With "apply", ctx->types maps each
 * type's place in the file to the type in the zone (NULL for one left out
 * or that did not fit): the series and raw events refer to it by its place.
 */

static ngx_int_t
ngx_http_usage_state_walk_types(ngx_http_usage_state_ctx_t *ctx)
{
    int64_t                 start;
    uint16_t                nlen;
    uint32_t                i, j, nbuckets;
    uint64_t                count;
    ngx_str_t               name;
    ngx_http_usage_rbuf_t  *r;
    ngx_http_usage_type_t  *type;

    r = ctx->r;

    ngx_http_usage_rval(r, ctx->ntypes);

    if (r->failed || ctx->ntypes > (size_t) (r->end - r->pos) / 6) {
        return NGX_ERROR;
    }

    if (ctx->apply) {
        ctx->types = ngx_calloc((ctx->ntypes + 1) * sizeof(void *),
                                ngx_cycle->log);
        if (ctx->types == NULL) {
            return NGX_ERROR;
        }
    }

    for (i = 0; i < ctx->ntypes; i++) {
        ngx_http_usage_rval(r, nlen);
        name.len = nlen;
        name.data = ngx_http_usage_rskip(r, nlen);
        ngx_http_usage_rval(r, nbuckets);

        if (r->failed || nlen == 0 || nlen > NGX_HTTP_USAGE_TYPE_MAX_BYTES
            || nbuckets > (size_t) (r->end - r->pos) / 16)
        {
            return NGX_ERROR;
        }

        type = NULL;

        if (ctx->apply && !ngx_http_usage_state_name_ok(&name)) {
            /* from a module that let invalid UTF-8 in: left out */
            ctx->types[i] = NULL;
            r->skipped++;

        } else if (ctx->apply) {
            /* every name is pinned while the snapshot loads: making room
             * must not free what a later record refers to */
            type = ngx_http_usage_type_get_locked(ctx->zone, &name, NULL);
            ctx->types[i] = type;

            if (type) {
                type->refs++;
            }
        }

        for (j = 0; j < nbuckets; j++) {
            ngx_http_usage_rval(r, start);
            ngx_http_usage_rval(r, count);

            if (!ngx_http_usage_state_time(start)
                || start % NGX_HTTP_USAGE_HOUR)
            {
                return NGX_ERROR;
            }

            if (type) {
                (void) ngx_http_usage_type_add_locked(ctx->zone, type, start,
                                                      count);
            }
        }
    }

    return NGX_OK;
}


/*
 * The entities.  With "apply", ctx->entities maps each entity's place in
 * the file to the entity in the zone, as ctx->types does for the types.
 */

static ngx_int_t
ngx_http_usage_state_walk_entities(ngx_http_usage_state_ctx_t *ctx)
{
    uint32_t                i;
    ngx_http_usage_rbuf_t  *r;

    r = ctx->r;

    ngx_http_usage_rval(r, ctx->nentities);

    if (r->failed || ctx->nentities > (size_t) (r->end - r->pos) / 14) {
        return NGX_ERROR;
    }

    if (ctx->apply) {
        ctx->entities = ngx_calloc((ctx->nentities + 1) * sizeof(void *),
                                   ngx_cycle->log);
        if (ctx->entities == NULL) {
            return NGX_ERROR;
        }
    }

    for (i = 0; i < ctx->nentities; i++) {
        if (ngx_http_usage_state_walk_entity(ctx, i) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the i-th entity: its name, last update and series */

static ngx_int_t
ngx_http_usage_state_walk_entity(ngx_http_usage_state_ctx_t *ctx,
    uint32_t i)
{
    int64_t                   updated;
    uint16_t                  nlen;
    uint32_t                  j, nseries;
    ngx_str_t                 name;
    ngx_http_usage_rbuf_t    *r;
    ngx_http_usage_entity_t  *entity;

    r = ctx->r;

    ngx_http_usage_rval(r, nlen);
    name.len = nlen;
    name.data = ngx_http_usage_rskip(r, nlen);
    ngx_http_usage_rval(r, updated);
    ngx_http_usage_rval(r, nseries);

    if (r->failed || nlen == 0 || nlen > NGX_HTTP_USAGE_ENTITY_MAX_BYTES
        || nseries > (size_t) (r->end - r->pos) / 8)
    {
        return NGX_ERROR;
    }

    entity = NULL;

    if (ctx->apply && !ngx_http_usage_state_name_ok(&name)) {
        ctx->entities[i] = NULL;
        r->skipped++;

    } else if (ctx->apply) {
        entity = ngx_http_usage_entity_hold_locked(ctx->zone, &name, updated);
        ctx->entities[i] = entity;

        if (entity) {
            entity->raw_count++;
        }
    }

    for (j = 0; j < nseries; j++) {
        if (ngx_http_usage_state_walk_series(ctx, entity) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * One series of an entity: its type's place in the file, then its
 * buckets; they are loaded only if both the entity and the type were.
 */

static ngx_int_t
ngx_http_usage_state_walk_series(ngx_http_usage_state_ctx_t *ctx,
    ngx_http_usage_entity_t *entity)
{
    double                    value;
    int64_t                   start;
    uint32_t                  k, ti, span, nbuckets;
    uint64_t                  count;
    ngx_str_t                 name;
    ngx_http_usage_rbuf_t    *r;
    ngx_http_usage_bucket_t  *b;
    ngx_http_usage_series_t  *series;

    r = ctx->r;

    ngx_http_usage_rval(r, ti);
    ngx_http_usage_rval(r, nbuckets);

    if (r->failed || ti >= ctx->ntypes
        || nbuckets > (size_t) (r->end - r->pos) / 28)
    {
        return NGX_ERROR;
    }

    series = NULL;

    if (entity && ctx->types[ti]) {
        name.len = ctx->types[ti]->len;
        name.data = ctx->types[ti]->data;
        series = ngx_http_usage_series_get_locked(ctx->zone, entity, &name);
    }

    for (k = 0; k < nbuckets; k++) {
        ngx_http_usage_rval(r, start);
        ngx_http_usage_rval(r, span);
        ngx_http_usage_rval(r, count);
        ngx_http_usage_rval(r, value);

        if ((span != NGX_HTTP_USAGE_MINUTE
             && span != NGX_HTTP_USAGE_HOUR)
            || !ngx_http_usage_state_time(start)
            || start % span || !isfinite(value))
        {
            return NGX_ERROR;
        }

        if (series == NULL) {
            continue;
        }

        b = ngx_http_usage_bucket_get_locked(ctx->zone, series, start, span);
        if (b) {
            b->count += count;
            b->value += value;
            ngx_http_usage_series_add(series, count, value);
        }
    }

    return NGX_OK;
}


/*
 * The raw log, oldest first.  With "apply", ctx->raws maps each event's
 * place in the log to the event in the zone, for the id section, and
 * ctx->first is the place of the first event that is still there.
 */

static ngx_int_t
ngx_http_usage_state_walk_raw(ngx_http_usage_state_ctx_t *ctx)
{
    uint32_t                i;
    ngx_http_usage_rbuf_t  *r;

    r = ctx->r;

    ngx_http_usage_rval(r, ctx->nraw);

    if (r->failed || ctx->nraw > (size_t) (r->end - r->pos) / 55) {
        return NGX_ERROR;
    }

    if (ctx->apply) {
        ctx->raws = ngx_calloc((ctx->nraw + 1) * sizeof(void *),
                               ngx_cycle->log);
        if (ctx->raws == NULL) {
            return NGX_ERROR;
        }
    }

    ctx->first = 0;

    for (i = 0; i < ctx->nraw; i++) {
        if (ngx_http_usage_state_walk_event(ctx, i) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (ctx->apply) {
        /* a smaller ring dropped the oldest: they left in order */
        ctx->first = ctx->nraw - ngx_min(ctx->nraw, ctx->zone->sh->raw_count);
    }

    return NGX_OK;
}


/*
 * The i-th raw event.  One whose entity or type was left out is left out
 * too; one whose id or metadata the API would refuse is counted as
 * skipped.
 */

static ngx_int_t
ngx_http_usage_state_walk_event(ngx_http_usage_state_ctx_t *ctx,
    uint32_t i)
{
    uint8_t                   attached;
    uint16_t                  idl;
    uint32_t                  ei, ti, ml, span;
    ngx_uint_t                ok;
    ngx_str_t                 name;
    ngx_http_usage_rbuf_t    *r;
    ngx_http_usage_bucket_t  *b;
    ngx_http_usage_record_t   rec;
    ngx_http_usage_series_t  *series;

    r = ctx->r;

    ngx_http_usage_rval(r, ei);
    ngx_http_usage_rval(r, ti);
    ngx_http_usage_rval(r, rec.time);
    ngx_http_usage_rval(r, rec.created);
    ngx_http_usage_rval(r, rec.value);
    ngx_http_usage_rget(r, rec.uuid, 16);
    ngx_http_usage_rval(r, attached);
    ngx_http_usage_rval(r, idl);
    ngx_http_usage_rval(r, ml);

    if (r->failed || ei >= ctx->nentities || ti >= ctx->ntypes
        || attached > 2
        || !ngx_http_usage_state_time(rec.time)
        || !ngx_http_usage_state_time(rec.created)
        || !isfinite(rec.value)
        || idl > NGX_HTTP_USAGE_ID_MAX_BYTES
        || ml > (size_t) (r->end - r->pos) - idl)
    {
        return NGX_ERROR;
    }

    rec.id.len = idl;
    rec.id.data = ngx_http_usage_rskip(r, idl);
    rec.metadata.len = ml;
    rec.metadata.data = ngx_http_usage_rskip(r, ml);

    if (!ctx->apply) {
        return NGX_OK;
    }

    ctx->raws[i] = NULL;

    if (ctx->entities[ei] == NULL || ctx->types[ti] == NULL) {
        return NGX_OK;
    }

    ok = (idl == 0 || ngx_http_usage_utf8_valid(rec.id.data, idl) == NGX_OK)
         && ngx_http_usage_json_object_ok(&rec.metadata, ctx->pool);

    if (ctx->pool) {
        ngx_reset_pool(ctx->pool);
    }

    if (!ok) {
        r->skipped++;
        return NGX_OK;
    }

    name.len = ctx->types[ti]->len;
    name.data = ctx->types[ti]->data;

    series = ngx_http_usage_series_get_locked(ctx->zone, ctx->entities[ei],
                                              &name);
    if (series == NULL) {
        return NGX_OK;
    }

    series->raw_refs++;

    b = NULL;

    if (attached) {
        span = (attached == 1) ? NGX_HTTP_USAGE_MINUTE
                               : NGX_HTTP_USAGE_HOUR;
        b = ngx_http_usage_bucket_lookup(series,
                     rec.time - ((rec.time % span) + span) % span, span);
    }
    ctx->raws[i] = ngx_http_usage_raw_append_locked(ctx->zone, series, b,
                                                    &rec);

    series->raw_refs--;
    ngx_http_usage_series_release_locked(ctx->zone, series);

    return NGX_OK;
}


/*
 * Every entry is hashed anew under the new zone's key.  An entry of a
 * version 1 file had only a hash under no key: its entity and id are
 * those of its event, and an entry whose event was gone is left out.
 */

static ngx_int_t
ngx_http_usage_state_walk_ids(ngx_http_usage_zone_t *zone,
    ngx_http_usage_rbuf_t *r, ngx_uint_t apply, ngx_http_usage_raw_t **raws,
    uint32_t nraw, ngx_uint_t first)
{
    int64_t                time;
    uint32_t               nids, i;
    ngx_str_t              entity, id;
    ngx_http_usage_raw_t  *raw;

    ngx_http_usage_rval(r, nids);

    /* the smallest entry: 8 + 4 + 2 + 2 + two bytes of names (v2), or
     * 8 + 8 + 4 (v1) */
    if (r->failed || nids > (size_t) (r->end - r->pos) / 18) {
        return NGX_ERROR;
    }

    for (i = 0; i < nids; i++) {
        if (r->version == 1) {
            (void) ngx_http_usage_rskip(r, sizeof(uint64_t));
        }

        ngx_http_usage_rval(r, time);

        if (ngx_http_usage_state_id_entry(r, raws, nraw, first, &entity, &id,
                                          &raw)
            != NGX_OK
            || !ngx_http_usage_state_time(time))
        {
            return NGX_ERROR;
        }

        if (!apply || entity.len == 0) {
            continue;
        }

        if (ngx_http_usage_utf8_valid(entity.data, entity.len) != NGX_OK
            || ngx_http_usage_utf8_valid(id.data, id.len) != NGX_OK)
        {
            r->skipped++;
            continue;
        }

        (void) ngx_http_usage_idx_add_locked(zone,
                               ngx_http_usage_idx_hash(zone->sh, &entity, &id),
                               &entity, &id, time, raw,
                               raw ? raw->series->entity : NULL);
    }

    return NGX_OK;
}


/*
 * One entry's event, entity and id.  Its event is taken only if it is in
 * the part of the log that was loaded and has that very entity and id;
 * entity->len is 0 for an entry that cannot be loaded (version 1 with no
 * event, or before a full load).
 */

static ngx_int_t
ngx_http_usage_state_id_entry(ngx_http_usage_rbuf_t *r,
    ngx_http_usage_raw_t **raws, uint32_t nraw, ngx_uint_t first,
    ngx_str_t *entity, ngx_str_t *id, ngx_http_usage_raw_t **raw)
{
    uint16_t                  elen, ilen;
    uint32_t                  ei;
    ngx_http_usage_raw_t     *ev;
    ngx_http_usage_entity_t  *owner;

    ngx_http_usage_rval(r, ei);

    if (r->failed || (ei != NGX_HTTP_USAGE_STATE_NONE && ei >= nraw)) {
        return NGX_ERROR;
    }

    ev = (raws && ei != NGX_HTTP_USAGE_STATE_NONE && ei >= first)
         ? raws[ei] : NULL;

    *raw = NULL;
    entity->len = 0;
    id->len = 0;

    if (r->version == 1) {
        if (ev && ev->id_len) {
            owner = ev->series->entity;
            entity->len = owner->len;
            entity->data = owner->data;
            id->len = ev->id_len;
            id->data = ngx_http_usage_raw_id(ev);
            *raw = ev;
        }

        return NGX_OK;
    }

    ngx_http_usage_rval(r, elen);
    ngx_http_usage_rval(r, ilen);
    entity->data = ngx_http_usage_rskip(r, elen);
    id->data = ngx_http_usage_rskip(r, ilen);

    if (r->failed || elen == 0 || elen > NGX_HTTP_USAGE_ENTITY_MAX_BYTES
        || ilen == 0 || ilen > NGX_HTTP_USAGE_ID_MAX_BYTES)
    {
        return NGX_ERROR;
    }

    if (raws == NULL) {
        return NGX_OK;          /* only checked, not loaded */
    }

    entity->len = elen;
    id->len = ilen;

    if (ev && ev->id_len == ilen
        && ev->series->entity->len == elen
        && ngx_memcmp(ngx_http_usage_raw_id(ev), id->data, ilen) == 0
        && ngx_memcmp(ev->series->entity->data, entity->data, elen) == 0)
    {
        *raw = ev;
    }

    return NGX_OK;
}


/* a name as the API accepts it: valid UTF-8, no control character */

static ngx_uint_t
ngx_http_usage_state_name_ok(ngx_str_t *name)
{
    size_t  i;

    for (i = 0; i < name->len; i++) {
        if (name->data[i] < 0x20 || name->data[i] == 0x7f) {
            return 0;
        }
    }

    return ngx_http_usage_utf8_valid(name->data, name->len) == NGX_OK;
}


static void
ngx_http_usage_state_unpin(ngx_http_usage_zone_t *zone,
    ngx_http_usage_type_t **types, ngx_uint_t ntypes,
    ngx_http_usage_entity_t **entities, ngx_uint_t nentities)
{
    ngx_uint_t  i;

    for (i = 0; i < nentities; i++) {
        if (entities[i]) {
            entities[i]->raw_count--;
            (void) ngx_http_usage_entity_release_locked(zone, entities[i]);
        }
    }

    for (i = 0; i < ntypes; i++) {
        if (types[i]) {
            types[i]->refs--;
            ngx_http_usage_type_release_locked(zone, types[i]);
        }
    }

    ngx_free(types);
    ngx_free(entities);
}


/* times the store can hold: no arithmetic on them overflows */

static ngx_uint_t
ngx_http_usage_state_time(int64_t t)
{
    return ngx_http_usage_time_ok(t);
}


static void
ngx_http_usage_rget(ngx_http_usage_rbuf_t *r, void *data, size_t len)
{
    if (r->failed || (size_t) (r->end - r->pos) < len) {
        r->failed = 1;
        ngx_memzero(data, len);
        return;
    }

    ngx_memcpy(data, r->pos, len);
    r->pos += len;
}


static u_char *
ngx_http_usage_rskip(ngx_http_usage_rbuf_t *r, size_t len)
{
    u_char  *p;

    if (r->failed || (size_t) (r->end - r->pos) < len) {
        r->failed = 1;
        return NULL;
    }

    p = r->pos;
    r->pos += len;

    return p;
}


static u_char *
ngx_http_usage_state_read(ngx_http_usage_zone_t *zone, ngx_log_t *log,
    size_t *len)
{
    u_char           *data;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_file_info_t   fi;

    fd = ngx_open_file(zone->state_file.data, NGX_FILE_RDONLY,
                       NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        if (ngx_errno != NGX_ENOENT) {
            ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                          "usage zone \"%V\": cannot open state file \"%V\", "
                          "the store starts empty", &zone->name,
                          &zone->state_file);
        }

        return NULL;
    }

    data = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        goto failed;
    }

    /* a snapshot is never much larger than the zone it came from */
    if (ngx_file_size(&fi) > (off_t) (4 * zone->size + 1048576)) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "usage zone \"%V\": state file \"%V\" is too large "
                      "(%O bytes), ignored: the store starts empty",
                      &zone->name, &zone->state_file, ngx_file_size(&fi));
        goto done;
    }

    *len = (size_t) ngx_file_size(&fi);

    data = ngx_alloc(*len + 1, log);
    if (data == NULL) {
        goto done;
    }

    n = ngx_read_fd(fd, data, *len);

    if (n != (ssize_t) *len) {
        goto failed;
    }

    goto done;

failed:

    ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                  "usage zone \"%V\": cannot read state file \"%V\", "
                  "the store starts empty", &zone->name, &zone->state_file);

    if (data) {
        ngx_free(data);
        data = NULL;
    }

done:

    (void) ngx_close_file(fd);

    return data;
}


/* a temporary file beside the state file, synced, then renamed over it */

static ngx_int_t
ngx_http_usage_state_write(ngx_http_usage_zone_t *zone, u_char *data,
    size_t len, ngx_log_t *log)
{
    u_char    *tmp;
    size_t     done;
    ssize_t    n;
    ngx_fd_t   fd;

    tmp = ngx_alloc(zone->state_file.len + sizeof(".tmp.") + NGX_INT64_LEN,
                    log);
    if (tmp == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(tmp, "%V.tmp.%P%Z", &zone->state_file, ngx_pid);

    fd = ngx_open_file(tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE,
                       NGX_FILE_DEFAULT_ACCESS);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "usage zone \"%V\": cannot save state: "
                      ngx_open_file_n " \"%s\" failed", &zone->name, tmp);
        ngx_free(tmp);
        return NGX_ERROR;
    }

    for (done = 0; done < len; done += n) {
        n = ngx_write_fd(fd, data + done, len - done);

        if (n <= 0) {
            ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                          "usage zone \"%V\": cannot save state: write to "
                          "\"%s\" failed", &zone->name, tmp);
            goto failed;
        }
    }

    if (fsync(fd) == -1) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "usage zone \"%V\": cannot save state: fsync of \"%s\" "
                      "failed", &zone->name, tmp);
        goto failed;
    }

    (void) ngx_close_file(fd);
    fd = NGX_INVALID_FILE;

    if (ngx_rename_file(tmp, zone->state_file.data) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "usage zone \"%V\": cannot save state: "
                      ngx_rename_file_n " \"%s\" to \"%V\" failed",
                      &zone->name, tmp, &zone->state_file);
        goto failed;
    }

    ngx_free(tmp);

    return NGX_OK;

failed:

    if (fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(fd);
    }

    (void) ngx_delete_file(tmp);
    ngx_free(tmp);

    return NGX_ERROR;
}
