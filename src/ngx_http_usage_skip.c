
/*
 * The raw log's skip list (W. Pugh, 1990).  Level 0 is the log's own
 * queue, in list order (createdAt, then the order stored in, or the uuid
 * in a fleet).  Each record is also on 0 to 15 levels above it, each with
 * a chance of 1/4: a pointer per level in the record's extras, a third of
 * a pointer a record on average.  A cursor's place is found from the top
 * level down in O(log n).
 *
 * The links never depend on the keys: a record is linked on each level
 * after the nearest record before it in the queue that is on that level,
 * found by walking the queue back.  So the structure stays whole even
 * where the log's order was given up (a fleet's event that arrived too
 * late, see raw_link_locked()); only a seek there lands near its place
 * instead of on it.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_skip.h"


static void ngx_http_usage_skip_preds(ngx_http_usage_shctx_t *sh,
    ngx_http_usage_raw_t *raw, ngx_uint_t levels,
    ngx_http_usage_raw_t **pred);
static void ngx_http_usage_skip_preds_near(ngx_http_usage_shctx_t *sh,
    ngx_http_usage_raw_t *raw, ngx_uint_t levels,
    ngx_http_usage_raw_t **pred);


/* the link to the next record on level i + 1 of raw, NULL: of the head */
#define ngx_http_usage_skip_next(sh, raw, i)                                 \
    ((raw) ? &ngx_http_usage_raw_tower(raw)[i] : &(sh)->skip_head[i])


/*
 * Drawn from the first 32 bits of the event's uuid, random in a UUID v4:
 * a record has the same levels in every copy of the store (a restart, a
 * resize), which is then as large, byte for byte.
 */

ngx_uint_t
ngx_http_usage_skip_levels(u_char *uuid)
{
    uint32_t    r;
    ngx_uint_t  n;

    r = (uint32_t) uuid[0] | (uint32_t) uuid[1] << 8
        | (uint32_t) uuid[2] << 16 | (uint32_t) uuid[3] << 24;

    for (n = 0; n < NGX_HTTP_USAGE_SKIP_LEVELS && (r & 3) == 0; n++) {
        r >>= 2;
    }

    return n;
}


/* after the record was linked into the log's queue */

void
ngx_http_usage_skip_link_locked(ngx_http_usage_shctx_t *sh,
    ngx_http_usage_raw_t *raw)
{
    ngx_uint_t             i, levels;
    ngx_http_usage_raw_t  *pred[NGX_HTTP_USAGE_SKIP_LEVELS], **next, **tower;

    levels = ngx_http_usage_raw_levels(raw);

    if (levels == 0) {
        return;
    }

    tower = ngx_http_usage_raw_tower(raw);

    if (ngx_queue_next(&raw->queue) == ngx_queue_sentinel(&sh->raw)) {
        /* appended, as every event is without usage_sync: each level's
         * last record is its predecessor */
        for (i = 0; i < levels; i++) {
            pred[i] = sh->skip_tail[i];
        }

    } else {
        ngx_http_usage_skip_preds_near(sh, raw, levels, pred);
    }

    for (i = 0; i < levels; i++) {
        next = ngx_http_usage_skip_next(sh, pred[i], i);
        tower[i] = *next;
        *next = raw;

        if (tower[i] == NULL) {
            sh->skip_tail[i] = raw;
        }
    }
}


/* before the record leaves the log's queue */

void
ngx_http_usage_skip_unlink_locked(ngx_http_usage_shctx_t *sh,
    ngx_http_usage_raw_t *raw)
{
    ngx_uint_t             i, levels;
    ngx_http_usage_raw_t  *pred[NGX_HTTP_USAGE_SKIP_LEVELS], **tower;

    levels = ngx_http_usage_raw_levels(raw);

    if (levels == 0) {
        return;
    }

    tower = ngx_http_usage_raw_tower(raw);

    /* mostly the log's oldest record: no walk at all */
    ngx_http_usage_skip_preds(sh, raw, levels, pred);

    for (i = 0; i < levels; i++) {
        *ngx_http_usage_skip_next(sh, pred[i], i) = tower[i];

        if (sh->skip_tail[i] == raw) {
            sh->skip_tail[i] = pred[i];
        }
    }
}


/*
 * The nearest record before raw in the queue on each of its levels (NULL:
 * the head).  A record of n levels is reached after about 4^n records on
 * average, and has n levels with a chance of 4^-n: a constant number of
 * steps per level on average.
 */

static void
ngx_http_usage_skip_preds(ngx_http_usage_shctx_t *sh,
    ngx_http_usage_raw_t *raw, ngx_uint_t levels, ngx_http_usage_raw_t **pred)
{
    ngx_uint_t             i, n;
    ngx_queue_t           *q;
    ngx_http_usage_raw_t  *prev;

    i = 0;

    for (q = ngx_queue_prev(&raw->queue);
         q != ngx_queue_sentinel(&sh->raw) && i < levels;
         q = ngx_queue_prev(q))
    {
        prev = ngx_queue_data(q, ngx_http_usage_raw_t, queue);
        n = ngx_http_usage_raw_levels(prev);

        while (i < levels && i < n) {
            pred[i++] = prev;
        }
    }

    while (i < levels) {
        pred[i++] = NULL;
    }
}


/*
 * The same for a record linked among the last of the log (a fleet's
 * event, placed by its uuid among those of its millisecond): a level
 * whose last record is of an earlier millisecond has that one for its
 * predecessor, since the log is in createdAt order; only the levels
 * below, dense enough to have records in the record's own millisecond,
 * take the walk, which is then short.  Without it, a record of n levels
 * walks back about 4^n records, a few dozen per insert at 100,000 a
 * second.
 */

static void
ngx_http_usage_skip_preds_near(ngx_http_usage_shctx_t *sh,
    ngx_http_usage_raw_t *raw, ngx_uint_t levels, ngx_http_usage_raw_t **pred)
{
    ngx_uint_t             m;
    ngx_http_usage_raw_t  *last;

    for (m = levels; m > 0; m--) {
        last = sh->skip_tail[m - 1];

        if (last && last->created >= raw->created) {
            break;
        }

        pred[m - 1] = last;
    }

    if (m) {
        ngx_http_usage_skip_preds(sh, raw, m, pred);
    }
}


/*
 * Whether raw is listed before the key's place in the log's order, which
 * is oldest first: of an earlier millisecond, or with UPTO also of the
 * key's millisecond and not after its event.
 */

ngx_uint_t
ngx_http_usage_skip_before(ngx_http_usage_shctx_t *sh,
    ngx_http_usage_raw_t *raw, ngx_http_usage_list_key_t *key,
    ngx_uint_t how)
{
    if (raw->created != key->created) {
        return raw->created < key->created;
    }

    if (how == NGX_HTTP_USAGE_SKIP_EARLIER) {
        return 0;
    }

    if (sh->fleet) {
        /* the fleet's tie order: see raw_link_locked() */
        return ngx_http_usage_uuid_cmp(raw->uuid, key->uuid) <= 0;
    }

    return (int32_t) (ngx_http_usage_raw_seq(sh, raw) - key->seq) <= 0;
}


/* the last record of the log before the key's place, or NULL */

ngx_http_usage_raw_t *
ngx_http_usage_skip_seek_locked(ngx_http_usage_shctx_t *sh,
    ngx_http_usage_list_key_t *key, ngx_uint_t how)
{
    ngx_uint_t             i;
    ngx_queue_t           *q;
    ngx_http_usage_raw_t  *x, *next;

    x = NULL;

    for (i = NGX_HTTP_USAGE_SKIP_LEVELS; i-- > 0; /* void */) {

        for ( ;; ) {
            next = *ngx_http_usage_skip_next(sh, x, i);

            if (next == NULL
                || !ngx_http_usage_skip_before(sh, next, key, how))
            {
                break;
            }

            x = next;
        }
    }

    /* level 0: about 3 records on average */
    q = x ? ngx_queue_next(&x->queue) : ngx_queue_head(&sh->raw);

    while (q != ngx_queue_sentinel(&sh->raw)) {
        next = ngx_queue_data(q, ngx_http_usage_raw_t, queue);

        if (!ngx_http_usage_skip_before(sh, next, key, how)) {
            break;
        }

        x = next;
        q = ngx_queue_next(q);
    }

    return x;
}


/*
 * In a fleet (uuid order within a millisecond): the last record of the
 * log at or before the event received at created whose uuid is given,
 * or NULL; and that event's record itself, if the log holds it.
 */

ngx_http_usage_raw_t *
ngx_http_usage_skip_seek_event_locked(ngx_http_usage_shctx_t *sh,
    int64_t created, u_char *uuid)
{
    ngx_http_usage_list_key_t  key;

    ngx_memzero(&key, sizeof(ngx_http_usage_list_key_t));
    key.created = created;
    ngx_memcpy(key.uuid, uuid, 16);

    return ngx_http_usage_skip_seek_locked(sh, &key, NGX_HTTP_USAGE_SKIP_UPTO);
}


ngx_http_usage_raw_t *
ngx_http_usage_skip_find_locked(ngx_http_usage_shctx_t *sh, int64_t created,
    u_char *uuid)
{
    ngx_http_usage_raw_t  *raw;

    raw = ngx_http_usage_skip_seek_event_locked(sh, created, uuid);

    if (raw == NULL || raw->created != created
        || ngx_memcmp(raw->uuid, uuid, 16) != 0)
    {
        return NULL;
    }

    return raw;
}
