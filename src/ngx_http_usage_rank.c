
/*
 * GET /v1/entities: each entity's count and value in the range, as its
 * summary counts them, and the best limit + 1 kept in a heap.
 *
 * The walk goes through the entities' tree in its order, 1024 entities
 * (NGX_HTTP_USAGE_RANK_CHUNK) to a hold of the zone's lock, and gives the
 * lock back between: an insert waits for one chunk at most, never for the
 * whole ranking.  Between two chunks the walk keeps the next entity's name
 * and finds its place again by it, so an entity that leaves meanwhile is
 * simply not there.  The cost is every entity's types (its buckets too
 * where since or until cuts them), about 0.3 ms a chunk: a ranking of
 * 100,000 entities reads 98 chunks.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_store_internal.h"
#include "ngx_http_usage_rank.h"


typedef struct {
    ngx_http_usage_rank_t      *q;
    ngx_pool_t                 *pool;
    ngx_http_usage_rank_row_t  *rows;         /* a heap: the last in rank
                                                 on top */
    ngx_uint_t                  n;
    ngx_uint_t                  size;         /* limit + 1 */
    ngx_array_t                 pieces;       /* entity_sum_locked()'s */
    ngx_http_usage_range_t      range;
} ngx_http_usage_heap_t;


static ngx_int_t ngx_http_usage_rank_chunk_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_heap_t *h, ngx_str_t *resume, uint32_t *resume_key,
    int64_t now);
static ngx_int_t ngx_http_usage_rank_entity_locked(
    ngx_http_usage_zone_t *zone, ngx_http_usage_heap_t *h,
    ngx_http_usage_entity_t *entity, int64_t now);
static ngx_int_t ngx_http_usage_rank_before(ngx_http_usage_rank_t *q,
    ngx_http_usage_rank_row_t *a, ngx_http_usage_rank_row_t *b);
static ngx_int_t ngx_http_usage_heap_offer(ngx_http_usage_heap_t *h,
    ngx_http_usage_rank_row_t *row);
static void ngx_http_usage_heap_down(ngx_http_usage_heap_t *h, ngx_uint_t i,
    ngx_uint_t n);
static ngx_int_t ngx_http_usage_rank_finish(ngx_http_usage_heap_t *h);
static ngx_rbtree_node_t *ngx_http_usage_rank_from(ngx_rbtree_t *tree,
    uint32_t key, ngx_str_t *name);


ngx_int_t
ngx_http_usage_store_rank(ngx_http_usage_zone_t *zone, ngx_pool_t *pool,
    ngx_http_usage_rank_t *q, int64_t now)
{
    uint32_t                  resume_key;
    ngx_int_t                 rc;
    ngx_str_t                 resume;
    ngx_http_usage_heap_t     h;
    ngx_http_usage_entity_t  *entity;

    ngx_memzero(&h, sizeof(ngx_http_usage_heap_t));

    h.q = q;
    h.pool = pool;
    h.size = q->limit + 1;
    h.range.since = q->since;
    h.range.until = q->until;

    h.rows = ngx_palloc(pool, h.size * sizeof(ngx_http_usage_rank_row_t));
    resume.data = ngx_pnalloc(pool, NGX_HTTP_USAGE_ENTITY_MAX_BYTES);

    if (h.rows == NULL || resume.data == NULL
        || ngx_http_usage_entity_sum_init(pool, &h.pieces) != NGX_OK)
    {
        return NGX_ERROR;
    }

    q->more = 0;
    q->entities = 0;

    if (q->only) {
        /* a scoped key ranks its own entity alone */
        ngx_http_usage_store_lock(zone);
        ngx_http_usage_expire_locked(zone, now);

        entity = ngx_http_usage_entity_lookup(zone->sh, q->only);
        rc = entity ? ngx_http_usage_rank_entity_locked(zone, &h, entity, now)
                    : NGX_OK;
        q->entities = (entity != NULL);

        ngx_http_usage_store_unlock(zone);

        return (rc == NGX_OK) ? ngx_http_usage_rank_finish(&h) : NGX_ERROR;
    }

    resume.len = 0;
    resume_key = 0;

    do {
        ngx_http_usage_store_lock(zone);

        rc = ngx_http_usage_rank_chunk_locked(zone, &h, &resume, &resume_key,
                                              now);

        ngx_http_usage_store_unlock(zone);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

    } while (rc == NGX_AGAIN);

    return ngx_http_usage_rank_finish(&h);
}


/*
 * From the entity *resume names (or the first, before the walk has
 * started: resume->len 0), up to a chunk.  NGX_AGAIN: *resume names the
 * next entity, not read yet.
 */

static ngx_int_t
ngx_http_usage_rank_chunk_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_heap_t *h, ngx_str_t *resume, uint32_t *resume_key,
    int64_t now)
{
    ngx_uint_t                n;
    ngx_rbtree_t             *tree;
    ngx_rbtree_node_t        *node;
    ngx_http_usage_entity_t  *entity;

    ngx_http_usage_expire_locked(zone, now);

    tree = &zone->sh->entities;

    if (tree->root == tree->sentinel) {
        return NGX_OK;
    }

    node = resume->len ? ngx_http_usage_rank_from(tree, *resume_key, resume)
                       : ngx_rbtree_min(tree->root, tree->sentinel);

    for (n = 0; node && n < NGX_HTTP_USAGE_RANK_CHUNK; n++) {
        entity = (ngx_http_usage_entity_t *) node;

        if (ngx_http_usage_rank_entity_locked(zone, h, entity, now)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        h->q->entities++;
        node = ngx_rbtree_next(tree, node);
    }

    if (node == NULL) {
        return NGX_OK;
    }

    entity = (ngx_http_usage_entity_t *) node;

    *resume_key = (uint32_t) node->key;
    resume->len = entity->len;
    ngx_memcpy(resume->data, entity->data, entity->len);

    return NGX_AGAIN;
}


static ngx_int_t
ngx_http_usage_rank_entity_locked(ngx_http_usage_zone_t *zone,
    ngx_http_usage_heap_t *h, ngx_http_usage_entity_t *entity, int64_t now)
{
    ngx_http_usage_rank_row_t  row;

    if (ngx_http_usage_entity_sum_locked(zone, &h->range, entity, &h->pieces,
                                         now)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (h->range.total == 0) {
        return NGX_OK;
    }

    row.entity.data = entity->data;
    row.entity.len = entity->len;
    row.count = h->range.total;
    row.value = h->range.value;
    row.last = entity->updated;

    /* a cursor's page: only what ranks after its row */
    if (h->q->after && !ngx_http_usage_rank_before(h->q, h->q->after, &row)) {
        return NGX_OK;
    }

    return ngx_http_usage_heap_offer(h, &row);
}


/* whether a ranks before b: more events (or value), then by name */

static ngx_int_t
ngx_http_usage_rank_before(ngx_http_usage_rank_t *q,
    ngx_http_usage_rank_row_t *a, ngx_http_usage_rank_row_t *b)
{
    if (q->by_value) {
        if (a->value != b->value) {
            return a->value > b->value;
        }

    } else if (a->count != b->count) {
        return a->count > b->count;
    }

    return ngx_memn2cmp(a->entity.data, b->entity.data, a->entity.len,
                        b->entity.len)
           < 0;
}


/* a row that ranks before the last kept takes its place; its name is
 * copied out of the zone then */

static ngx_int_t
ngx_http_usage_heap_offer(ngx_http_usage_heap_t *h,
    ngx_http_usage_rank_row_t *row)
{
    u_char      *p;
    ngx_uint_t   i, parent;

    if (h->n == h->size
        && !ngx_http_usage_rank_before(h->q, row, &h->rows[0]))
    {
        return NGX_OK;
    }

    p = ngx_pnalloc(h->pool, row->entity.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, row->entity.data, row->entity.len);
    row->entity.data = p;

    if (h->n == h->size) {
        h->rows[0] = *row;
        ngx_http_usage_heap_down(h, 0, h->n);
        return NGX_OK;
    }

    /* up from the bottom while it ranks after its parent */
    for (i = h->n++; i > 0; i = parent) {
        parent = (i - 1) / 2;

        if (!ngx_http_usage_rank_before(h->q, &h->rows[parent], row)) {
            break;
        }

        h->rows[i] = h->rows[parent];
    }

    h->rows[i] = *row;

    return NGX_OK;
}


static void
ngx_http_usage_heap_down(ngx_http_usage_heap_t *h, ngx_uint_t i,
    ngx_uint_t n)
{
    ngx_uint_t                 child;
    ngx_http_usage_rank_row_t  row;

    row = h->rows[i];

    for ( ;; ) {
        child = 2 * i + 1;

        if (child >= n) {
            break;
        }

        /* the child that ranks later */
        if (child + 1 < n
            && ngx_http_usage_rank_before(h->q, &h->rows[child],
                                          &h->rows[child + 1]))
        {
            child++;
        }

        if (!ngx_http_usage_rank_before(h->q, &row, &h->rows[child])) {
            break;
        }

        h->rows[i] = h->rows[child];
        i = child;
    }

    h->rows[i] = row;
}


/* the heap sorted in place (the last in rank goes to the end), cut to
 * the limit */

static ngx_int_t
ngx_http_usage_rank_finish(ngx_http_usage_heap_t *h)
{
    ngx_uint_t                 n;
    ngx_http_usage_rank_t     *q;
    ngx_http_usage_rank_row_t  last;

    q = h->q;

    for (n = h->n; n > 1; n--) {
        last = h->rows[0];
        h->rows[0] = h->rows[n - 1];
        h->rows[n - 1] = last;
        ngx_http_usage_heap_down(h, 0, n - 1);
    }

    q->more = (h->n == h->size);

    q->rows.elts = h->rows;
    q->rows.nelts = q->more ? h->n - 1 : h->n;
    q->rows.size = sizeof(ngx_http_usage_rank_row_t);
    q->rows.nalloc = h->size;
    q->rows.pool = h->pool;

    return NGX_OK;
}


/* the first entity of the tree at or after (key, name), or NULL */

static ngx_rbtree_node_t *
ngx_http_usage_rank_from(ngx_rbtree_t *tree, uint32_t key, ngx_str_t *name)
{
    ngx_rbtree_node_t        *node, *found;
    ngx_http_usage_entity_t  *entity;

    found = NULL;
    node = tree->root;

    while (node != tree->sentinel) {
        entity = (ngx_http_usage_entity_t *) node;

        if (node->key < key
            || (node->key == key
                && ngx_memn2cmp(entity->data, name->data, entity->len,
                                name->len)
                   < 0))
        {
            node = node->right;

        } else {
            found = node;
            node = node->left;
        }
    }

    return found;
}
