
/*
 * Reads of the usage store: the event list from the raw log; summaries,
 * histories and stats from the aggregates.
 *
 * A range query reads the buckets of one entity.  A bucket inside the
 * range counts whole; a bucket cut by since or until is counted from its
 * raw events while all of them are still in the log (exact to the
 * millisecond), else whole, and the answer's resolution says so.  The
 * cost is the buckets and types read, plus the raw events of at most the
 * two edge buckets: never the entity's whole history.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_store.h"
#include "ngx_http_usage_store_internal.h"
#include "ngx_http_usage_query.h"
#include "ngx_http_usage_skip.h"


#define ngx_http_usage_raw_at(q, off)                                        \
    ((ngx_http_usage_raw_t *) ((u_char *) (q) - (off)))


typedef struct {
    int64_t                      time;
    uint64_t                     count;
    double                       value;
} ngx_http_usage_piece_t;


typedef struct {
    ngx_http_usage_type_t       *type;
    int64_t                      first;
    uint64_t                     count;
    double                       value;
} ngx_http_usage_tally_t;


/* a walk of the list: a page of a queue, the log's or an entity's */
typedef struct {
    ngx_http_usage_list_t       *q;
    ngx_pool_t                  *pool;
    ngx_http_usage_shctx_t      *sh;
    ngx_http_usage_type_t       *type;         /* NULL: any */
    ngx_queue_t                 *head;
    size_t                       off;          /* of head's link */
    ngx_uint_t                   matched;
    ngx_uint_t                   emitted;
    ngx_http_usage_raw_t        *last;         /* emitted */
} ngx_http_usage_walk_t;


/* a bucket counted whole: the answer is no finer than its span */
#define ngx_http_usage_coarse(q, b)                                          \
    (q)->resolution = ngx_max((q)->resolution,                               \
                              (((b)->span == NGX_HTTP_USAGE_HOUR)            \
                               ? NGX_HTTP_USAGE_BY_HOUR                      \
                               : NGX_HTTP_USAGE_BY_MINUTE))


static ngx_int_t ngx_http_usage_list_walk_locked(ngx_http_usage_walk_t *w,
    ngx_queue_t *cur, ngx_uint_t stop);
static ngx_queue_t *ngx_http_usage_list_group_first(
    ngx_http_usage_walk_t *w, ngx_queue_t *cur, int64_t created);
static ngx_int_t ngx_http_usage_list_emit(ngx_http_usage_walk_t *w,
    ngx_http_usage_raw_t *e);
static ngx_int_t ngx_http_usage_list_after_locked(ngx_http_usage_walk_t *w,
    ngx_http_usage_entity_t *entity);
static ngx_queue_t *ngx_http_usage_list_place_locked(ngx_http_usage_walk_t *w,
    ngx_http_usage_entity_t *entity, ngx_http_usage_list_key_t *key);
static ngx_queue_t *ngx_http_usage_list_entity_place_locked(
    ngx_http_usage_walk_t *w, ngx_http_usage_entity_t *entity,
    ngx_http_usage_list_key_t *key, ngx_http_usage_raw_t *at,
    ngx_uint_t how);
static ngx_http_usage_entity_t *ngx_http_usage_range_begin(
    ngx_http_usage_zone_t *zone, ngx_http_usage_range_t *q, int64_t now);
static ngx_int_t ngx_http_usage_range_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_range_t *q, ngx_http_usage_series_t *series,
    ngx_array_t *pieces, int64_t interval, int64_t now);
static ngx_int_t ngx_http_usage_series_tally_locked(
    ngx_http_usage_zone_t *zone, ngx_http_usage_range_t *q,
    ngx_http_usage_series_t *series, ngx_array_t *pieces,
    ngx_http_usage_tally_t *tally, int64_t now);
static ngx_int_t ngx_http_usage_series_sum_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_range_t *q, ngx_http_usage_series_t *series,
    ngx_http_usage_tally_t *tally, int64_t now);
static ngx_int_t ngx_http_usage_series_points(ngx_http_usage_range_t *q,
    ngx_http_usage_series_t *series, ngx_array_t *pieces, int64_t interval,
    int64_t oldest);
static ngx_uint_t ngx_http_usage_range_whole(ngx_http_usage_range_t *q,
    ngx_http_usage_series_t *series, int64_t oldest);
static int64_t ngx_http_usage_window_edge(ngx_http_usage_range_t *q,
    ngx_http_usage_series_t *series, int64_t oldest);
static ngx_inline ngx_int_t ngx_http_usage_piece_add(ngx_array_t *pieces,
    int64_t time, uint64_t count, double value, int64_t interval);
static uint64_t ngx_http_usage_stats_minutes_locked(
    ngx_http_usage_shctx_t *sh, ngx_http_usage_stats_t *st, int64_t now);
static int ngx_libc_cdecl ngx_http_usage_piece_cmp(const void *a,
    const void *b);
static ngx_int_t ngx_http_usage_copy_name(ngx_pool_t *pool, ngx_str_t *dst,
    u_char *data, size_t len);


ngx_int_t
ngx_http_usage_store_list(ngx_http_usage_zone_t *zone, ngx_pool_t *pool,
    ngx_http_usage_list_t *q, int64_t now)
{
    ngx_int_t                 rc;
    ngx_uint_t                n, count_all;
    ngx_http_usage_walk_t     w;
    ngx_http_usage_entity_t  *entity;
    ngx_http_usage_shctx_t   *sh;

    n = ngx_min(q->limit, 64);
    if (ngx_array_init(&q->records, pool, n ? n : 1,
                       sizeof(ngx_http_usage_record_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    q->total = 0;
    q->more = 0;
    sh = zone->sh;

    ngx_memzero(&w, sizeof(ngx_http_usage_walk_t));
    w.q = q;
    w.pool = pool;
    w.sh = sh;

    rc = NGX_OK;

    ngx_http_usage_store_lock(zone);

    ngx_http_usage_expire_locked(zone, now);

    entity = NULL;

    if (q->entity) {
        entity = ngx_http_usage_entity_lookup(sh, q->entity);
        if (entity == NULL) {
            goto done;
        }
    }

    if (q->type) {
        w.type = ngx_http_usage_type_lookup(sh, q->type);
        if (w.type == NULL) {
            goto done;
        }
    }

    if (entity) {
        w.head = &entity->raw;
        w.off = offsetof(ngx_http_usage_raw_t, entity_queue);
        q->total = entity->raw_count;

    } else {
        w.head = &sh->raw;
        w.off = offsetof(ngx_http_usage_raw_t, queue);
        q->total = w.type ? w.type->raw_count : sh->raw_count;
    }

    if (q->by_key) {
        rc = ngx_http_usage_list_after_locked(&w, entity);
        goto done;
    }

    /* only an entity filtered by type has no maintained count */
    count_all = (entity && w.type);

    if (!count_all && q->offset >= q->total) {
        goto done;
    }

    rc = ngx_http_usage_list_walk_locked(&w, ngx_queue_last(w.head),
                                         !count_all);

    if (count_all) {
        q->total = w.matched;
    }

done:

    ngx_http_usage_store_unlock(zone);

    return (rc == NGX_ERROR) ? NGX_ERROR : NGX_OK;
}


/*
 * Newest first by createdAt; events with equal createdAt keep their
 * insertion order, as the stable sort of the old service did.  Walks back
 * millisecond by millisecond from cur, and forward inside one.  With
 * stop, it ends once the page is full or every match counted.
 */

static ngx_int_t
ngx_http_usage_list_walk_locked(ngx_http_usage_walk_t *w, ngx_queue_t *cur,
    ngx_uint_t stop)
{
    ngx_int_t              rc;
    ngx_queue_t           *first, *next, *p;
    ngx_http_usage_raw_t  *ev;

    while (cur != ngx_queue_sentinel(w->head)) {
        ev = ngx_http_usage_raw_at(cur, w->off);

        first = ngx_http_usage_list_group_first(w, cur, ev->created);
        next = ngx_queue_prev(first);

        for (p = first; /* void */; p = ngx_queue_next(p)) {
            rc = ngx_http_usage_list_emit(w, ngx_http_usage_raw_at(p, w->off));

            if (rc != NGX_OK) {
                return rc;
            }

            if (p == cur) {
                break;
            }
        }

        /* enough, or every match of a rare type already seen */
        if (stop && (w->emitted == w->q->limit
                     || w->matched == w->q->total))
        {
            break;
        }

        cur = next;
    }

    return NGX_OK;
}


/*
 * The first record of the millisecond of cur, which is of it, in the
 * walked queue.  The events of a batch share one: walking back over them
 * all costs the batch, so past a few steps a walk by cursor of the log
 * asks the skip list, where the log's order is exact (without a fleet).
 */

#define NGX_HTTP_USAGE_LIST_BACK  16

static ngx_queue_t *
ngx_http_usage_list_group_first(ngx_http_usage_walk_t *w, ngx_queue_t *cur,
    int64_t created)
{
    ngx_uint_t                  n;
    ngx_queue_t                *first, *prev;
    ngx_http_usage_raw_t       *r;
    ngx_http_usage_list_key_t   key;

    first = cur;

    for (n = 0; /* void */; n++) {
        prev = ngx_queue_prev(first);

        if (prev == ngx_queue_sentinel(w->head)
            || ngx_http_usage_raw_at(prev, w->off)->created != created)
        {
            return first;
        }

        if (n == NGX_HTTP_USAGE_LIST_BACK && w->q->by_key
            && w->head == &w->sh->raw && w->sh->fleet == NULL)
        {
            break;
        }

        first = prev;
    }

    ngx_memzero(&key, sizeof(ngx_http_usage_list_key_t));
    key.created = created;

    r = ngx_http_usage_skip_seek_locked(w->sh, &key,
                                        NGX_HTTP_USAGE_SKIP_EARLIER);

    return r ? ngx_queue_next(&r->queue) : ngx_queue_head(&w->sh->raw);
}


/* NGX_DONE: a match past a full page of a cursor, which says there is more */

static ngx_int_t
ngx_http_usage_list_emit(ngx_http_usage_walk_t *w, ngx_http_usage_raw_t *e)
{
    ngx_http_usage_list_t    *q;
    ngx_http_usage_record_t  *rec;

    q = w->q;

    if (w->type && e->series->type != w->type) {
        return NGX_OK;
    }

    if (w->emitted == q->limit && q->by_key) {
        q->more = 1;
        return NGX_DONE;
    }

    if (w->matched >= q->offset && w->emitted < q->limit) {
        rec = ngx_array_push(&q->records);
        if (rec == NULL
            || ngx_http_usage_copy_raw(w->pool, rec, e) != NGX_OK)
        {
            return NGX_ERROR;
        }

        w->emitted++;
        w->last = e;
    }

    w->matched++;

    return NGX_OK;
}


/*
 * A cursor's page: the rest of its event's millisecond in the order
 * stored, then the earlier milliseconds as any page.  The place is found
 * in O(log n) (ngx_http_usage_skip.c), then the page costs its events.
 */

static ngx_int_t
ngx_http_usage_list_after_locked(ngx_http_usage_walk_t *w,
    ngx_http_usage_entity_t *entity)
{
    ngx_int_t                   rc;
    ngx_queue_t                *pos, *p;
    ngx_http_usage_raw_t       *ev;
    ngx_http_usage_list_key_t  *key;

    key = w->q->after;

    if (key == NULL) {
        rc = ngx_http_usage_list_walk_locked(w, ngx_queue_last(w->head), 0);
        goto done;
    }

    pos = ngx_http_usage_list_place_locked(w, entity, key);

    p = (pos == ngx_queue_sentinel(w->head)) ? ngx_queue_head(w->head)
                                             : ngx_queue_next(pos);

    for ( /* void */ ; p != ngx_queue_sentinel(w->head); p = ngx_queue_next(p))
    {
        ev = ngx_http_usage_raw_at(p, w->off);

        if (ev->created != key->created) {
            break;
        }

        rc = ngx_http_usage_list_emit(w, ev);

        if (rc != NGX_OK) {
            goto done;
        }
    }

    if (pos != ngx_queue_sentinel(w->head)
        && ngx_http_usage_raw_at(pos, w->off)->created == key->created)
    {
        pos = ngx_queue_prev(ngx_http_usage_list_group_first(w, pos,
                                                             key->created));
    }

    rc = ngx_http_usage_list_walk_locked(w, pos, 0);

done:

    if (rc != NGX_ERROR && w->emitted) {
        w->q->last.created = w->last->created;
        w->q->last.seq = ngx_http_usage_raw_seq(w->sh, w->last);
        w->q->last.epoch = w->sh->log_epoch;
        ngx_memcpy(w->q->last.uuid, w->last->uuid, 16);
    }

    return rc;
}


/*
 * The last record of the walked queue listed at or before the key, or
 * its sentinel.  The key's event, when still stored, is that record;
 * when it is gone, the page goes on from the next one stored.  A key of
 * another ring (the store was restarted since) cannot be placed inside
 * its millisecond but by its event: without it, that whole millisecond
 * follows.
 */

static ngx_queue_t *
ngx_http_usage_list_place_locked(ngx_http_usage_walk_t *w,
    ngx_http_usage_entity_t *entity, ngx_http_usage_list_key_t *key)
{
    ngx_uint_t               how;
    ngx_queue_t             *q;
    ngx_http_usage_raw_t    *at, *exact, *r;
    ngx_http_usage_shctx_t  *sh;

    sh = w->sh;
    how = (sh->fleet || key->epoch == sh->log_epoch)
          ? NGX_HTTP_USAGE_SKIP_UPTO : NGX_HTTP_USAGE_SKIP_EARLIER;

    at = ngx_http_usage_skip_seek_locked(sh, key, how);
    exact = NULL;

    if (how == NGX_HTTP_USAGE_SKIP_UPTO) {
        if (at && at->created == key->created
            && ngx_memcmp(at->uuid, key->uuid, 16) == 0)
        {
            exact = at;
        }

    } else {
        for (q = at ? ngx_queue_next(&at->queue) : ngx_queue_head(&sh->raw);
             q != ngx_queue_sentinel(&sh->raw);
             q = ngx_queue_next(q))
        {
            r = ngx_queue_data(q, ngx_http_usage_raw_t, queue);

            if (r->created != key->created) {
                break;
            }

            if (ngx_memcmp(r->uuid, key->uuid, 16) == 0) {
                exact = r;
                break;
            }
        }
    }

    if (entity == NULL) {
        r = exact ? exact : at;
        return r ? &r->queue : ngx_queue_sentinel(&sh->raw);
    }

    if (exact) {
        return &exact->entity_queue;
    }

    return ngx_http_usage_list_entity_place_locked(w, entity, key, at, how);
}


/*
 * The entity's last record at or before at, the log's: mostly a few
 * records back in the log; else along the entity's own events from its
 * oldest, which costs its events older than the key (few, when the key's
 * event went the way of the oldest).
 */

#define NGX_HTTP_USAGE_LIST_NEAR  64

static ngx_queue_t *
ngx_http_usage_list_entity_place_locked(ngx_http_usage_walk_t *w,
    ngx_http_usage_entity_t *entity, ngx_http_usage_list_key_t *key,
    ngx_http_usage_raw_t *at, ngx_uint_t how)
{
    ngx_uint_t             n;
    ngx_queue_t           *q, *last;
    ngx_http_usage_raw_t  *r;

    r = at;

    for (n = 0; r && n < NGX_HTTP_USAGE_LIST_NEAR; n++) {
        if (r->series->entity == entity) {
            return &r->entity_queue;
        }

        q = ngx_queue_prev(&r->queue);
        r = (q == ngx_queue_sentinel(&w->sh->raw))
            ? NULL : ngx_queue_data(q, ngx_http_usage_raw_t, queue);
    }

    if (r == NULL) {
        return ngx_queue_sentinel(&entity->raw);
    }

    last = ngx_queue_sentinel(&entity->raw);

    for (q = ngx_queue_head(&entity->raw);
         q != ngx_queue_sentinel(&entity->raw);
         q = ngx_queue_next(q))
    {
        r = ngx_queue_data(q, ngx_http_usage_raw_t, entity_queue);

        if (!ngx_http_usage_skip_before(w->sh, r, key, how)) {
            break;
        }

        last = q;
    }

    return last;
}


/*
 * One series' count and value in q's range: NGX_DONE if none.  From its
 * sums when the range takes it whole, else from its buckets (pieces is
 * the caller's scratch).
 */

static ngx_int_t
ngx_http_usage_series_tally_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_range_t *q, ngx_http_usage_series_t *series,
    ngx_array_t *pieces, ngx_http_usage_tally_t *tally, int64_t now)
{
    ngx_uint_t               i;
    ngx_http_usage_piece_t  *pc;

    switch (ngx_http_usage_series_sum_locked(zone, q, series, tally, now)) {

    case NGX_OK:
        return NGX_OK;

    case NGX_DONE:
        return NGX_DONE;    /* nothing counted in the window */

    default:                /* NGX_DECLINED: the range cuts the series */
        break;
    }

    pieces->nelts = 0;

    if (ngx_http_usage_range_locked(zone, q, series, pieces, 0, now)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    tally->type = series->type;
    tally->first = INT64_MAX;
    tally->count = 0;
    tally->value = 0;

    pc = pieces->elts;

    for (i = 0; i < pieces->nelts; i++) {
        tally->first = ngx_min(tally->first, pc[i].time);
        tally->count += pc[i].count;
        tally->value += pc[i].value;
    }

    return tally->count ? NGX_OK : NGX_DONE;
}


/* the scratch of entity_sum_locked() */

ngx_int_t
ngx_http_usage_entity_sum_init(ngx_pool_t *pool, ngx_array_t *pieces)
{
    return ngx_array_init(pieces, pool, 4, sizeof(ngx_http_usage_piece_t));
}


/*
 * An entity's count and value in q's range, as its summary counts them:
 * the ranking of GET /v1/entities (ngx_http_usage_rank.c).
 */

ngx_int_t
ngx_http_usage_entity_sum_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_range_t *q, ngx_http_usage_entity_t *entity,
    ngx_array_t *pieces, int64_t now)
{
    ngx_queue_t              *sq;
    ngx_http_usage_tally_t    tally;
    ngx_http_usage_series_t  *series;

    q->total = 0;
    q->value = 0;

    for (sq = ngx_queue_head(&entity->series);
         sq != ngx_queue_sentinel(&entity->series);
         sq = ngx_queue_next(sq))
    {
        series = ngx_queue_data(sq, ngx_http_usage_series_t, queue);

        switch (ngx_http_usage_series_tally_locked(zone, q, series, pieces,
                                                   &tally, now))
        {
        case NGX_OK:
            q->total += tally.count;
            q->value += tally.value;
            break;

        case NGX_DONE:
            break;

        default:
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_usage_store_summary(ngx_http_usage_zone_t *zone, ngx_pool_t *pool,
    ngx_http_usage_range_t *q, int64_t now)
{
    size_t                    len;
    u_char                   *p;
    ngx_uint_t                i, j, n;
    ngx_queue_t              *sq;
    ngx_array_t               pieces;
    ngx_http_usage_entity_t  *entity;
    ngx_http_usage_series_t  *series;
    ngx_http_usage_tally_t   *tally, tmp;
    ngx_http_usage_count_t   *c;

    /* a summary folds each series into one piece (piece_add() without
     * an interval): room for one, not a history's 64 (1.5 KB of the
     * request's pool, enough to make it grow a block) */
    if (ngx_array_init(&q->counts, pool, 8, sizeof(ngx_http_usage_count_t))
        != NGX_OK
        || ngx_array_init(&pieces, pool, 1, sizeof(ngx_http_usage_piece_t))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    tally = NULL;
    n = 0;

    entity = ngx_http_usage_range_begin(zone, q, now);
    if (entity == NULL) {
        goto done;
    }

    for (sq = ngx_queue_head(&entity->series);
         sq != ngx_queue_sentinel(&entity->series);
         sq = ngx_queue_next(sq))
    {
        n++;
    }

    tally = ngx_palloc(pool, (n ? n : 1) * sizeof(ngx_http_usage_tally_t));
    if (tally == NULL) {
        goto failed;
    }

    n = 0;

    for (sq = ngx_queue_head(&entity->series);
         sq != ngx_queue_sentinel(&entity->series);
         sq = ngx_queue_next(sq))
    {
        series = ngx_queue_data(sq, ngx_http_usage_series_t, queue);

        switch (ngx_http_usage_series_tally_locked(zone, q, series, &pieces,
                                                   &tally[n], now))
        {
        case NGX_OK:
            n++;
            break;

        case NGX_DONE:
            break;

        default:
            goto failed;
        }
    }

    /* types in the order they were first seen in the range, as the old
     * service listed them; a handful: insertion sort */
    for (i = 1; i < n; i++) {
        tmp = tally[i];

        for (j = i; j > 0 && tally[j - 1].first > tmp.first; j--) {
            tally[j] = tally[j - 1];
        }

        tally[j] = tmp;
    }

    /* the names copied out in one piece of the pool */
    len = 0;

    for (i = 0; i < n; i++) {
        len += tally[i].type->len;
    }

    c = n ? ngx_array_push_n(&q->counts, n) : NULL;
    p = len ? ngx_pnalloc(pool, len) : NULL;

    if ((n && c == NULL) || (len && p == NULL)) {
        goto failed;
    }

    for (i = 0; i < n; i++) {
        c[i].name.data = p;
        c[i].name.len = tally[i].type->len;
        p = ngx_cpymem(p, tally[i].type->data, tally[i].type->len);

        c[i].count = tally[i].count;
        c[i].value = tally[i].value;
        c[i].plain = tally[i].type->plain;
        q->total += tally[i].count;
        q->value += tally[i].value;
    }

done:

    ngx_http_usage_store_unlock(zone);

    return NGX_OK;

failed:

    ngx_http_usage_store_unlock(zone);

    return NGX_ERROR;
}


ngx_int_t
ngx_http_usage_store_history(ngx_http_usage_zone_t *zone, ngx_pool_t *pool,
    ngx_http_usage_range_t *q, int64_t now)
{
    ngx_uint_t                i, j;
    ngx_queue_t              *sq;
    ngx_array_t               pieces;
    ngx_http_usage_point_t   *pt;
    ngx_http_usage_piece_t   *pc, tmp;
    ngx_http_usage_entity_t  *entity;
    ngx_http_usage_series_t  *series;

    if (ngx_array_init(&q->points, pool, 16, sizeof(ngx_http_usage_point_t))
        != NGX_OK
        || ngx_array_init(&pieces, pool, 16, sizeof(ngx_http_usage_piece_t))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    entity = ngx_http_usage_range_begin(zone, q, now);

    if (entity) {
        for (sq = ngx_queue_head(&entity->series);
             sq != ngx_queue_sentinel(&entity->series);
             sq = ngx_queue_next(sq))
        {
            series = ngx_queue_data(sq, ngx_http_usage_series_t, queue);

            if (ngx_http_usage_range_locked(zone, q, series, &pieces,
                                            q->interval, now)
                != NGX_OK)
            {
                ngx_http_usage_store_unlock(zone);
                return NGX_ERROR;
            }
        }
    }

    ngx_http_usage_store_unlock(zone);

    /* outside the lock: order the pieces and add up equal points */

    if (pieces.nelts <= 32) {
        /* a few points per series, each series in order: an insertion
         * sort, where qsort() would call its comparator for each pair */
        pc = pieces.elts;

        for (i = 1; i < pieces.nelts; i++) {
            tmp = pc[i];

            for (j = i; j > 0 && pc[j - 1].time > tmp.time; j--) {
                pc[j] = pc[j - 1];
            }

            pc[j] = tmp;
        }

    } else {
        ngx_qsort(pieces.elts, pieces.nelts, sizeof(ngx_http_usage_piece_t),
                  ngx_http_usage_piece_cmp);
    }

    pc = pieces.elts;
    pt = NULL;

    for (i = 0; i < pieces.nelts; i++) {
        if (pc[i].count == 0) {
            continue;
        }

        if (pt == NULL || pt->time != pc[i].time) {
            pt = ngx_array_push(&q->points);
            if (pt == NULL) {
                return NGX_ERROR;
            }

            pt->time = pc[i].time;
            pt->count = 0;
            pt->value = 0;
        }

        pt->count += pc[i].count;
        pt->value += pc[i].value;
        q->total += pc[i].count;
        q->value += pc[i].value;
    }

    return NGX_OK;
}


/*
 * What a summary and a history start with: the lock taken, the window
 * applied, and the entity (NULL if unknown) with its buckets rolled up.
 */

static ngx_http_usage_entity_t *
ngx_http_usage_range_begin(ngx_http_usage_zone_t *zone,
    ngx_http_usage_range_t *q, int64_t now)
{
    ngx_http_usage_entity_t  *entity;

    q->total = 0;
    q->value = 0;
    q->resolution = NGX_HTTP_USAGE_EXACT;

    ngx_http_usage_store_lock(zone);

    ngx_http_usage_expire_locked(zone, now);

    entity = ngx_http_usage_entity_lookup(zone->sh, &q->entity);

    if (entity && ngx_http_usage_compact_due(zone, entity, now)) {
        ngx_http_usage_compact_locked(zone, entity, now);
    }

    return entity;
}


/*
 * A range that holds a whole series (no since inside the window, no until
 * before its last bucket ends) counts what the series' sums hold: the
 * summary of an entity then costs its types, not their buckets.  Only the
 * oldest buckets are looked at, for the first time counted and for the
 * resolution of a bucket reaching past the window (as in range_locked()).
 * NGX_DONE: nothing counted; NGX_DECLINED: the range cuts the series.
 */

static ngx_int_t
ngx_http_usage_series_sum_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_range_t *q, ngx_http_usage_series_t *series,
    ngx_http_usage_tally_t *tally, int64_t now)
{
    int64_t  oldest;

    oldest = now - zone->retention;

    if (series->count == NGX_HTTP_USAGE_SUMS_LOST
        || !ngx_http_usage_range_whole(q, series, oldest))
    {
        return NGX_DECLINED;
    }

    if (series->count == 0) {
        return NGX_DONE;
    }

    tally->type = series->type;
    tally->first = ngx_http_usage_window_edge(q, series, oldest);
    tally->count = series->count;
    tally->value = series->value;

    return NGX_OK;
}


/*
 * Whether q's range holds the whole series: no since inside the window
 * (the window's own edge is retention's business), and no until before
 * its last bucket ends.  A series without buckets is held whole.
 */

static ngx_uint_t
ngx_http_usage_range_whole(ngx_http_usage_range_t *q,
    ngx_http_usage_series_t *series, int64_t oldest)
{
    ngx_http_usage_bucket_t  *b;

    if (q->since > oldest) {
        return 0;
    }

    if (ngx_queue_empty(&series->buckets)) {
        return 1;
    }

    b = ngx_queue_data(ngx_queue_last(&series->buckets),
                       ngx_http_usage_bucket_t, queue);

    return q->until >= b->start + b->span - 1;
}


/*
 * The oldest buckets of a series, those reaching past the window: one
 * whose events are not all in the log any more counts whole, and lowers
 * the answer's resolution.  Returns the start of the first bucket that
 * counts anything (INT64_MAX: none).
 */

static int64_t
ngx_http_usage_window_edge(ngx_http_usage_range_t *q,
    ngx_http_usage_series_t *series, int64_t oldest)
{
    int64_t                   first;
    ngx_queue_t              *bq;
    ngx_http_usage_bucket_t  *b;

    first = INT64_MAX;

    for (bq = ngx_queue_head(&series->buckets);
         bq != ngx_queue_sentinel(&series->buckets);
         bq = ngx_queue_next(bq))
    {
        b = ngx_queue_data(bq, ngx_http_usage_bucket_t, queue);

        if (b->count == 0) {
            continue;
        }

        if (first == INT64_MAX) {
            first = b->start;
        }

        if (b->start >= oldest) {
            break;
        }

        if (b->count != b->raw_count) {
            ngx_http_usage_coarse(q, b);
        }
    }

    return first;
}


/*
 * A history of a whole series (as for series_sum_locked()): every bucket
 * counts whole, folded into its point in local sums, one piece per point.
 * The resolution is range_locked()'s: a bucket coarser than the interval,
 * or one reaching past the window with some of its events already out of
 * the log.
 */

static ngx_int_t
ngx_http_usage_series_points(ngx_http_usage_range_t *q,
    ngx_http_usage_series_t *series, ngx_array_t *pieces, int64_t interval,
    int64_t oldest)
{
    double                    value;
    int64_t                   point;
    uint64_t                  count;
    ngx_queue_t              *bq;
    ngx_http_usage_bucket_t  *b, *tail;

    /*
     * All of the series in one point (a day's history, or an hour's of a
     * recent entity): the series' sums, after a look at the buckets that
     * reach past the window.  Nothing else has to be read: buckets are
     * scattered in the zone, and each one read is a likely cache miss.
     */
    b = ngx_queue_data(ngx_queue_head(&series->buckets),
                       ngx_http_usage_bucket_t, queue);
    point = ngx_http_usage_floor(b->start, interval);

    tail = ngx_queue_data(ngx_queue_last(&series->buckets),
                          ngx_http_usage_bucket_t, queue);

    if (series->count != NGX_HTTP_USAGE_SUMS_LOST
        && tail->start + tail->span - 1 - point < interval)
    {
        (void) ngx_http_usage_window_edge(q, series, oldest);

        if (series->count == 0) {
            return NGX_OK;
        }

        return ngx_http_usage_piece_add(pieces, point, series->count,
                                        series->value, interval);
    }

    point = 0;
    count = 0;
    value = 0;

    for (bq = ngx_queue_head(&series->buckets);
         bq != ngx_queue_sentinel(&series->buckets);
         bq = ngx_queue_next(bq))
    {
        b = ngx_queue_data(bq, ngx_http_usage_bucket_t, queue);

        if (b->count == 0) {
            continue;
        }

        if (b->span > interval
            || (b->start < oldest && b->count != b->raw_count))
        {
            ngx_http_usage_coarse(q, b);
        }

        if (count && b->start >= point && b->start - point < interval) {
            count += b->count;
            value += b->value;
            continue;
        }

        if (count
            && ngx_http_usage_piece_add(pieces, point, count, value, interval)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        point = ngx_http_usage_floor(b->start, interval);
        count = b->count;
        value = b->value;
    }

    if (count) {
        return ngx_http_usage_piece_add(pieces, point, count, value,
                                        interval);
    }

    return NGX_OK;
}


/*
 * The pieces of one series inside q's range: whole buckets, and for a
 * bucket the range cuts, its raw events when the log still holds all of
 * them.  With an interval, each piece is put at its point's time; a
 * bucket coarser than the interval stays whole at its own start.
 */

static ngx_int_t
ngx_http_usage_range_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_range_t *q, ngx_http_usage_series_t *series,
    ngx_array_t *pieces, int64_t interval, int64_t now)
{
    int64_t                   lo, hi, end;
    ngx_queue_t              *bq, *rq;
    ngx_http_usage_raw_t     *raw;
    ngx_http_usage_bucket_t  *b;

    /* the window's own edge is retention's business, not an edge of the
     * query: events leave the aggregates when their time does */
    lo = (q->since > now - zone->retention) ? q->since : INT64_MIN;
    hi = q->until;

    if (interval && !ngx_queue_empty(&series->buckets)
        && ngx_http_usage_range_whole(q, series, now - zone->retention))
    {
        return ngx_http_usage_series_points(q, series, pieces, interval,
                                            now - zone->retention);
    }

    for (bq = ngx_queue_head(&series->buckets);
         bq != ngx_queue_sentinel(&series->buckets);
         bq = ngx_queue_next(bq))
    {
        b = ngx_queue_data(bq, ngx_http_usage_bucket_t, queue);
        end = b->start + b->span - 1;

        if (end < lo) {
            continue;
        }

        if (b->start > hi) {
            break;
        }

        if (b->count == 0) {
            continue;
        }

        if (b->start >= lo && end <= hi) {
            if (b->start < now - zone->retention
                && b->count != b->raw_count)
            {
                /*
                 * The oldest bucket reaches past the window, and some of
                 * its events left the log before their time did: they
                 * are counted until the whole bucket leaves.
                 */
                ngx_http_usage_coarse(q, b);
            }

            if (interval && b->span > interval) {
                ngx_http_usage_coarse(q, b);
            }

            if (ngx_http_usage_piece_add(pieces, b->start, b->count,
                                         b->value, interval)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        if (b->raw_count == b->count) {
            /* every event of the bucket is still in the log: exact */

            for (rq = ngx_queue_head(&b->raw);
                 rq != ngx_queue_sentinel(&b->raw);
                 rq = ngx_queue_next(rq))
            {
                raw = ngx_queue_data(rq, ngx_http_usage_raw_t, bucket_queue);

                if (raw->time < lo || raw->time > hi) {
                    continue;
                }

                if (ngx_http_usage_piece_add(pieces, raw->time, 1,
                                             raw->value, interval)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }

            continue;
        }

        /* some were evicted from the log: the whole bucket, flagged */

        ngx_http_usage_coarse(q, b);

        if (ngx_http_usage_piece_add(pieces, b->start, b->count, b->value,
                                     interval)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_inline ngx_int_t
ngx_http_usage_piece_add(ngx_array_t *pieces, int64_t time, uint64_t count,
    double value, int64_t interval)
{
    ngx_http_usage_piece_t  *pc, *last;

    /*
     * A summary keeps one piece per series, at its earliest time; in a
     * history, consecutive pieces of one point fold into one.  A series'
     * buckets come in order: most fall into the point before them, which a
     * comparison finds without a division.
     */
    if (pieces->nelts) {
        last = (ngx_http_usage_piece_t *) pieces->elts + pieces->nelts - 1;

        if (interval == 0
            || (time >= last->time && time - last->time < interval))
        {
            last->time = ngx_min(last->time, time);
            last->count += count;
            last->value += value;
            return NGX_OK;
        }
    }

    if (interval) {
        time = ngx_http_usage_floor(time, interval);
    }

    pc = ngx_array_push(pieces);
    if (pc == NULL) {
        return NGX_ERROR;
    }

    pc->time = time;
    pc->count = count;
    pc->value = value;

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_http_usage_piece_cmp(const void *a, const void *b)
{
    const ngx_http_usage_piece_t  *pa = a, *pb = b;

    return (pa->time > pb->time) - (pa->time < pb->time);
}


/*
 * eventsLastHour, minute by minute: the current minute and the sixty
 * before it (and the few ahead a client's time may reach), those that
 * hold events, ascending; their sum.  The circle has a slot for every one
 * of them, so none is ever missing.
 */

static uint64_t
ngx_http_usage_stats_minutes_locked(ngx_http_usage_shctx_t *sh,
    ngx_http_usage_stats_t *st, int64_t now)
{
    int64_t                   minute;
    uint64_t                  sum;
    ngx_uint_t                i, j, n;
    ngx_http_usage_minute_t   m;

    minute = now - now % NGX_HTTP_USAGE_MINUTE;
    sum = 0;
    n = 0;

    for (i = 0; i < NGX_HTTP_USAGE_MINUTE_SLOTS; i++) {
        if (sh->minute_start[i] < minute - NGX_HTTP_USAGE_HOUR
            || sh->minute_start[i] > now + NGX_HTTP_USAGE_FUTURE_MAX
            || sh->minute_count[i] == 0)
        {
            continue;
        }

        sum += sh->minute_count[i];

        if (n == NGX_HTTP_USAGE_STATS_MINUTES) {
            continue;
        }

        /* insertion: at most 66 of them */
        m.start = sh->minute_start[i];
        m.count = sh->minute_count[i];

        for (j = n++; j > 0 && st->minute[j - 1].start > m.start; j--) {
            st->minute[j] = st->minute[j - 1];
        }

        st->minute[j] = m;
    }

    st->nminutes = n;

    return sum;
}


ngx_int_t
ngx_http_usage_store_stats(ngx_http_usage_zone_t *zone, ngx_pool_t *pool,
    ngx_http_usage_stats_t *st, ngx_uint_t with_types, int64_t now)
{
    size_t                   pages;
    uint64_t                 last_hour;
    ngx_queue_t             *p;
    ngx_slab_pool_t         *shpool;
    ngx_http_usage_type_t   *type;
    ngx_http_usage_count_t  *c;
    ngx_http_usage_shctx_t  *sh;

    if (ngx_array_init(&st->types, pool, 8, sizeof(ngx_http_usage_count_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    shpool = zone->shpool;
    sh = zone->sh;

    ngx_http_usage_store_lock(zone);

    ngx_http_usage_expire_locked(zone, now);
    ngx_http_usage_store_expire_types_locked(zone, now);

    last_hour = ngx_http_usage_stats_minutes_locked(sh, st, now);

    st->total = sh->total;
    st->last_hour = ngx_min(last_hour, sh->total);
    st->entities = sh->entity_count;
    st->event_types = sh->type_count;
    st->start_time = sh->start_time;
    st->max_events = zone->max_events;
    st->raw_events = sh->raw_count;
    st->buckets = sh->bucket_count;
    st->ids = sh->id_count;
    st->recorded = sh->recorded;
    st->duplicates = sh->duplicates;
    st->raw_evicted = sh->raw_evicted;
    st->raw_expired = sh->raw_expired;
    st->buckets_evicted = sh->buckets_evicted;
    st->buckets_expired = sh->buckets_expired;
    st->ids_evicted = sh->ids_evicted;
    st->dropped = sh->dropped;
    st->entity_limited = sh->entity_limited;
    st->torn = sh->torn;
    st->raw_bytes = sh->ring_end - sh->ring;
    /* the bytes between head and tail: back-dated events that already
     * left by their time still occupy theirs until the head passes */
    if (sh->raw_count == 0) {
        st->raw_bytes_used = 0;

    } else if (sh->ring_wrap) {
        st->raw_bytes_used = (sh->ring_wrap - sh->ring_head)
                             + (sh->ring_tail - sh->ring);

    } else {
        st->raw_bytes_used = sh->ring_tail - sh->ring_head;
    }
    st->saved_at = sh->saved_at;
    st->saves = sh->saves;

    pages = (shpool->end - shpool->start) / ngx_pagesize;
    st->bytes_free = shpool->pfree * ngx_pagesize;
    st->bytes_used = (pages - ngx_min(pages, shpool->pfree)) * ngx_pagesize;

    if (with_types) {
        for (p = ngx_queue_head(&sh->types_order);
             p != ngx_queue_sentinel(&sh->types_order);
             p = ngx_queue_next(p))
        {
            type = ngx_queue_data(p, ngx_http_usage_type_t, order);

            if (type->count == 0) {
                continue;
            }

            c = ngx_array_push(&st->types);
            if (c == NULL
                || ngx_http_usage_copy_name(pool, &c->name, type->data,
                                            type->len)
                   != NGX_OK)
            {
                ngx_http_usage_store_unlock(zone);
                return NGX_ERROR;
            }

            c->count = type->count;
            c->value = 0;
            c->plain = type->plain;
        }
    }

    ngx_http_usage_store_unlock(zone);

    return NGX_OK;
}


static ngx_int_t
ngx_http_usage_copy_name(ngx_pool_t *pool, ngx_str_t *dst, u_char *data,
    size_t len)
{
    dst->data = ngx_pnalloc(pool, len);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    dst->len = len;
    ngx_memcpy(dst->data, data, len);

    return NGX_OK;
}
