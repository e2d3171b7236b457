
/*
 * The usage store in a shared-memory slab zone.
 *
 * Layout: one queue of all events in insertion order (which is also
 * createdAt order: insert keeps createdAt monotonic), a per-entity queue
 * of the entity's events, and two red-black trees of counted names
 * (entities, event types) keyed by hash with a memcmp tie-break, as in
 * ngx_http_limit_req_module.  Writes are O(log n); eviction and retention
 * pop from the head of the global queue.
 *
 * Locking: everything below runs under shpool->mutex, the only lock the
 * master process knows how to recover when a worker dies holding it.
 * Hashing happens before the lock, rendering after it.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_store.h"


#define ngx_http_usage_event_at(q, off)                                      \
    ((ngx_http_usage_event_t *) ((u_char *) (q) - (off)))


static void ngx_http_usage_warn_resized(ngx_shm_zone_t *shm_zone);
static void ngx_http_usage_key_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_usage_key_t *ngx_http_usage_key_lookup(ngx_rbtree_t *tree,
    uint32_t hash, ngx_str_t *name);
static ngx_http_usage_key_t *ngx_http_usage_key_hold_locked(
    ngx_http_usage_zone_t *zone, ngx_rbtree_t *tree, uint32_t hash,
    ngx_str_t *name, ngx_queue_t *order);
static void ngx_http_usage_key_release_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_key_t *key, ngx_uint_t is_entity);
static void *ngx_http_usage_alloc_locked(ngx_http_usage_zone_t *zone,
    size_t size);
static ngx_uint_t ngx_http_usage_evict_oldest_locked(
    ngx_http_usage_zone_t *zone);
static void ngx_http_usage_event_free_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_event_t *ev);
static void ngx_http_usage_expire_locked(ngx_http_usage_zone_t *zone,
    int64_t now);
static ngx_int_t ngx_http_usage_copy_event(ngx_pool_t *pool,
    ngx_array_t *records, ngx_http_usage_event_t *ev);
static ngx_int_t ngx_http_usage_copy_name(ngx_pool_t *pool, ngx_str_t *dst,
    ngx_http_usage_key_t *key);


/*
 * nginx gives a zone whose size changed on reload a fresh, empty mapping.
 * The running cycle (still ngx_cycle while the new one is initialized)
 * tells whether that is what happened: say so rather than lose the data
 * silently.
 */

static void
ngx_http_usage_warn_resized(ngx_shm_zone_t *shm_zone)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_shm_zone_t   *old;

    if (ngx_cycle == NULL || ngx_cycle->shared_memory.part.elts == NULL) {
        return;
    }

    part = (ngx_list_part_t *) &ngx_cycle->shared_memory.part;
    old = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return;
            }

            part = part->next;
            old = part->elts;
            i = 0;
        }

        if (old[i].tag == shm_zone->tag
            && old[i].shm.name.len == shm_zone->shm.name.len
            && ngx_strncmp(old[i].shm.name.data, shm_zone->shm.name.data,
                           shm_zone->shm.name.len) == 0
            && old[i].shm.size != shm_zone->shm.size)
        {
            ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                          "usage zone \"%V\" was resized from %uz to %uz "
                          "bytes: it starts empty, the events stored so far "
                          "are not carried over", &shm_zone->shm.name,
                          old[i].shm.size, shm_zone->shm.size);
            return;
        }
    }
}


ngx_int_t
ngx_http_usage_store_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_usage_zone_t  *ozone = data;

    size_t                   len;
    ngx_time_t              *tp;
    ngx_http_usage_zone_t   *zone;
    ngx_http_usage_shctx_t  *sh;

    zone = shm_zone->data;

    if (ozone) {
        /*
         * Reload with an unchanged zone: take over the live store.  Old
         * workers are still serving from it, so nothing in it is touched;
         * max_events and retention are per-cycle and apply from now on.
         */
        zone->sh = ozone->sh;
        zone->shpool = ozone->shpool;
        return NGX_OK;
    }

    zone->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        zone->sh = zone->shpool->data;
        return NGX_OK;
    }

    ngx_http_usage_warn_resized(shm_zone);

    sh = ngx_slab_alloc(zone->shpool, sizeof(ngx_http_usage_shctx_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(sh, sizeof(ngx_http_usage_shctx_t));

    ngx_rbtree_init(&sh->entities, &sh->entities_sentinel,
                    ngx_http_usage_key_insert);
    ngx_rbtree_init(&sh->types, &sh->types_sentinel,
                    ngx_http_usage_key_insert);
    ngx_queue_init(&sh->types_order);
    ngx_queue_init(&sh->events);

    tp = ngx_timeofday();
    sh->start_time = (int64_t) tp->sec * 1000 + tp->msec;

    zone->sh = sh;
    zone->shpool->data = sh;

    /* the log context lives in the zone: it must outlive this cycle */
    len = sizeof(" in usage zone \"\"") + shm_zone->shm.name.len;

    zone->shpool->log_ctx = ngx_slab_alloc(zone->shpool, len);
    if (zone->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(zone->shpool->log_ctx, " in usage zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone is handled by evicting the oldest events, not logged */
    zone->shpool->log_nomem = 0;

    return NGX_OK;
}


ngx_int_t
ngx_http_usage_store_insert(ngx_http_usage_zone_t *zone,
    ngx_http_usage_record_t *rec, int64_t now)
{
    size_t                   size;
    int64_t                  created;
    uint32_t                 entity_hash, type_hash;
    ngx_slab_pool_t         *shpool;
    ngx_http_usage_key_t    *entity, *type;
    ngx_http_usage_event_t  *ev;
    ngx_http_usage_shctx_t  *sh;

    entity_hash = ngx_crc32_short(rec->entity.data, rec->entity.len);
    type_hash = ngx_crc32_short(rec->type.data, rec->type.len);
    size = offsetof(ngx_http_usage_event_t, metadata) + rec->metadata.len;

    shpool = zone->shpool;
    sh = zone->sh;

    ngx_shmtx_lock(&shpool->mutex);

    /*
     * A large event needs contiguous slab pages, which the pages pinned by
     * small events and names can keep apart until most of the store is
     * evicted: an event of more than a quarter of the zone is refused
     * before anything is evicted for it.
     */
    if (size > ngx_http_usage_store_event_max(shpool)) {
        goto drop;
    }

    ngx_http_usage_expire_locked(zone, now);

    while (sh->count >= zone->max_events) {
        if (!ngx_http_usage_evict_oldest_locked(zone)) {
            break;
        }
    }

    /*
     * The names are held (counted) before the event is allocated: the
     * eviction that may make room for the event must not free them.
     */

    entity = ngx_http_usage_key_hold_locked(zone, &sh->entities, entity_hash,
                                            &rec->entity, NULL);
    if (entity == NULL) {
        goto drop;
    }

    type = ngx_http_usage_key_hold_locked(zone, &sh->types, type_hash,
                                          &rec->type, &sh->types_order);
    if (type == NULL) {
        ngx_http_usage_key_release_locked(zone, entity, 1);
        goto drop;
    }

    ev = ngx_http_usage_alloc_locked(zone, size);
    if (ev == NULL) {
        ngx_http_usage_key_release_locked(zone, type, 0);
        ngx_http_usage_key_release_locked(zone, entity, 1);
        goto drop;
    }

    /*
     * Workers' cached clocks differ by a few milliseconds; clamping keeps
     * the global queue sorted by createdAt, which every query relies on.
     */
    created = now;
    if (created < sh->last_created) {
        created = sh->last_created;
    }
    sh->last_created = created;

    ev->entity = entity;
    ev->type = type;
    ev->created = created;
    ngx_memcpy(ev->id, rec->id, 16);
    ev->metadata_len = (uint32_t) rec->metadata.len;
    ngx_memcpy(ev->metadata, rec->metadata.data, rec->metadata.len);

    ngx_queue_insert_tail(&sh->events, &ev->queue);
    ngx_queue_insert_tail(&entity->queue, &ev->entity_queue);

    if (sh->hour == NULL) {
        sh->hour = &ev->queue;
    }

    sh->hour_count++;
    sh->count++;
    sh->recorded++;

    ngx_shmtx_unlock(&shpool->mutex);

    rec->created = created;

    return NGX_OK;

drop:

    ngx_shmtx_unlock(&shpool->mutex);

    ngx_http_usage_store_count_drop(zone);

    return NGX_DECLINED;
}


ngx_int_t
ngx_http_usage_store_list(ngx_http_usage_zone_t *zone, ngx_pool_t *pool,
    ngx_http_usage_list_t *q, int64_t now)
{
    size_t                   off;
    uint32_t                 entity_hash, type_hash;
    ngx_uint_t               matched, emitted, count_all, n;
    ngx_queue_t             *head, *cur, *first, *next, *p;
    ngx_http_usage_key_t    *entity, *type;
    ngx_http_usage_event_t  *ev, *e;
    ngx_http_usage_shctx_t  *sh;

    entity_hash = q->entity ? ngx_crc32_short(q->entity->data, q->entity->len)
                            : 0;
    type_hash = q->type ? ngx_crc32_short(q->type->data, q->type->len) : 0;

    n = ngx_min(q->limit, 64);
    if (ngx_array_init(&q->records, pool, n ? n : 1,
                       sizeof(ngx_http_usage_record_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    q->total = 0;
    sh = zone->sh;

    ngx_shmtx_lock(&zone->shpool->mutex);

    ngx_http_usage_expire_locked(zone, now);

    entity = NULL;
    type = NULL;

    if (q->entity) {
        entity = ngx_http_usage_key_lookup(&sh->entities, entity_hash,
                                           q->entity);
        if (entity == NULL) {
            goto done;
        }
    }

    if (q->type) {
        type = ngx_http_usage_key_lookup(&sh->types, type_hash, q->type);
        if (type == NULL) {
            goto done;
        }
    }

    if (entity) {
        head = &entity->queue;
        off = offsetof(ngx_http_usage_event_t, entity_queue);
        q->total = entity->count;

    } else {
        head = &sh->events;
        off = offsetof(ngx_http_usage_event_t, queue);
        q->total = type ? type->count : sh->count;
    }

    /* only an entity filtered by type has no maintained count */
    count_all = (entity && type);

    if (!count_all && q->offset >= q->total) {
        goto done;
    }

    /*
     * Newest first by createdAt; events with equal createdAt keep their
     * insertion order, as the stable sort of the old service did.  Walk
     * back group by group, and forward inside a group.
     */

    matched = 0;
    emitted = 0;
    cur = ngx_queue_last(head);

    while (cur != ngx_queue_sentinel(head)) {
        ev = ngx_http_usage_event_at(cur, off);

        first = cur;
        while (ngx_queue_prev(first) != ngx_queue_sentinel(head)
               && ngx_http_usage_event_at(ngx_queue_prev(first), off)->created
                  == ev->created)
        {
            first = ngx_queue_prev(first);
        }

        next = ngx_queue_prev(first);

        for (p = first; /* void */; p = ngx_queue_next(p)) {
            e = ngx_http_usage_event_at(p, off);

            if (type == NULL || e->type == type) {
                if (matched >= q->offset && emitted < q->limit) {
                    if (ngx_http_usage_copy_event(pool, &q->records, e)
                        != NGX_OK)
                    {
                        ngx_shmtx_unlock(&zone->shpool->mutex);
                        return NGX_ERROR;
                    }

                    emitted++;
                }

                matched++;
            }

            if (p == cur) {
                break;
            }
        }

        /* enough, or every match of a rare type already seen */
        if (!count_all && (emitted == q->limit || matched == q->total)) {
            break;
        }

        cur = next;
    }

    if (count_all) {
        q->total = matched;
    }

done:

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return NGX_OK;
}


/*
 * The entity's first event at or after since: found from the newer end,
 * so that a recent range costs what it holds, not the entity's history.
 */

static ngx_queue_t *
ngx_http_usage_range_first_locked(ngx_http_usage_key_t *entity,
    int64_t since)
{
    ngx_queue_t             *p, *prev;
    ngx_http_usage_event_t  *ev;

    if (since == INT64_MIN) {
        return ngx_queue_head(&entity->queue);
    }

    p = ngx_queue_sentinel(&entity->queue);

    for ( ;; ) {
        prev = ngx_queue_prev(p);

        if (prev == ngx_queue_sentinel(&entity->queue)) {
            return p;
        }

        ev = ngx_queue_data(prev, ngx_http_usage_event_t, entity_queue);

        if (ev->created < since) {
            return p;
        }

        p = prev;
    }
}


ngx_int_t
ngx_http_usage_store_summary(ngx_http_usage_zone_t *zone, ngx_pool_t *pool,
    ngx_http_usage_range_t *q, int64_t now)
{
    uint32_t                 hash;
    ngx_uint_t               i, gen;
    ngx_queue_t             *p;
    ngx_array_t              seen;
    ngx_http_usage_key_t    *entity, *type, **kp;
    ngx_http_usage_count_t  *c;
    ngx_http_usage_event_t  *ev;

    hash = ngx_crc32_short(q->entity.data, q->entity.len);

    if (ngx_array_init(&q->counts, pool, 8, sizeof(ngx_http_usage_count_t))
        != NGX_OK
        || ngx_array_init(&seen, pool, 8, sizeof(ngx_http_usage_key_t *))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    q->total = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    ngx_http_usage_expire_locked(zone, now);

    entity = ngx_http_usage_key_lookup(&zone->sh->entities, hash, &q->entity);
    if (entity == NULL) {
        goto done;
    }

    /* types are tallied in their keys, tagged with this query's generation,
     * and listed in the order they were first seen */
    gen = ++zone->sh->tally_gen;

    for (p = ngx_http_usage_range_first_locked(entity, q->since);
         p != ngx_queue_sentinel(&entity->queue);
         p = ngx_queue_next(p))
    {
        ev = ngx_queue_data(p, ngx_http_usage_event_t, entity_queue);

        if (ev->created > q->until) {
            break;
        }

        type = ev->type;

        if (type->tally_gen != gen) {
            kp = ngx_array_push(&seen);
            if (kp == NULL) {
                goto failed;
            }

            *kp = type;
            type->tally_gen = gen;
            type->tally = 0;
        }

        type->tally++;
        q->total++;
    }

    kp = seen.elts;

    for (i = 0; i < seen.nelts; i++) {
        c = ngx_array_push(&q->counts);
        if (c == NULL
            || ngx_http_usage_copy_name(pool, &c->name, kp[i]) != NGX_OK)
        {
            goto failed;
        }

        c->count = kp[i]->tally;
    }

done:

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return NGX_OK;

failed:

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return NGX_ERROR;
}


ngx_int_t
ngx_http_usage_store_history(ngx_http_usage_zone_t *zone, ngx_pool_t *pool,
    ngx_http_usage_range_t *q, int64_t now)
{
    int64_t                   t;
    uint32_t                  hash;
    ngx_queue_t              *p;
    ngx_http_usage_key_t     *entity;
    ngx_http_usage_event_t   *ev;
    ngx_http_usage_bucket_t  *b;

    hash = ngx_crc32_short(q->entity.data, q->entity.len);

    if (ngx_array_init(&q->buckets, pool, 16, sizeof(ngx_http_usage_bucket_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    q->total = 0;
    b = NULL;

    ngx_shmtx_lock(&zone->shpool->mutex);

    ngx_http_usage_expire_locked(zone, now);

    entity = ngx_http_usage_key_lookup(&zone->sh->entities, hash, &q->entity);
    if (entity == NULL) {
        goto done;
    }

    /* the entity's queue is sorted by createdAt: buckets come ascending */

    for (p = ngx_http_usage_range_first_locked(entity, q->since);
         p != ngx_queue_sentinel(&entity->queue);
         p = ngx_queue_next(p))
    {
        ev = ngx_queue_data(p, ngx_http_usage_event_t, entity_queue);

        if (ev->created > q->until) {
            break;
        }

        t = ev->created - ev->created % q->bucket;

        if (b == NULL || b->time != t) {
            b = ngx_array_push(&q->buckets);
            if (b == NULL) {
                ngx_shmtx_unlock(&zone->shpool->mutex);
                return NGX_ERROR;
            }

            b->time = t;
            b->count = 0;
        }

        b->count++;
        q->total++;
    }

done:

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return NGX_OK;
}


ngx_int_t
ngx_http_usage_store_stats(ngx_http_usage_zone_t *zone, ngx_pool_t *pool,
    ngx_http_usage_stats_t *st, ngx_uint_t with_types, int64_t now)
{
    size_t                   pages;
    ngx_queue_t             *p;
    ngx_slab_pool_t         *shpool;
    ngx_http_usage_key_t    *type;
    ngx_http_usage_count_t  *c;
    ngx_http_usage_event_t  *ev;
    ngx_http_usage_shctx_t  *sh;

    if (ngx_array_init(&st->types, pool, 8, sizeof(ngx_http_usage_count_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    shpool = zone->shpool;
    sh = zone->sh;

    ngx_shmtx_lock(&shpool->mutex);

    ngx_http_usage_expire_locked(zone, now);

    st->total = sh->count;
    st->entities = sh->entity_count;
    st->start_time = sh->start_time;
    st->max_events = zone->max_events;
    st->recorded = sh->recorded;
    st->evicted = sh->evicted;
    st->expired = sh->expired;
    st->dropped = sh->dropped;

    pages = (shpool->end - shpool->start) / ngx_pagesize;
    st->bytes_free = shpool->pfree * ngx_pagesize;
    st->bytes_used = (pages - ngx_min(pages, shpool->pfree)) * ngx_pagesize;

    /* move the last-hour cursor past what has aged out since last time */
    while (sh->hour) {
        ev = ngx_queue_data(sh->hour, ngx_http_usage_event_t, queue);

        if (ev->created >= now - NGX_HTTP_USAGE_HOUR) {
            break;
        }

        p = ngx_queue_next(sh->hour);
        sh->hour = (p == ngx_queue_sentinel(&sh->events)) ? NULL : p;
        sh->hour_count--;
    }

    st->last_hour = sh->hour_count;

    if (with_types) {
        for (p = ngx_queue_head(&sh->types_order);
             p != ngx_queue_sentinel(&sh->types_order);
             p = ngx_queue_next(p))
        {
            type = ngx_queue_data(p, ngx_http_usage_key_t, queue);

            c = ngx_array_push(&st->types);
            if (c == NULL
                || ngx_http_usage_copy_name(pool, &c->name, type) != NGX_OK)
            {
                ngx_shmtx_unlock(&shpool->mutex);
                return NGX_ERROR;
            }

            c->count = type->count;
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;
}


size_t
ngx_http_usage_store_event_max(ngx_slab_pool_t *shpool)
{
    return (size_t) (shpool->end - shpool->start) / 4;
}


int64_t
ngx_http_usage_store_start_time(ngx_http_usage_zone_t *zone)
{
    /* written once when the zone is created: no lock needed to read it */
    return zone->sh->start_time;
}


void
ngx_http_usage_store_count_drop(ngx_http_usage_zone_t *zone)
{
    /* a metered location without its key header drops on every request:
     * no lock for that */
    (void) ngx_atomic_fetch_add(&zone->sh->dropped, 1);
}


static void
ngx_http_usage_key_insert(ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t     **p;
    ngx_http_usage_key_t   *k, *kt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            k = (ngx_http_usage_key_t *) node;
            kt = (ngx_http_usage_key_t *) temp;

            p = (ngx_memn2cmp(k->data, kt->data, k->len, kt->len) < 0)
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


static ngx_http_usage_key_t *
ngx_http_usage_key_lookup(ngx_rbtree_t *tree, uint32_t hash, ngx_str_t *name)
{
    ngx_int_t              rc;
    ngx_rbtree_node_t     *node, *sentinel;
    ngx_http_usage_key_t  *k;

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

        k = (ngx_http_usage_key_t *) node;

        rc = ngx_memn2cmp(name->data, k->data, name->len, k->len);

        if (rc == 0) {
            return k;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/*
 * Finds or creates a name and counts one more reference to it.  "order"
 * is the list of all types (first seen first), or NULL for an entity,
 * whose queue heads its events instead.
 */

static ngx_http_usage_key_t *
ngx_http_usage_key_hold_locked(ngx_http_usage_zone_t *zone,
    ngx_rbtree_t *tree, uint32_t hash, ngx_str_t *name, ngx_queue_t *order)
{
    ngx_http_usage_key_t  *k;

    k = ngx_http_usage_key_lookup(tree, hash, name);

    if (k) {
        k->count++;
        return k;
    }

    k = ngx_http_usage_alloc_locked(zone, offsetof(ngx_http_usage_key_t, data)
                                          + name->len);
    if (k == NULL) {
        return NULL;
    }

    /* eviction inside the allocation only removes names: no re-lookup */

    ngx_memzero(&k->node, sizeof(ngx_rbtree_node_t));
    k->node.key = hash;
    k->count = 1;
    k->tally = 0;
    k->tally_gen = 0;
    k->len = (u_short) name->len;
    ngx_memcpy(k->data, name->data, name->len);

    ngx_rbtree_insert(tree, &k->node);

    if (order) {
        ngx_queue_insert_tail(order, &k->queue);

    } else {
        ngx_queue_init(&k->queue);
        zone->sh->entity_count++;
    }

    return k;
}


static void
ngx_http_usage_key_release_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_key_t *key, ngx_uint_t is_entity)
{
    if (--key->count) {
        return;
    }

    if (is_entity) {
        ngx_rbtree_delete(&zone->sh->entities, &key->node);
        zone->sh->entity_count--;

    } else {
        ngx_rbtree_delete(&zone->sh->types, &key->node);
        ngx_queue_remove(&key->queue);
    }

    ngx_slab_free_locked(zone->shpool, key);
}


/* allocates from the zone, evicting the oldest events while it is full */

static void *
ngx_http_usage_alloc_locked(ngx_http_usage_zone_t *zone, size_t size)
{
    void  *p;

    for ( ;; ) {
        p = ngx_slab_alloc_locked(zone->shpool, size);

        if (p != NULL) {
            return p;
        }

        if (!ngx_http_usage_evict_oldest_locked(zone)) {
            return NULL;
        }
    }
}


static ngx_uint_t
ngx_http_usage_evict_oldest_locked(ngx_http_usage_zone_t *zone)
{
    ngx_queue_t             *q;
    ngx_http_usage_shctx_t  *sh;

    sh = zone->sh;

    if (ngx_queue_empty(&sh->events)) {
        return 0;
    }

    q = ngx_queue_head(&sh->events);

    ngx_http_usage_event_free_locked(zone,
                             ngx_queue_data(q, ngx_http_usage_event_t, queue));
    sh->evicted++;

    return 1;
}


static void
ngx_http_usage_event_free_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_event_t *ev)
{
    ngx_http_usage_shctx_t  *sh;

    sh = zone->sh;

    /* events leave from the head only: at or before the last-hour cursor */
    if (sh->hour == &ev->queue) {
        sh->hour = (ngx_queue_next(&ev->queue)
                    == ngx_queue_sentinel(&sh->events))
                   ? NULL : ngx_queue_next(&ev->queue);
        sh->hour_count--;
    }

    ngx_queue_remove(&ev->queue);
    ngx_queue_remove(&ev->entity_queue);
    sh->count--;

    ngx_http_usage_key_release_locked(zone, ev->entity, 1);
    ngx_http_usage_key_release_locked(zone, ev->type, 0);

    ngx_slab_free_locked(zone->shpool, ev);
}


/*
 * Retention and max_events: every event older than the window, or beyond
 * the maximum, is unlinked and its memory reclaimed.  Each event leaves
 * once, so the cost is amortized O(1) per insert, and counts stay exact
 * without filtering on every read.
 */

static void
ngx_http_usage_expire_locked(ngx_http_usage_zone_t *zone, int64_t now)
{
    int64_t                  oldest;
    ngx_queue_t             *q;
    ngx_http_usage_event_t  *ev;
    ngx_http_usage_shctx_t  *sh;

    sh = zone->sh;
    oldest = now - zone->retention;

    while (!ngx_queue_empty(&sh->events)) {
        q = ngx_queue_head(&sh->events);
        ev = ngx_queue_data(q, ngx_http_usage_event_t, queue);

        if (ev->created >= oldest) {
            break;
        }

        ngx_http_usage_event_free_locked(zone, ev);
        sh->expired++;
    }

    /* a reload may have lowered max_events: every operation applies it */
    while (sh->count > zone->max_events) {
        if (!ngx_http_usage_evict_oldest_locked(zone)) {
            break;
        }
    }
}


static ngx_int_t
ngx_http_usage_copy_event(ngx_pool_t *pool, ngx_array_t *records,
    ngx_http_usage_event_t *ev)
{
    u_char                   *p;
    ngx_http_usage_record_t  *rec;

    rec = ngx_array_push(records);
    if (rec == NULL) {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(pool, ev->entity->len + ev->type->len + ev->metadata_len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(rec->id, ev->id, 16);
    rec->created = ev->created;

    rec->entity.data = p;
    rec->entity.len = ev->entity->len;
    p = ngx_cpymem(p, ev->entity->data, ev->entity->len);

    rec->type.data = p;
    rec->type.len = ev->type->len;
    p = ngx_cpymem(p, ev->type->data, ev->type->len);

    rec->metadata.data = p;
    rec->metadata.len = ev->metadata_len;
    ngx_memcpy(p, ev->metadata, ev->metadata_len);

    return NGX_OK;
}


static ngx_int_t
ngx_http_usage_copy_name(ngx_pool_t *pool, ngx_str_t *dst,
    ngx_http_usage_key_t *key)
{
    dst->data = ngx_pnalloc(pool, key->len);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    dst->len = key->len;
    ngx_memcpy(dst->data, key->data, key->len);

    return NGX_OK;
}
